"""The quiet-sensor heartbeat on the listener's loop: the pure QuietClock, fed and woken.

What it is and why is in core/state_heartbeat.py. Here: live `state_changed` events restart an
entity's clock (`saw`), each connection's `get_states` seeds it (`connected`), and one task
sends what is due through `submit` (the listener's `on_event` with source `heartbeat`), so a
heartbeat takes the path of every event: memory, the spool, the broker, delivery guaranteed.

It lives in the hand-off room because that is all it does: it makes task messages from what
the listener already holds, and knows nothing of HA's connection (the service tells it when one
starts and ends). While disconnected it sends nothing: the states it holds may be stale then,
and a heartbeat would write an old value at a new time; the backfill fills that gap instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

from core.state_heartbeat import QuietClock, state_heartbeat_event
from listener.health.stats import ListenerStats

log = logging.getLogger(__name__)

Submit = Callable[[dict[str, Any]], Awaitable[None]]
"""Hands one heartbeat event to the publisher (waits only when memory and spool are full)."""

SLACK_S = 1.0
"""One wake-up also sends what falls due within this (a tenth of the interval at most), so
entities due a moment apart cost one wake-up: at most about one a second."""


class StateHeartbeat:
    """Sends the last state of quiet entities again, each time their interval passes."""

    def __init__(
        self,
        quiet: QuietClock,
        submit: Submit,
        stats: ListenerStats,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._quiet = quiet
        self._submit = submit
        self._stats = stats
        self._clock = clock
        self._connected = False
        self._wake = asyncio.Event()

    def saw(self, event: Mapping[str, Any]) -> None:
        """A live event: a changed state restarts its clock, a removed entity leaves it."""
        if event.get("event_type") != "state_changed":
            return
        data = event.get("data")
        if not isinstance(data, Mapping):
            return
        new_state = data.get("new_state")
        if isinstance(new_state, Mapping):
            if self._quiet.written(new_state, self._clock()):
                self._wake.set()  # a first entity may be due before the loop would wake
        elif new_state is None and isinstance(entity_id := data.get("entity_id"), str):
            self._quiet.removed(entity_id)
        self._stats.state_heartbeat_entities = len(self._quiet)

    def connected(self, states: Iterable[Mapping[str, Any]]) -> None:
        """HA's states at a connect: the clocks from their `last_updated`; sending resumes."""
        self._quiet.seed(states, self._clock())
        self._stats.state_heartbeat_entities = len(self._quiet)
        self._connected = True
        self._wake.set()

    def disconnected(self) -> None:
        self._connected = False

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Send heartbeats while inside."""
        task = asyncio.create_task(self._run(), name="state-heartbeat")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._delay()):
                    await self._wake.wait()
            if not self._connected:
                continue
            try:
                await self._send_due()
            except Exception:
                # A bug here must not end the heartbeat for the process's lifetime.
                log.exception("state heartbeat: sending failed; trying again at the next due")

    def _delay(self) -> float | None:
        """Seconds until the next entity is due; None (until woken) while there is nothing to
        send."""
        due_at = self._quiet.next_due() if self._connected else None
        return None if due_at is None else max(0.0, due_at - self._clock())

    async def _send_due(self) -> None:
        now = self._clock()
        states = self._quiet.take_due(now, min(SLACK_S, self._quiet.policy.interval_s / 10))
        for state in states:
            await self._submit(state_heartbeat_event(state, now))
            self._stats.state_heartbeats += 1
        if states:
            log.debug("state heartbeat: sent the last state of %d quiet entities", len(states))
