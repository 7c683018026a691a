"""One authenticated connection to HA: commands sent with ids, their results awaited.

The reader (listener/ha/client.py) hands each result frame to `resolve`; whoever sent the
command awaits it in `call`, with a deadline.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection

from listener.ha import protocol


class HAConnection:
    """One authenticated connection: sends commands and awaits their results."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.session = protocol.Session()
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.frames_received = 0

    async def call(self, type_: str, reply_timeout: float = 30.0, **fields: Any) -> Any:
        """Send a command and return its result (raises CommandFailed on success=false).

        The wait is `asyncio.timeout`, not `wait_for`: on Python 3.11 `wait_for` returns the
        reply when a cancellation arrives in the same loop turn as the reply, and the
        cancellation is lost (a Ctrl-C that the import never sees).
        """
        message = self.session.command(type_, **fields)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[message["id"]] = future
        try:
            await self.ws.send(protocol_dumps(message))
            async with asyncio.timeout(reply_timeout):
                reply = await future
        finally:
            self.pending.pop(message["id"], None)
        if reply.get("type") == "pong":
            return None
        return protocol.result_of(reply, type_)

    def resolve(self, message: dict[str, Any]) -> bool:
        """Complete the pending command this message answers; False when it answers none."""
        future = self.pending.get(message.get("id", -1))
        if future is None or future.done():
            return False
        future.set_result(message)
        return True


def protocol_dumps(message: dict[str, Any]) -> str:
    """A command as the text frame HA reads (orjson, as every frame HA sends is read)."""
    return orjson.dumps(message).decode()
