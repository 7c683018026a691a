"""The drainer's lock (workers/destinations.py) against a real Redis: a drainer whose lock
lapsed during a slow write (another worker's drainer took it) stops after that chunk and leaves
the other's lock alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest
import redis

from config.redis_keys import RedisKeys
from core.rules import Rules
from tests.memory_sink import MemorySink
from workers.destinations import DestinationWriter, Drainer
from workers.pipeline import IngestPipeline
from workers.stores.backlog import Backlog
from workers.stores.counter_store import CounterStore
from workers.stores.dead_letters import DeadLetterStore

pytestmark = pytest.mark.integration

KEYS = RedisKeys().for_destination("archive")


def state_message(seq: int) -> dict[str, object]:
    new_state = {"entity_id": f"sensor.s{seq}", "state": str(seq), "attributes": {},
                 "last_updated": 1_767_225_600 + seq}  # fmt: skip
    event = {"event_type": "state_changed", "data": {"entity_id": f"sensor.s{seq}",
             "new_state": new_state}}  # fmt: skip
    return {"event": event, "received_at": time.time(), "source": "live", "seq": seq}


class LapsingSink(MemorySink):
    """Its first write outlasts the drainer's lock: another drainer holds it afterwards."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__()
        self._client = client

    def write(self, lines: Sequence[str]) -> None:
        if not self.requests:
            self._client.set(KEYS.drain_lock(), "another-worker", ex=10)
        super().write(lines)


def test_a_drainer_whose_lock_lapsed_stops_and_leaves_the_others_lock(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    sink = LapsingSink(client)
    counters = CounterStore(client, KEYS)
    pipeline = IngestPipeline(
        rules=Rules(), sink=sink, dead_letters=lambda _: None, count=counters.add, hold_limit=0
    )
    backlog = Backlog(client, KEYS)
    writer = DestinationWriter(
        "archive", sink, pipeline, counters, DeadLetterStore(client, KEYS), backlog
    )
    backlog.add([state_message(1), state_message(2)])
    backlog.add([state_message(3)])
    backlog.park("test")
    drainer = Drainer([writer], client, stopping=threading.Event(), token="me")
    assert drainer.drain(writer) == 2
    assert client.get(KEYS.drain_lock()) == b"another-worker"
    assert backlog.events() == 1, "the next chunk is the lock holder's"
    assert len(sink.requests) == 1
