"""Enrichment: each step on its own, the Redis-backed registry cache, and the tags that reach
InfluxDB when a real listener stores HA's registries and a real worker writes the points."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from config.destinations import Destinations
from config.redis_keys import RedisKeys
from config.settings import load_settings
from core.enrichment import (
    Registries,
    area_tag,
    default_steps,
    device_tag,
    enrich,
    friendly_name_tag,
)
from core.rules import Rules
from core.transform import Point, event_to_point
from devtools.local_servers import RedisServer, free_port
from tests.expectations import ha_states, state_events
from tests.helpers import InfluxDatabase, wait_until
from tests.processes import AppProcess, app_env, listener_argv, worker_argv
from tests.sim_thread import SimulatorThread
from tests.stack import SIM_HOME
from workers.stores.registry_cache import Enrichment, RegistryCache

pytestmark = pytest.mark.integration

AREAS: list[dict[str, Any]] = [
    {"aliases": [], "area_id": "kitchen", "icon": None, "name": "Kitchen", "picture": None},
    {"aliases": [], "area_id": "garage", "icon": None, "name": "Garage", "picture": None},
]
DEVICES = [
    {"id": "d1", "name": "Fridge", "name_by_user": None, "area_id": "kitchen"},
    {"id": "d2", "name": "Opener", "name_by_user": "Garage door", "area_id": "garage"},
    {"id": "d3", "name": "Hub", "name_by_user": None, "area_id": None},
]


def entity(entity_id: str, **fields: Any) -> dict[str, Any]:
    """An entity registry entry shaped as config/entity_registry/list returns it."""
    entry: dict[str, Any] = {
        "area_id": None,
        "config_entry_id": None,
        "device_id": None,
        "disabled_by": None,
        "entity_category": None,
        "entity_id": entity_id,
        "has_entity_name": False,
        "hidden_by": None,
        "icon": None,
        "id": "x",
        "labels": [],
        "name": None,
        "options": {},
        "original_name": None,
        "platform": "demo",
        "translation_key": None,
        "unique_id": entity_id,
    }
    entry.update(fields)
    return entry


ENTITIES = [
    entity("sensor.fridge_temp", device_id="d1", original_name="Fridge temperature"),
    entity("cover.garage", device_id="d2", area_id="kitchen", original_name="Door"),
    entity("sensor.hub_uptime", device_id="d3", has_entity_name=True, original_name="Uptime"),
    entity("light.hub", device_id="d3", has_entity_name=True),
    entity(
        "sensor.renamed",
        name="My name",
        original_name="Old name",
        device_id="d1",
        has_entity_name=True,
    ),
    entity("sensor.lonely", area_id="garage"),
    entity("sensor.dangling", device_id="gone", area_id="nowhere"),
]
REGISTRIES = Registries.from_lists(AREAS, DEVICES, ENTITIES)


# --- the steps, one by one --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entity_id", "expected"),
    [
        ("sensor.fridge_temp", {"area": "Kitchen"}),  # the device's area
        ("cover.garage", {"area": "Kitchen"}),  # the entity's own area beats its device's
        ("sensor.lonely", {"area": "Garage"}),  # no device at all
        ("sensor.hub_uptime", {}),  # neither the entity nor its device has an area
        ("sensor.dangling", {}),  # ids that point nowhere
        ("sensor.not_registered", {}),
    ],
)
def test_area_comes_from_the_entity_else_its_device(
    entity_id: str, expected: dict[str, str]
) -> None:
    assert area_tag(entity_id, REGISTRIES) == expected


@pytest.mark.parametrize(
    ("entity_id", "expected"),
    [
        ("sensor.fridge_temp", {"device": "Fridge"}),
        ("cover.garage", {"device": "Garage door"}),  # the user's name for the device wins
        ("sensor.lonely", {}),
        ("sensor.dangling", {}),
        ("sensor.not_registered", {}),
    ],
)
def test_device_is_the_name_the_user_sees(entity_id: str, expected: dict[str, str]) -> None:
    assert device_tag(entity_id, REGISTRIES) == expected


@pytest.mark.parametrize(
    ("entity_id", "expected"),
    [
        ("sensor.fridge_temp", "Fridge temperature"),  # has_entity_name false: its own name
        ("sensor.hub_uptime", "Hub Uptime"),  # has_entity_name: device name + entity name
        ("light.hub", "Hub"),  # has_entity_name without a name: the device's name
        ("sensor.renamed", "My name"),  # a name set in the registry wins as is
        ("sensor.lonely", None),
        ("sensor.not_registered", None),
    ],
)
def test_friendly_name_is_computed_as_ha_does(entity_id: str, expected: str | None) -> None:
    tags = friendly_name_tag(entity_id, REGISTRIES)
    assert tags == ({"friendly_name": expected} if expected else {})


def test_friendly_name_is_a_step_only_when_the_rules_make_it_a_tag() -> None:
    assert default_steps(frozenset()) == (area_tag, device_tag)
    assert default_steps(frozenset({"friendly_name"})) == (area_tag, device_tag, friendly_name_tag)


def test_steps_run_in_order_and_a_later_one_wins() -> None:
    def shout(entity_id: str, registries: Registries) -> dict[str, str]:
        return {"area": "OVERRIDDEN"}

    assert enrich("sensor.fridge_temp", REGISTRIES, [area_tag, device_tag, shout]) == {
        "area": "OVERRIDDEN",
        "device": "Fridge",
    }


def test_the_state_attribute_wins_over_the_registry_friendly_name() -> None:
    """Enrichment tags come first in the core, so a state carrying friendly_name keeps it; one
    without attributes (a minimal history row) gets the registry's and stays in its series."""
    rules = Rules.from_mapping({"tags_attributes": ["friendly_name"]})
    steps = default_steps(rules.tags_attributes)
    extra = enrich("sensor.fridge_temp", REGISTRIES, steps)

    def tags(attributes: dict[str, Any]) -> dict[str, str]:
        event = state_events(
            [
                {
                    "entity_id": "sensor.fridge_temp",
                    "state": "4",
                    "attributes": attributes,
                    "last_updated": "2026-01-01T00:00:00+00:00",
                }
            ]
        )[0]
        point = event_to_point(event, rules, extra)
        assert isinstance(point, Point)
        return dict(point.tags)

    assert tags({"friendly_name": "Cold box"})["friendly_name"] == "Cold box"
    assert tags({})["friendly_name"] == "Fridge temperature"
    assert tags({})["area"] == "Kitchen"


