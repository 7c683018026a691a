"""Floor and labels tags end to end: a real listener stores HA's registries, a real worker
writes the points; a user's edits reach the next points; an HA before 2024.4 gives neither."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from config.redis_keys import RedisKeys
from core.rules import Rules
from core.transform import Point, event_to_point
from tests.expectations import ha_states, state_events
from tests.helpers import InfluxDatabase, wait_until
from tests.sim_thread import SimulatorThread
from tests.stack import SIM_HOME, TOKEN, Stack

pytestmark = pytest.mark.integration

KEYS = RedisKeys()
HOME_KEYS = KEYS.for_home(SIM_HOME)
NEXT_POINTS_WITHIN_S = 1.0
"""Events HA fires this long after a registry edit are written with the edit's tags."""
OPTIONS = {"ENRICHMENT_FLOOR": "true", "ENRICHMENT_LABELS": "inherited", "BATCH_INTERVAL": "0.2"}


def expected_tags(home: Any) -> dict[str, dict[str, str]]:
    """entity_id → floor and labels as HA's registries imply them, worked out independently:
    the floor of the entity's area (own, else its device's); the labels of the entity, its
    device and that area, by name, sorted and wrapped in commas."""
    areas = {a["area_id"]: a for a in home.area_registry()}
    floors = {f["floor_id"]: f["name"] for f in home.floor_registry()}
    labels = {label["label_id"]: label["name"] for label in home.label_registry()}
    devices = {d["id"]: d for d in home.device_registry()}
    out: dict[str, dict[str, str]] = {}
    for entity in home.entity_registry():
        device = devices.get(entity["device_id"], {})
        area = areas.get(entity["area_id"] or device.get("area_id"), {})
        held = {*entity["labels"], *device.get("labels", ()), *area.get("labels", ())}
        tags = {}
        if area.get("floor_id") in floors:
            tags["floor"] = floors[area["floor_id"]]
        if names := sorted(labels[i] for i in held if i in labels):
            tags["labels"] = "," + ",".join(names) + ","
        out[entity["entity_id"]] = tags
    return out


def written(client: redis.Redis) -> int:
    return int(client.get(KEYS.counter("written")) or 0)


def snapshot_points(sim: SimulatorThread) -> int:
    initial = ha_states(sim.sim.url, TOKEN)
    return sum(isinstance(event_to_point(e, Rules()), Point) for e in state_events(initial))


def test_points_carry_floor_and_labels_and_edits_reach_the_next_points(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase
) -> None:
    sim = SimulatorThread(token=TOKEN, rate=200, events=8_000, entities=20).start(paused=True)
    stack = Stack(tmp_path, sim, redis_url, influx_db, OPTIONS)
    client = redis.Redis.from_url(redis_url)
    try:
        stack.start_listener()
        stack.start_worker()
        wait_until(lambda: client.exists(HOME_KEYS.registry("labels")), 30, message="registries")
        snapshot = snapshot_points(sim)
        sim.do(sim.sim.resume_events)
        wait_until(lambda: written(client) >= snapshot + 300, 30, 0.2, message="events written")

        expected = sim.do(expected_tags, sim.sim.home)
        seen: dict[str, dict[str, str]] = {}
        for row in influx_db.query("SELECT * FROM /.*/ GROUP BY *"):
            entity_id = f"{row['domain']}.{row['entity_id']}"
            tags = {k: row[k] for k in ("floor", "labels") if row.get(k)}
            assert tags == expected.get(entity_id, {}), row
            seen[entity_id] = tags
        assert any("floor" in t for t in seen.values())
        assert any(t.get("labels", "").count(",") > 2 for t in seen.values()), "several labels"
        assert any(not t for t in seen.values()), "an unregistered entity has neither"

        stale = edit_and_check_the_next_points(sim, client, influx_db)
        print(
            "after the edit, points still carried the old floor for {floor:.2f} s and lacked "
            "the new label for {label:.2f} s of HA's event time; registries in Redis after "
            "{redis:.2f} s".format(**stale)
        )
        assert stale["floor"] < NEXT_POINTS_WITHIN_S
        assert stale["label"] < NEXT_POINTS_WITHIN_S
        assert "could not fetch" not in stack.logs()
    finally:
        stack.stop()
        sim.stop()


