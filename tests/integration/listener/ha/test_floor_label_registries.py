"""The listener keeps HA's floor and label registries (HA 2024.4+) in Redis beside the others,
refreshed live; an older HA, which knows neither command, costs one info line, not a warning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis

from config.redis_keys import RedisKeys
from tests.helpers import InfluxDatabase, wait_until
from tests.sim_thread import SimulatorThread
from tests.stack import SIM_HOME, TOKEN, Stack

pytestmark = pytest.mark.integration

KEYS = RedisKeys()
HOME_KEYS = KEYS.for_home(SIM_HOME)


def stored(client: redis.Redis, kind: str) -> Any:
    raw = client.get(HOME_KEYS.registry(kind))
    return None if raw is None else json.loads(raw)


def field_of(client: redis.Redis, kind: str, key: str, value: str) -> dict[str, Any]:
    """`value` of `key` → the stored entry whose id is `value`'s ({} when not stored)."""
    items = stored(client, kind) or []
    return next((item for item in items if item.get(key) == value), {})


def test_floors_and_labels_are_stored_and_refreshed_on_their_events(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase
) -> None:
    sim = SimulatorThread(token=TOKEN, rate=5).start()
    stack = Stack(tmp_path, sim, redis_url, influx_db)
    client = redis.Redis.from_url(redis_url)
    home = sim.sim.home
    try:
        stack.start_listener()
        stack.wait_subscribed()
        for kind, build in (("floors", home.floor_registry), ("labels", home.label_registry)):
            expected: list[dict[str, Any]] = sim.do(build)
            assert expected, f"the simulator has {kind}"

            def same(kind: str = kind, expected: list[dict[str, Any]] = expected) -> bool:
                return bool(stored(client, kind) == expected)

            wait_until(same, 10, message=kind)
        assert {"floor_registry_updated", "label_registry_updated"} <= set(
            stack.health()["subscription"]["event_types"]
        )

        sim.do(sim.sim.create_label, "outdoor", "Outdoor", "green")
        sim.do(sim.sim.create_floor, "attic", "Attic", 2)
        wait_until(lambda: field_of(client, "labels", "label_id", "outdoor"), 5, message="label")
        wait_until(lambda: field_of(client, "floors", "floor_id", "attic"), 5, message="floor")
        sim.do(sim.sim.move_area, "kitchen", "attic")
        wait_until(
            lambda: field_of(client, "areas", "area_id", "kitchen").get("floor_id") == "attic",
            5,
            message="the area's new floor in Redis",
        )
        assert "could not fetch" not in stack.logs()
    finally:
        stack.stop()
        sim.stop()


def test_an_ha_before_2024_4_stores_them_empty_and_says_so_once(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase
) -> None:
    """Two connections (HA restarting between them), so two full refreshes: one info line per
    missing registry in all, no warning, and empty lists that leave no stale floors behind.
    The token is a non-admin user's: HA 2024.3 refuses it the floor and label events."""
    sim = SimulatorThread(token=TOKEN, rate=5, floors_and_labels=False).start()
    sim.do(
        sim.sim.refuse_subscriptions,
        frozenset({"floor_registry_updated", "label_registry_updated"}),
    )
    stack = Stack(tmp_path, sim, redis_url, influx_db)
    client = redis.Redis.from_url(redis_url)
    client.set(HOME_KEYS.registry("floors"), json.dumps([{"floor_id": "old", "name": "Stale"}]))
    try:
        stack.start_listener()
        stack.wait_subscribed()
        wait_until(lambda: stored(client, "floors") == [], 10, message="floors stored empty")
        wait_until(lambda: stored(client, "labels") == [], 10, message="labels stored empty")
        version = int(client.get(HOME_KEYS.registry_version()) or 0)
        sim.call(sim.sim.drop_clients())
        wait_until(
            lambda: int(client.get(HOME_KEYS.registry_version()) or 0) > version,
            20,
            message="the registries fetched again after reconnecting",
        )
        assert stack.health()["connection"]["successful"] == 2
        logs = stack.logs()
        assert logs.count("HA has no floors registry") == 1, logs
        assert logs.count("HA has no labels registry") == 1, logs
        assert "could not fetch" not in logs
        assert "could not subscribe" not in logs
        assert logs.count("HA refused the subscription to floor_registry_updated") == 1, logs
        assert "Traceback" not in logs
    finally:
        stack.stop()
        sim.stop()
