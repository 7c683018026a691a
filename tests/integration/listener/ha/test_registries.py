"""The listener keeps HA's registries in Redis for the workers' enrichment."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis

from config.redis_keys import RedisKeys
from core.enrichment import Registries, area_tag, friendly_name_tag
from core.listener_figures import ListenerFigures
from tests.helpers import InfluxDatabase, wait_until
from tests.sim_thread import SimulatorThread
from tests.stack import SIM_HOME, TOKEN, Stack

pytestmark = pytest.mark.integration


def test_state_and_registries_are_kept_in_redis(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase
) -> None:
    sim = SimulatorThread(token=TOKEN, rate=5).start()
    stack = Stack(tmp_path, sim, redis_url, influx_db)
    client = redis.Redis.from_url(redis_url)
    keys = RedisKeys()
    home_keys = keys.for_home(SIM_HOME)
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
            key = home_keys.registry(name)
            wait_until(lambda key=key: client.exists(key), 10)  # type: ignore[misc]
            assert json.loads(client.get(home_keys.registry(name)) or b"null") == items
            assert client.ttl(home_keys.registry(name)) > 0

        raw = wait_until(lambda: client.get(home_keys.listener_state()), 10)
        state = ListenerFigures.from_json(raw)
        assert state is not None, raw
        assert state.connection_state == "subscribed"
        subscriptions = dict(state.subscriptions)
        assert set(subscriptions) >= {"state_changed", "area_registry_updated"}
        assert 0 < client.ttl(home_keys.listener_state()) <= 30, "a heartbeat: gone if not renewed"
        assert state.instance == SIM_HOME
        assert client.hkeys(keys.homes()) == [SIM_HOME.encode()], "listed, provisional name gone"
        assert not client.exists(keys.listener_state()), "nothing at the prefix level"

        version = int(client.get(home_keys.registry_version()) or 0)
        assert version >= 1, "the workers are told the registries were stored"
        client.delete(home_keys.registry("areas"))
        event = {"event_type": "area_registry_updated", "data": {"action": "update"}}
        frame = {"id": subscriptions["area_registry_updated"], "type": "event", "event": event}
        sim.do(sim.sim.send_raw, json.dumps(frame))
        wait_until(
            lambda: client.exists(home_keys.registry("areas")), 10, message="areas refetched"
        )
        wait_until(
            lambda: int(client.get(home_keys.registry_version()) or 0) > version,
            10,
            message="the version bumped after the refetch",
        )
        assert client.ttl(home_keys.registry_version()) > 0
    finally:
        stack.stop()
        sim.stop()


PRODUCTION_HEARTBEAT = {"HA_HEARTBEAT_INTERVAL": "20", "HA_HEARTBEAT_TIMEOUT": "10"}
"""The defaults (config/settings.py): the old registry handler stalled reading until these
declared the connection dead; FAST_RECOVERY's 1 s heartbeat hid that with a quick reconnect."""


def test_registry_edits_under_load_never_stall_reading(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase
) -> None:
    """An area created and an entity renamed while HA sends 200 events/s.

    With the production heartbeat, for longer than one heartbeat period and its timeout: no
    reconnect, no frame held the reader over 1 s, and the new names are in Redis (what the
    workers' enrichment reads) within 5 s of each edit.
    """
    sim = SimulatorThread(token=TOKEN, rate=200, entities=40).start()
    stack = Stack(tmp_path, sim, redis_url, influx_db, PRODUCTION_HEARTBEAT)
    client = redis.Redis.from_url(redis_url)
    keys = RedisKeys()
    home_keys = keys.for_home(SIM_HOME)

    def registries() -> Registries:
        raw = client.mget([home_keys.registry(kind) for kind in ("areas", "devices", "entities")])
        lists = [json.loads(value or b"[]") for value in raw]
        return Registries.from_lists(*lists)

    try:
        stack.start_listener()
        stack.wait_subscribed()
        subscribed_at = time.monotonic()
        wait_until(lambda: client.exists(home_keys.registry("entities")), 10)
        entity_id = sim.do(lambda: sim.sim.home.registry[0].entity_id)
        seen_within: list[float] = []
        for round_ in range(3):
            area_id, area, name = f"attic_{round_}", f"Attic {round_}", f"Renamed {round_}"
            edited_at = time.monotonic()
            sim.do(lambda a=area_id, n=area: sim.sim.create_area(a, n))
            sim.do(lambda a=area_id, n=name: sim.sim.update_entity(entity_id, name=n, area_id=a))

            def enriched(area: str = area, name: str = name) -> bool:
                found = registries()
                return friendly_name_tag(entity_id, found) == {"friendly_name": name} and (
                    area_tag(entity_id, found) == {"area": area}
                )

            wait_until(enriched, 5, message=f"enrichment sees {name!r} in {area!r}")
            seen_within.append(time.monotonic() - edited_at)
            time.sleep(8)  # the next edit a while later, as a user clicks through settings
        # Past the first ping and its whole timeout: a stalled reader would have reconnected.
        wait_until(
            lambda: time.monotonic() - subscribed_at > 20 + 10 + 2, 40, interval=0.5,
            message="one heartbeat period and its timeout",
        )  # fmt: skip
        health = stack.health()
        assert health["connection"]["reconnects"] == 0, health["connection"]
        assert health["connection"]["successful"] == 1
        assert sim.do(lambda: sim.sim.clients_connected) == 1
        assert health["listener"]["read_stall_max_s"] < 1.0, health["listener"]
        assert health["listener"]["registry_refreshes"] >= 3
        assert health["subscription"]["total_events_received"] > 200 * 30
        print(
            f"registry edits: enrichment saw them after {[round(s, 2) for s in seen_within]} s; "
            f"read stall max {health['listener']['read_stall_max_s']} s; reconnects 0; "
            f"{health['subscription']['total_events_received']} events read"
        )
    finally:
        stack.stop()
        sim.stop()