def edit_and_check_the_next_points(
    sim: SimulatorThread, client: redis.Redis, influx_db: InfluxDatabase
) -> dict[str, float]:
    """Move the living room upstairs and give every registered entity a new label, under
    load; returns how long after the edit (in HA's event time) points still carried the old
    floor or lacked the label, and when Redis held the edit (wall clock)."""
    registered = sim.do(lambda: [entry.entity_id for entry in sim.sim.home.registry])
    sim.do(sim.sim.create_label, "vacation", "Vacation")
    wait_until(lambda: b'"vacation"' in (client.get(HOME_KEYS.registry("labels")) or b""), 5)
    edited_ns = time.time_ns()
    sim.do(sim.sim.move_area, "living_room", "first_floor")
    for entity_id in registered:
        held = sim.do(lambda e=entity_id: sim.sim.home.held_labels.get(("entity", e), ()))
        sim.do(sim.sim.set_labels, "entity", entity_id, [*held, "vacation"])

    def in_redis() -> bool:
        areas = json.loads(client.get(HOME_KEYS.registry("areas")) or b"[]")
        entities = json.loads(client.get(HOME_KEYS.registry("entities")) or b"[]")
        return {"area_id": "living_room", "floor_id": "first_floor"}.items() <= next(
            (a for a in areas if a["area_id"] == "living_room"), {}
        ).items() and all("vacation" in e["labels"] for e in entities)

    wait_until(in_redis, 5, 0.01, message="the edits in Redis")
    redis_s = (time.time_ns() - edited_ns) / 1e9
    settled = edited_ns + int(3e9)
    wait_until(
        lambda: influx_db.query(f"SELECT * FROM /.*/ WHERE time > {settled}"),
        15,
        0.2,
        message="points of events 3 s after the edit",
    )
    after = f"time > {edited_ns} AND time <= {settled}"
    living = influx_db.query(f"SELECT * FROM /.*/ WHERE {after} AND \"area\" = 'Living Room'")
    old_floor = [row["time"] for row in living if row.get("floor") != "First Floor"]
    assert any(row.get("floor") == "First Floor" for row in living)
    labelled = [row for row in influx_db.query(f"SELECT * FROM /.*/ WHERE {after}")
                if f"{row['domain']}.{row['entity_id']}" in registered]  # fmt: skip
    unlabelled = [row["time"] for row in labelled if ",Vacation," not in (row.get("labels") or "")]
    assert any(",Vacation," in (row.get("labels") or "") for row in labelled)
    return {
        "redis": redis_s,
        "floor": (max(old_floor, default=edited_ns) - edited_ns) / 1e9,
        "label": (max(unlabelled, default=edited_ns) - edited_ns) / 1e9,
    }


def test_an_ha_before_2024_4_gives_no_floor_or_labels_and_no_error(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase
) -> None:
    sim = SimulatorThread(
        token=TOKEN, rate=400, events=400, entities=20, floors_and_labels=False
    ).start(paused=True)
    stack = Stack(tmp_path, sim, redis_url, influx_db, OPTIONS)
    client = redis.Redis.from_url(redis_url)
    try:
        stack.start_listener()
        stack.start_worker()
        wait_until(lambda: client.exists(HOME_KEYS.registry("labels")), 30, message="registries")
        snapshot = snapshot_points(sim)
        sim.do(sim.sim.resume_events)
        sim.call(sim.sim.wait_done(), timeout=60)
        wait_until(lambda: written(client) >= snapshot + 300, 30, 0.2, message="events written")
        rows = influx_db.query("SELECT * FROM /.*/ GROUP BY *")
        assert not [row for row in rows if row.get("floor") or row.get("labels")]
        assert any(row.get("area") for row in rows), "the other tags still come"
        logs = stack.logs()
        assert logs.count("HA has no floors registry") == 1, logs
        assert " ERROR " not in logs
        assert "could not fetch" not in logs
        assert "Traceback" not in logs
    finally:
        stack.stop()
        sim.stop()
