"""The listener keeps HA's registries in Redis for the workers' enrichment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from config.redis_keys import RedisKeys
from core.listener_state import ListenerState
from tests.helpers import InfluxDatabase, wait_until
from tests.sim_thread import SimulatorThread
from tests.stack import TOKEN, Stack

pytestmark = pytest.mark.integration


def test_state_and_registries_are_kept_in_redis(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase
) -> None:
    sim = SimulatorThread(token=TOKEN, rate=5).start()
    stack = Stack(tmp_path, sim, redis_url, influx_db)
    client = redis.Redis.from_url(redis_url)
    keys = RedisKeys()
    try:
        stack.start_listener()
        stack.wait_subscribed()
        home = sim.sim.home
        expected = {
            "areas": sim.do(home.area_registry),
            "devices": sim.do(home.device_registry),
            "entities": sim.do(home.entity_registry),
        }
        for name, items in expected.items():
            key = keys.registry(name)
            wait_until(lambda key=key: client.exists(key), 10)  # type: ignore[misc]
            assert json.loads(client.get(keys.registry(name)) or b"null") == items
            assert client.ttl(keys.registry(name)) > 0

        raw = wait_until(lambda: client.get(keys.listener_state()), 10)
        state = ListenerState.from_json(raw)
        assert state is not None, raw
        assert state.connection_state == "subscribed"
        subscriptions = dict(state.subscriptions)
        assert set(subscriptions) >= {"state_changed", "area_registry_updated"}
        assert 0 < client.ttl(keys.listener_state()) <= 30, "a heartbeat: gone if not renewed"

        client.delete(keys.registry("areas"))
        event = {"event_type": "area_registry_updated", "data": {"action": "update"}}
        frame = {"id": subscriptions["area_registry_updated"], "type": "event", "event": event}
        sim.do(sim.sim.send_raw, json.dumps(frame))
        wait_until(lambda: client.exists(keys.registry("areas")), 10, message="areas refetched")
    finally:
        stack.stop()
        sim.stop()
