"""How a connection to a real HA simulator ends, as the reconnect loop judges it.

The client runs on the simulator's loop in a thread (as in test_hostile_frames.py); each test
drives the simulator and asserts what the client counted, showed and remembered.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.backoff import exponential_backoff
from listener.ha import protocol
from listener.ha.auth_gate import AuthGate
from listener.ha.client import HAClient
from listener.health.stats import ListenerStats
from tests.helpers import wait_until
from tests.sim_thread import SimulatorThread

pytestmark = pytest.mark.integration

TOKEN = "disconnect-token-0123456789"
MB = 2**20


@dataclass
class Running:
    sim: SimulatorThread
    client: HAClient
    stats: ListenerStats
    task: asyncio.Task[None]

    def subscribed(self) -> bool:
        return bool(self.stats.connection_state == "subscribed")

    def ping_waits(self) -> bool:
        """A command (the heartbeat's ping: pongs are withheld) waits for its reply."""
        connection = self.client.connection
        return connection is not None and bool(connection.pending)

    def stop(self) -> None:
        async def finish() -> None:
            await self.client.stop()
            await asyncio.wait_for(asyncio.shield(self.task), 10)

        self.sim.call(finish())


@pytest.fixture
def sim() -> Iterator[SimulatorThread]:
    running = SimulatorThread(token=TOKEN, rate=1).start(paused=True)
    try:
        yield running
    finally:
        running.stop()


def start(sim: SimulatorThread, token: str = TOKEN, **options: Any) -> Running:
    stats = ListenerStats()

    async def on_event(_: dict[str, Any]) -> None:
        return None

    async def make() -> Running:
        client = HAClient(
            sim.sim.url,
            token,
            ("state_changed",),
            on_event,
            stats,
            backoff=lambda: exponential_backoff(initial=0.05, cap=0.1),
            **options,
        )
        return Running(sim, client, stats, asyncio.create_task(client.run()))

    return sim.call(make())


def test_a_frame_too_big_is_named_even_while_a_ping_waits_for_its_pong(
    sim: SimulatorThread,
) -> None:
    """The reader's end fails the waiting ping too: the heartbeat's error must not hide the
    1009 close, or the frame is not counted and the log blames a lost connection."""
    sim.do(sim.sim.set_answer_pings, False)
    running = start(sim, heartbeat_interval=0.02, heartbeat_timeout=60, max_frame_bytes=MB)
    giant = json.dumps({"type": "event", "id": 2, "junk": "x" * (MB + 1)})
    try:
        for round_ in range(1, 7):
            wait_until(running.subscribed, 10, message=f"subscribed ({round_})")
            wait_until(running.ping_waits, 5, message=f"a ping waiting for its pong ({round_})")
            sim.do(sim.sim.send_raw, giant)
            wait_until(lambda: running.stats.malformed_frames >= round_, 10,  # noqa: B023
                       message=f"the frame too big counted ({round_})")  # fmt: skip
            assert running.stats.malformed_frames == round_
            assert "HA sent a frame too big (over 1 MB" in running.stats.last_error
        assert running.stats.connects_failed == 0
    finally:
        running.stop()


def test_a_refused_token_waits_at_the_gate_and_a_new_one_logs_in_at_once(
    sim: SimulatorThread, tmp_path: Path
) -> None:
    running = start(sim, "wrong-token-5555", auth_gate=AuthGate(tmp_path))
    try:
        wait_until(lambda: running.stats.auth_retry_at, 10, message="the next login time")
        assert running.stats.connection_state == "auth_invalid"
        assert running.stats.connects_failed == 1
        assert running.stats.last_error == "auth_invalid: Invalid access token or password"
        assert (tmp_path / "auth-refused.json").exists()
        assert sim.do(lambda: sim.sim.auth_failures) == 1
        sim.do(running.client.replace_token, TOKEN)  # what SIGHUP does with a new token
        wait_until(running.subscribed, 10, message="logged in with the new token")
        assert sim.do(lambda: sim.sim.auth_failures) == 1
        assert not (tmp_path / "auth-refused.json").exists()
    finally:
        running.stop()


def test_without_a_gate_a_refused_token_is_raised_to_the_caller(sim: SimulatorThread) -> None:
    """`ha-ingestor import` has no gate: it reports the refusal and exits."""
    running = start(sim, "wrong-token-6666")
    with pytest.raises(protocol.AuthInvalid, match="Invalid access token"):
        sim.call(asyncio.wait_for(asyncio.shield(running.task), 10))
    assert running.stats.connection_state == "auth_invalid"
    assert running.stats.connects_failed == 1
    assert sim.do(lambda: sim.sim.auth_failures) == 1
