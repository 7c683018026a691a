"""Two homes on one broker: two simulators whose areas differ, two listener processes, one
Redis, one worker process, real InfluxDB 1.x. Homes never mix: every event lands once, each
point's area comes from its own home's registries and carries its own `instance` tag, and
Redis holds each home's registries under its own keys. One screen for the fleet: each
listener's /health is its own home's, `ha-ingestor status` lists both, and a listener killed by
PID is named silent within the listener-stale timeout."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from config.redis_keys import RedisKeys
from tests.expectations import SeriesKey, expected_points, ha_states, recorded_events, state_events
from tests.helpers import InfluxDatabase, wait_until
from tests.processes import BIN, AppProcess, beat_argv
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


STALE_S = 6.0
"""HEALTH_LISTENER_STALE: its smallest value (three missed reports), so the test is short."""
FLEET = {"HEALTH_LISTENER_STALE": str(STALE_S), "BEAT_INTERVAL": "1"}


def _status(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "ha-ingestor"), "status", *args],
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _metrics(stack: Stack) -> str:
    url = f"http://127.0.0.1:{stack.health_port}/metrics"
    with urllib.request.urlopen(url, timeout=3) as reply:
        text: str = reply.read().decode()
    return text


def test_the_fleet_view_lists_both_homes_and_names_a_killed_one(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase
) -> None:
    common = {"broker_url": redis_url, "influx": influx_db, "extra_env": FLEET}
    north = _home(tmp_path / "north", "North Farm", None, name="north_farm", **common)
    south = _home(tmp_path / "south", "South Cabin", SOUTH_AREAS, name="south", **common)
    homes = (north, south)
    try:
        north.stack.start_listener()
        south_listener = south.stack.start_listener(HA_INSTANCE="south")
        beat = AppProcess("beat", beat_argv(tmp_path / "schedule"), north.stack.env(), tmp_path)
        north.stack.processes.append(beat.start())
        for home in homes:
            home.stack.wait_subscribed()
            assert home.stack.health()["listener"]["instance"] == home.name, "its own home"

        def both_listed() -> bool:
            listed = north.stack.health().get("homes", {})
            return all(listed.get(h.name, {}).get("is_subscribed") for h in homes)

        wait_until(both_listed, 30, 0.5, "beat's fleet view lists both homes, subscribed")
        table = _status(north.stack)
        lines = [line for line in table.stdout.splitlines() if line.startswith("Home ")]
        assert [line.split()[1] for line in lines] == ["north_farm", "south"], table.stdout
        assert all(" subscribed, " in line for line in lines), table.stdout
        assert "2 homes, 2 subscribed" in table.stdout, table.stdout

        south_listener.kill()  # SIGKILL by its PID: no goodbye in Redis, it just stops reporting
        killed_at = time.monotonic()

        def south_silent() -> bool:
            return bool(north.stack.health()["homes"]["south"]["silent"])

        wait_until(south_silent, STALE_S + 10, 0.2, "the fleet names the killed home silent")
        named_after = time.monotonic() - killed_at
        # Its last report was at most 2 s before the kill; beat runs every second.
        assert named_after <= STALE_S + 2 + 1 + 1.5, named_after
        health = north.stack.health()
        assert health["fleet"]["silent"] == ["south"]
        assert health["listener"]["instance"] == "north_farm"
        assert "home_silent" not in {c["code"] for c in health["checks"]}, "not north's problem"
        assert 'ha_ingestor_home_silent{home="south",instance="north_farm"} 1.0' in _metrics(
            north.stack
        )
        status = _status(north.stack, "--json")
        assert status.returncode == 2, status.stdout + status.stderr  # unhealthy
        report = json.loads(status.stdout)
        silent = [c for c in report["checks"] if c["code"] == "home_silent"]
        assert [c["home"] for c in silent] == ["south"]
        assert "home south silent" in silent[0]["message"]
        assert report["homes"]["north_farm"]["is_subscribed"] is True
        print(f"south named silent {named_after:.1f} s after SIGKILL (stale {STALE_S} s)")
    finally:
        for home in homes:
            home.stack.stop()
            home.sim.stop()
