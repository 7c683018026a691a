"""The heartbeat's loop on the listener: sends what is due while connected, through `submit`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from core.state_heartbeat import HeartbeatPolicy, QuietClock
from listener.handoff.state_heartbeat import StateHeartbeat
from listener.health.stats import ListenerStats

INTERVAL = 0.2


def _state(entity_id: str, updated: str = "2020-01-01T00:00:00+00:00") -> dict[str, Any]:
    return {"entity_id": entity_id, "state": "20.0", "attributes": {}, "last_updated": updated}


async def _until(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    async with asyncio.timeout(within_s):
        while not condition():  # noqa: ASYNC110 - the heartbeat's task fills what it reads
            await asyncio.sleep(0.01)


def test_it_sends_while_connected_and_stops_for_a_removed_entity() -> None:
    sent: list[tuple[str, float]] = []
    stats = ListenerStats()

    async def submit(event: dict[str, Any]) -> None:
        sent.append((event["data"]["entity_id"], time.monotonic()))

    async def scenario() -> None:
        policy = HeartbeatPolicy(INTERVAL, frozenset({"climate"}))
        beat = StateHeartbeat(QuietClock(policy), submit, stats)
        async with beat.running():
            beat.connected([_state("climate.a"), _state("climate.b"), _state("light.c")])
            await _until(lambda: sum(e == "climate.a" for e, _ in sent) >= 2)
            beat.saw(
                {
                    "event_type": "state_changed",
                    "data": {"entity_id": "climate.b", "old_state": None, "new_state": None},
                }
            )
            removed_at = time.monotonic()
            await _until(lambda: sum(t > removed_at for _, t in sent) >= 2)
            assert not [e for e, t in sent if e == "climate.b" and t > removed_at]
            beat.disconnected()
            await asyncio.sleep(0.05)  # a send that had begun ends
            quiet_from = len(sent)
            await asyncio.sleep(3 * INTERVAL)  # what must NOT happen: no condition to await
            assert len(sent) == quiet_from, "nothing is sent while disconnected"

    asyncio.run(scenario())
    assert {entity for entity, _ in sent} == {"climate.a", "climate.b"}
    assert stats.state_heartbeats == len(sent)
    assert stats.state_heartbeat_entities == 1