def test_registries_as_the_real_ha_returns_them(fixtures_dir: Path) -> None:
    lists: dict[str, Any] = {}
    for line in (fixtures_dir / "protocol_exchanges.jsonl").read_text("utf-8").splitlines():
        exchange = json.loads(line)
        kind = {"area registry": "areas", "device registry": "devices",
                "entity registry": "entities"}.get(exchange["note"])  # fmt: skip
        if kind:
            lists[kind] = exchange["recv"]["result"]
    registries = Registries.from_lists(lists["areas"], lists["devices"], lists["entities"])
    assert registries.areas["living_room"] == "Living Room"
    assert registries.entities["input_number.temperature"].original_name == "Temperature setpoint"
    assert friendly_name_tag("input_number.temperature", registries) == {
        "friendly_name": "Temperature setpoint"
    }
    assert area_tag("input_number.temperature", registries) == {}


def test_malformed_registries_give_fewer_tags_never_an_error() -> None:
    registries = Registries.from_lists(
        [None, 3, {"area_id": "a"}, {"area_id": "a", "name": ""}, {"area_id": "b", "name": "B"}],
        "not a list",
        [{"entity_id": 5}, {"entity_id": "sensor.x", "area_id": "b", "device_id": ["?"]}],
    )
    assert dict(registries.areas) == {"b": "B"}
    assert enrich("sensor.x", registries, default_steps(frozenset({"friendly_name"}))) == {
        "area": "B"
    }


