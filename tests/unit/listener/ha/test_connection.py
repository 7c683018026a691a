"""HAConnection.call: a cancellation (Ctrl-C of an import, SIGTERM of the listener) is never
lost, even when it arrives in the same loop turn as the reply it was waiting for."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest

from listener.ha.connection import HAConnection

REPO = Path(__file__).resolve().parents[4]


class _SentFrames:
    """The one method of a websocket that `call` uses: the frames it sent, kept."""

    def __init__(self) -> None:
        self.frames: list[str] = []
        self.sent = asyncio.Event()

    async def send(self, frame: str) -> None:
        self.frames.append(frame)
        self.sent.set()


def test_a_cancellation_with_the_reply_in_the_same_turn_still_cancels() -> None:
    async def scenario() -> None:
        sent = _SentFrames()
        connection = HAConnection(sent)  # type: ignore[arg-type]
        call = asyncio.create_task(connection.call("get_states", reply_timeout=5))
        await sent.sent.wait()
        (message_id,) = connection.pending
        reply = {"id": message_id, "type": "result", "success": True, "result": []}
        assert connection.resolve(reply)
        call.cancel()  # the same turn: Python 3.11's wait_for would return the reply
        with pytest.raises(asyncio.CancelledError):
            await call
        assert connection.pending == {}

    asyncio.run(scenario())


def test_a_reply_is_returned_and_a_silent_ha_times_out() -> None:
    async def scenario() -> None:
        sent = _SentFrames()
        connection = HAConnection(sent)  # type: ignore[arg-type]
        call = asyncio.create_task(connection.call("ping", reply_timeout=5))
        await sent.sent.wait()
        (message_id,) = connection.pending
        connection.resolve({"id": message_id, "type": "result", "success": True, "result": 7})
        assert await call == 7
        with pytest.raises(TimeoutError):
            await connection.call("get_states", reply_timeout=0.01)
        assert len(sent.frames) == 2
        assert connection.pending == {}

    asyncio.run(scenario())


def test_no_product_module_uses_asyncio_wait_for() -> None:
    """`asyncio.timeout` instead: on Python 3.11 `wait_for` can swallow a cancellation."""
    found = []
    for package in ("core", "config", "listener", "workers", "devtools"):
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Attribute) and node.attr == "wait_for":
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not found, "use `async with asyncio.timeout(...)` instead of wait_for: " + ", ".join(
        found
    )
