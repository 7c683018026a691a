"""Two homes on one broker: two simulators whose areas differ, two listener processes, one
Redis, one worker process, real InfluxDB 1.x. Homes never mix: every event lands once, each
point's area comes from its own home's registries and carries its own `instance` tag, and
Redis holds each home's registries under its own keys."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from config.redis_keys import RedisKeys
from tests.expectations import SeriesKey, expected_points, ha_states, recorded_events, state_events
from tests.helpers import InfluxDatabase, wait_until
from tests.sim_thread import SimulatorThread
from tests.stack import TOKEN, Stack

pytestmark = pytest.mark.e2e

EVENTS = 400
"""Per home: a few seconds at RATE, enough for every entity to change several times."""
RATE = 100
SOUTH_AREAS = {"living_room": "Lounge", "kitchen": "Galley", "bedroom": "Bunk Room"}


@dataclass
class Home:
    name: str
    """What its listener names it: made from the location name (north) or HA_INSTANCE."""
    sim: SimulatorThread
    stack: Stack
    record: Path
    initial: list[dict[str, Any]] | None = None


def _home(tmp: Path, location: str, areas: dict[str, str] | None, **kw: Any) -> Home:
    tmp.mkdir()
    record = tmp / "sent.jsonl"
    sim = SimulatorThread(
        token=TOKEN,
        rate=RATE,
        events=EVENTS,
        entities=30,
        record_path=record,
        location_name=location,
        area_names=areas,
    ).start(paused=True)
    return Home(kw.pop("name"), sim, Stack(tmp, sim, **kw), record)


def _area_by_entity(sim: SimulatorThread) -> dict[str, str]:
    """entity_id → the area HA's registries give it (its own, else its device's), worked out
    independently of core/enrichment.py."""
    home = sim.sim.home
    areas = {a["area_id"]: a["name"] for a in sim.do(home.area_registry)}
    devices = {d["id"]: d for d in sim.do(home.device_registry)}
    out = {}
    for entry in sim.do(home.entity_registry):
        device = devices.get(entry["device_id"]) if entry["device_id"] else None
        area_id = entry["area_id"] or (device["area_id"] if device else None)
        if area_id in areas:
            out[entry["entity_id"]] = areas[area_id]
    return out


def test_two_homes_on_one_broker_never_mix(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase
) -> None:
    common = {"broker_url": redis_url, "influx": influx_db}
    north = _home(tmp_path / "north", "North Farm", None, name="north_farm", **common)
    south = _home(tmp_path / "south", "South Cabin", SOUTH_AREAS, name="south", **common)
    homes = (north, south)
    client = redis.Redis.from_url(redis_url)
    try:
        north.stack.start_listener()
        south.stack.start_listener(HA_INSTANCE="south")
        north.stack.start_worker(INSTANCE_TAG="true", BATCH_INTERVAL="0.2")
        for home in homes:
            home.initial = ha_states(home.sim.sim.url, TOKEN)
            home.stack.wait_ready(len(home.initial))
        for home in homes:
            home.sim.do(home.sim.sim.resume_events)
        for home in homes:
            home.sim.call(home.sim.sim.wait_done(), timeout=60)

        expected = {
            home.name: expected_points(
                state_events(home.initial or []) + recorded_events(home.record)
            )
            for home in homes
        }
        assert all(len(recorded_events(home.record)) == EVENTS for home in homes)
        found: dict[str, dict[SeriesKey, dict[str, Any]]] = {}

        def landed() -> bool:
            nonlocal found
            found = _points_by_home(influx_db)
            return all(expected[name].keys() <= found.get(name, {}).keys() for name in expected)

        wait_until(landed, 60, 1.0, message="both homes' points in InfluxDB")
        assert set(found) == {"north_farm", "south"}, "every point has its home's instance tag"
        for home in homes:
            mine = found[home.name]
            assert mine.keys() == expected[home.name].keys(), f"{home.name}: once, nothing extra"
            areas = _area_by_entity(home.sim)
            with_area = 0
            for (domain, object_id, _), row in mine.items():
                entity_id = f"{domain}.{object_id}"
                assert (row.get("area") or None) == areas.get(entity_id), (
                    home.name,
                    entity_id,
                    row,
                )
                with_area += entity_id in areas
            assert with_area > len(mine) // 4, f"{home.name}: areas on many points"
        assert not {"Lounge", "Galley"} & {r.get("area") for r in found["north_farm"].values()}
        assert "Galley" in {r.get("area") for r in found["south"].values()}

        for home in homes:
            keys = RedisKeys().for_home(home.name)
            stored = json.loads(client.get(keys.registry("areas")) or b"null")
            assert stored == home.sim.do(home.sim.sim.home.area_registry), home.name
            assert int(client.get(keys.registry_version()) or 0) >= 1
        assert not client.exists(RedisKeys().registry("areas")), "no home writes the shared key"
        kept = json.loads((tmp_path / "north" / "data" / "home.json").read_text())
        assert kept["instance"] == "north_farm", "the name made from HA's is kept in DATA_DIR"
        assert not (tmp_path / "south" / "data" / "home.json").exists(), "HA_INSTANCE: no file"
    finally:
        for home in homes:
            home.stack.stop()
            home.sim.stop()


def _points_by_home(influx: InfluxDatabase) -> dict[str, dict[SeriesKey, dict[str, Any]]]:
    out: dict[str, dict[SeriesKey, dict[str, Any]]] = defaultdict(dict)
    for row in influx.query("SELECT * FROM /.*/ GROUP BY *"):
        key = (row["domain"], row["entity_id"], int(row["time"]))
        out[row.get("instance") or ""][key] = row
    return dict(out)