# --- the cache over Redis ----------------------------------------------------------------------


def store(client: redis.Redis, kind: str, items: Any) -> None:
    client.set(RedisKeys().registry(kind), json.dumps(items))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_cache_reads_redis_once_per_ttl(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    store(client, "areas", AREAS)
    store(client, "devices", DEVICES)
    store(client, "entities", ENTITIES)
    clock = Clock()
    cache = RegistryCache(client, RedisKeys(), ttl=60, clock=clock)
    enrichment = Enrichment(cache, default_steps(frozenset()))
    assert enrichment.tags_for("sensor.fridge_temp") == {"area": "Kitchen", "device": "Fridge"}

    store(client, "areas", [{**AREAS[0], "name": "Cuisine"}])
    clock.now = 59.0
    assert enrichment.tags_for("sensor.fridge_temp")["area"] == "Kitchen", "cached within the TTL"
    clock.now = 60.0
    assert enrichment.tags_for("sensor.fridge_temp")["area"] == "Cuisine", "read again after it"


def test_the_cache_reads_again_within_a_second_of_the_listeners_version_bump(
    redis_url: str,
) -> None:
    client = redis.Redis.from_url(redis_url)
    keys = RedisKeys()
    for kind, items in (("areas", AREAS), ("devices", DEVICES), ("entities", ENTITIES)):
        store(client, kind, items)
    clock = Clock()
    cache = RegistryCache(client, keys, ttl=60, check_every=1.0, clock=clock)
    enrichment = Enrichment(cache, default_steps(frozenset()))
    assert enrichment.tags_for("sensor.fridge_temp")["area"] == "Kitchen"

    store(client, "areas", [{**AREAS[0], "name": "Cuisine"}])
    clock.now = 5.0
    assert enrichment.tags_for("sensor.fridge_temp")["area"] == "Kitchen", "no bump: cached"
    client.incr(keys.registry_version())  # what the listener does after storing a registry
    clock.now = 5.5
    assert enrichment.tags_for("sensor.fridge_temp")["area"] == "Kitchen", "looked at once a s"
    clock.now = 6.0
    assert enrichment.tags_for("sensor.fridge_temp")["area"] == "Cuisine", "read again"


def test_an_entity_the_registries_lack_makes_the_cache_look_at_the_version_at_once(
    redis_url: str,
) -> None:
    """A renamed (or new) entity's first state follows the listener's store of the registry
    that knows it: waiting for the once-a-second look would leave that state untagged."""
    client = redis.Redis.from_url(redis_url)
    keys = RedisKeys()
    for kind, items in (("areas", AREAS), ("devices", DEVICES), ("entities", ENTITIES)):
        store(client, kind, items)
    clock = Clock()
    cache = RegistryCache(client, keys, ttl=60, clock=clock)
    enrichment = Enrichment(cache, default_steps(frozenset()))
    assert enrichment.tags_for("sensor.fridge_temp")["area"] == "Kitchen"
    assert enrichment.tags_for("sensor.yaml_only") == {}
    renamed = [{**e, "entity_id": "sensor.fridge_temperature"} if e["entity_id"] ==
               "sensor.fridge_temp" else e for e in ENTITIES]  # fmt: skip
    store(client, "entities", renamed)
    client.incr(keys.registry_version())
    assert enrichment.tags_for("sensor.fridge_temp")["area"] == "Kitchen", "known: cached"
    assert enrichment.tags_for("sensor.fridge_temperature")["area"] == "Kitchen", "at once"
    assert enrichment.tags_for("sensor.fridge_temp") == {}, "the old id is gone"
    gets = client.info("commandstats")["cmdstat_get"]["calls"]
    for _ in range(100):
        assert enrichment.tags_for("sensor.yaml_only") == {}
    # The INFO call itself is no GET: the 100 lookups of an unknown entity cost one look.
    assert client.info("commandstats")["cmdstat_get"]["calls"] - gets <= 1


def test_missing_registries_mean_no_tags(redis_url: str) -> None:
    cache = RegistryCache(redis.Redis.from_url(redis_url), RedisKeys(), ttl=60)
    assert Enrichment(cache, default_steps(frozenset())).tags_for("sensor.fridge_temp") == {}


def test_when_redis_is_down_the_last_registries_are_kept(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        client = redis.Redis(port=server.port, socket_timeout=2, retry=Retry(NoBackoff(), 0))
        store(client, "areas", AREAS)
        store(client, "devices", DEVICES)
        store(client, "entities", ENTITIES)
        clock = Clock()
        cache = RegistryCache(client, RedisKeys(), ttl=1, clock=clock)
        enrichment = Enrichment(cache, default_steps(frozenset()))
        assert enrichment.tags_for("cover.garage") == {"area": "Kitchen", "device": "Garage door"}
        server.stop()
        clock.now = 5.0
        assert enrichment.tags_for("cover.garage") == {"area": "Kitchen", "device": "Garage door"}
    finally:
        server.stop()


# --- end to end: the listener stores the registries, the worker tags the points ---------------

TOKEN = "enrichment-token-0123456789"


def expected_tags(home: Any) -> dict[str, dict[str, str]]:
    """entity_id → the area/device tags HA's registries imply, worked out independently."""
    areas = {a["area_id"]: a["name"] for a in home.area_registry()}
    devices = {d["id"]: d for d in home.device_registry()}
    out: dict[str, dict[str, str]] = {}
    for e in home.entity_registry():
        device = devices.get(e["device_id"]) if e["device_id"] else None
        area_id = e["area_id"] or (device["area_id"] if device else None)
        tags = {}
        if area_id in areas:
            tags["area"] = areas[area_id]
        if device and (device["name_by_user"] or device["name"]):
            tags["device"] = device["name_by_user"] or device["name"]
        out[e["entity_id"]] = tags
    return out


def start_listener_and_worker(
    sim: SimulatorThread, tmp_path: Path, redis_url: str, influx_db: InfluxDatabase
) -> tuple[AppProcess, AppProcess]:
    """A real listener on the simulator and a real worker writing to `influx_db`."""
    env = app_env(
        HA_URL=sim.sim.url,
        HA_TOKEN=TOKEN,
        CELERY_BROKER_URL=redis_url,
        INFLUXDB_URL=influx_db.url,
        INFLUXDB_DATABASE=influx_db.name,
        HEALTH_PORT=str(free_port()),
        DATA_DIR=str(tmp_path / "data"),
        BATCH_INTERVAL="0.2",
    )
    listener = AppProcess("listener", listener_argv(), env, tmp_path).start()
    return listener, AppProcess("worker", worker_argv(), env, tmp_path).start()


def test_points_carry_area_and_device_tags_from_the_listeners_registries(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase
) -> None:
    sim = SimulatorThread(token=TOKEN, rate=400, events=400, entities=25).start(paused=True)
    listener, worker = start_listener_and_worker(sim, tmp_path, redis_url, influx_db)
    try:
        initial = ha_states(sim.sim.url, TOKEN)
        keys = RedisKeys()
        client = redis.Redis.from_url(redis_url)
        wait_until(
            lambda: all(
                client.exists(keys.for_home(SIM_HOME).registry(k))
                for k in ("areas", "devices", "entities")
            ),
            30,
            message="the listener stored HA's registries",
        )
        sim.do(sim.sim.resume_events)
        sim.call(sim.sim.wait_done(), timeout=60)
        expected_count = sum(
            isinstance(event_to_point(e, Rules()), Point) for e in state_events(initial)
        )
        wait_until(
            lambda: int(client.get(keys.counter("written")) or 0) >= expected_count + 300,
            60,
            0.5,
            message="the snapshot and most events written",
        )
        rows = influx_db.query("SELECT * FROM /.*/ GROUP BY *")
        expected = expected_tags(sim.sim.home)
        seen = {}
        for row in rows:
            entity_id = f"{row['domain']}.{row['entity_id']}"
            tags = {k: row[k] for k in ("area", "device") if row.get(k)}
            assert tags == expected.get(entity_id, {}), row
            seen[entity_id] = tags
        with_area = [e for e, t in seen.items() if "area" in t]
        with_device = [e for e, t in seen.items() if "device" in t]
        assert with_area
        assert with_device
        assert any(not t for t in seen.values()), "unregistered entities have no tags"
    finally:
        worker.stop()
        listener.stop()
        sim.stop()


def test_an_area_created_and_an_entity_moved_reach_the_points_within_seconds(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase
) -> None:
    """A user edits HA's registries under load: the next points carry the new area, with the
    default ENRICHMENT_CACHE_TTL (60 s): the listener's version key makes workers re-read."""
    sim = SimulatorThread(token=TOKEN, rate=200, events=6_000, entities=10).start(paused=True)
    listener, worker = start_listener_and_worker(sim, tmp_path, redis_url, influx_db)
    try:
        client = redis.Redis.from_url(redis_url)
        keys = RedisKeys()
        wait_until(
            lambda: client.exists(keys.for_home(SIM_HOME).registry("entities")),
            30,
            message="registries",
        )
        sim.do(sim.sim.resume_events)
        wait_until(
            lambda: int(client.get(keys.counter("written")) or 0) >= 200,
            30,
            0.2,
            message="events flowing",
        )
        registered = [entry.entity_id for entry in sim.sim.home.registry]
        sim.do(sim.sim.create_area, "greenhouse", "Greenhouse")
        for entity_id in registered:  # every registered entity moves: some change soon
            sim.do(lambda e=entity_id: sim.sim.update_entity(e, name=None, area_id="greenhouse"))
        # A deadline, not a measurement: events keep flowing, and within 5 s of the edits the
        # points written carry the new area.
        rows = wait_until(
            lambda: influx_db.query("SELECT * FROM /.*/ WHERE \"area\" = 'Greenhouse'"),
            5.0,
            0.2,
            message="points with the new area",
        )
        assert {f"{row['domain']}.{row['entity_id']}" for row in rows} <= set(registered)
    finally:
        worker.stop()
        listener.stop()
        sim.stop()


def test_enrichment_can_be_switched_off(redis_url: str, influx_db: InfluxDatabase) -> None:
    from config.celery_app import create_app
    from workers.consumers.task_sender import TaskSender
    from workers.worker_context import WorkerContext

    client = redis.Redis.from_url(redis_url)
    store(client, "areas", AREAS)
    store(client, "devices", DEVICES)
    store(client, "entities", ENTITIES)
    event = state_events(
        [
            {
                "entity_id": "sensor.fridge_temp",
                "state": "4",
                "attributes": {},
                "last_updated": "2026-01-01T00:00:00+00:00",
            }
        ]
    )[0]
    message = {"event": event, "received_at": time.time(), "source": "live", "seq": 1}
    for enabled, database in ((True, influx_db.name), (False, influx_db.name + "_off")):
        settings = load_settings(
            celery_broker_url=redis_url,
            influxdb_url=influx_db.url,
            influxdb_database=database,
            enrichment_enabled=enabled,
        )
        send_many = TaskSender(create_app(settings))
        # Creates the second database, as a worker does at start.
        context = WorkerContext(settings, Destinations.single(settings), send_many=send_many)
        assert context.ingest([message]).written == 1
        context.close()
    on = influx_db.query("SELECT * FROM /.*/ GROUP BY *")
    off = influx_db.client.query("SELECT * FROM /.*/ GROUP BY *", influx_db.name + "_off")
    influx_db.client.results(f'DROP DATABASE "{influx_db.name}_off"')
    assert (on[0]["area"], on[0]["device"]) == ("Kitchen", "Fridge")
    assert "area" not in off[0]
    assert "device" not in off[0]
