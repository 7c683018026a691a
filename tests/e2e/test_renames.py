"""Rename continuity with real processes (TRACK_RENAMES): simulator → listener → worker → InfluxDB.

One scenario, in the order a home lives it: an entity renamed while the listener runs (HA
announces it), another renamed while the listener is cut off from HA, a third while the
listener process is stopped (both found by comparing the entity registry with the one stored
in Redis, at the reconnect and at the restart). Each time: the points before and after carry
the same `entity_registry_id`, the rename point is in InfluxDB, `ha-ingestor renames` lists it,
and the InfluxQL of docs/renames.md draws one line across the two names.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from core.renames import RENAMES_MEASUREMENT
from tests.helpers import InfluxDatabase, wait_until
from tests.processes import BIN
from tests.sim_thread import SimulatorThread
from tests.stack import TOKEN, Stack

pytestmark = pytest.mark.e2e

DOC = Path(__file__).resolve().parents[2] / "docs" / "renames.md"
LIVE = ("sensor.temperature_du_sejour", "sensor.salon_temperature", "°C")
AWAY = ("input_number.power_level", "input_number.power_setpoint", "W")
STOPPED = ("sensor.kuche_luftfeuchtigkeit", "sensor.kueche_humidity", "%")


def _doc_influxql() -> str:
    """The first InfluxQL block of docs/renames.md: the query the docs promise."""
    match = re.search(r"```sql\n(.*?)```", DOC.read_text("utf-8"), re.DOTALL)
    assert match, "docs/renames.md has no ```sql block"
    return match.group(1).strip()


def _points(influx: InfluxDatabase, measurement: str, object_id: str) -> list[dict[str, Any]]:
    return influx.query(
        f'SELECT "value", "entity_registry_id" FROM "{measurement}" '
        f"WHERE \"entity_id\" = '{object_id}'"
    )


def _registry_id(sim: SimulatorThread, entity_id: str) -> str:
    entries = sim.do(lambda: list(sim.sim.home.registry))
    return str(next(e.registry_id for e in entries if e.entity_id == entity_id))


def _changed_and_written(
    sim: SimulatorThread, influx: InfluxDatabase, entity_id: str, measurement: str, rid: str
) -> bool:
    """Change the entity once more; true when a point under its id carries the stable id."""
    sim.do(sim.sim.change_entity, entity_id)
    rows = _points(influx, measurement, entity_id.partition(".")[2])
    return any(row["entity_registry_id"] == rid for row in rows)


def _renamed(
    sim: SimulatorThread, influx: InfluxDatabase, old: str, new: str, measurement: str
) -> tuple[str, float]:
    """After a rename: the stable id, and seconds until a tagged point of the new id was in
    InfluxDB (changing the entity every 0.3 s)."""
    rid = _registry_id(sim, new)
    began = time.monotonic()
    wait_until(
        lambda: _changed_and_written(sim, influx, new, measurement, rid), 20, interval=0.3,
        message=f"a point of {new} tagged {rid}",
    )  # fmt: skip
    took = time.monotonic() - began
    before = _points(influx, measurement, old.partition(".")[2])
    assert before, f"no point of {old} before its rename"
    assert {row["entity_registry_id"] for row in before} == {rid}
    return rid, took


def _rename_points(influx: InfluxDatabase) -> list[dict[str, Any]]:
    return influx.query(f'SELECT * FROM "{RENAMES_MEASUREMENT}"')


def _one_line(
    influx: InfluxDatabase, rid: str, measurement: str, names: tuple[str, str]
) -> tuple[int, int]:
    """The docs' InfluxQL for this entity draws one series holding every tagged point of both
    names (counted with count() in place of mean()); returns (its points, untagged points)."""
    query = _doc_influxql().replace('"°C"', f'"{measurement}"')
    query = re.sub(r"'[0-9a-f]{32}'", f"'{rid}'", query)
    assert 'mean("value")' in query
    for aggregate in ("mean", "count"):
        results = influx.client.results(query.replace("mean(", f"{aggregate}("), influx.name)
        series = [s for result in results for s in result.get("series", [])]
        assert len(series) == 1, series
    drawn = sum(count for _, count in series[0]["values"])
    rows = [row for name in names for row in _points(influx, measurement, name.partition(".")[2])]
    assert drawn == sum(row["entity_registry_id"] == rid for row in rows)
    assert {row["entity_registry_id"] for row in rows} <= {rid, None}
    return drawn, sum(row["entity_registry_id"] is None for row in rows)


def test_points_keep_one_id_across_live_missed_and_restart_renames(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase
) -> None:
    sim = SimulatorThread(token=TOKEN, rate=5, entities=16).start(paused=True)
    stack = Stack(tmp_path, sim, redis_url, influx_db, {"TRACK_RENAMES": "true"})
    try:
        stack.start_worker()
        listener = stack.start_listener()
        states = sim.do(lambda: len(sim.sim.home.states))
        stack.wait_ready(states)
        old, new, unit = LIVE
        wait_until(lambda: _points(influx_db, unit, old.partition(".")[2]), 20,
                   message=f"the snapshot's point of {old}")  # fmt: skip
        sim.do(sim.sim.rename_entity, old, new)
        live_rid, live_took = _renamed(sim, influx_db, old, new, unit)
        renames = wait_until(lambda: _rename_points(influx_db), 10, message="the rename point")
        assert [(r["old_entity_id"], r["new_entity_id"], r["found_by"], r["entity_registry_id"])
                for r in renames] == [("temperature_du_sejour", "salon_temperature", "event",
                                       live_rid)]  # fmt: skip
        live_line = _one_line(influx_db, live_rid, unit, LIVE[:2])
        assert live_line[1] == 0, "HA's first state under the new id is tagged too"

        # Cut off: HA refuses connections while the user renames another entity.
        sim.do(sim.sim.set_accepting, False)
        sim.call(sim.sim.drop_clients())
        wait_until(lambda: not stack.subscribed(), 10, message="the listener lost HA")
        old, new, unit = AWAY
        sim.do(sim.sim.rename_entity, old, new)
        sim.do(sim.sim.set_accepting, True)
        stack.wait_subscribed()
        away_rid, away_took = _renamed(sim, influx_db, old, new, unit)
        found = wait_until(lambda: [r for r in _rename_points(influx_db)
                                    if r["found_by"] == "registry"], 10,
                           message="the rename found at the reconnect")  # fmt: skip
        assert [(r["old_entity_id"], r["new_entity_id"], r["entity_registry_id"])
                for r in found] == [("power_level", "power_setpoint", away_rid)]  # fmt: skip
        away_line = _one_line(influx_db, away_rid, unit, AWAY[:2])
        seen = stack.health()["listener"]["renames_seen"]

        # The listener stopped (its memory gone) while a third entity is renamed.
        listener.stop()
        old, new, unit = STOPPED
        sim.do(sim.sim.rename_entity, old, new)
        stack.start_listener()
        stack.wait_subscribed()
        stopped_rid, _ = _renamed(sim, influx_db, old, new, unit)
        _one_line(influx_db, stopped_rid, unit, STOPPED[:2])

        listed = subprocess.run(
            [str(BIN / "ha-ingestor"), "renames"], env=stack.env(), capture_output=True,
            text=True, timeout=30, check=False,
        )  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.splitlines()
        assert len(lines) == 3, listed.stdout
        assert "sensor.temperature_du_sejour → sensor.salon_temperature" in lines[0]
        assert f"entity_registry_id={live_rid}  (event)" in lines[0]
        assert "input_number.power_level → input_number.power_setpoint" in lines[1]
        assert f"entity_registry_id={away_rid}  (registry)" in lines[1]
        assert "sensor.kuche_luftfeuchtigkeit → sensor.kueche_humidity" in lines[2]
        assert f"entity_registry_id={stopped_rid}  (registry)" in lines[2]
        assert seen == 2
        assert stack.health()["listener"]["renames_seen"] == 1, "the restarted listener's"
        print(
            f"renames: a tagged point of the new id in InfluxDB {live_took:.2f} s after the live "
            f"rename, {away_took:.2f} s after the reconnect; the docs' query drew one series of "
            f"(points, untagged left out): live {live_line}, missed {away_line}"
        )
    finally:
        stack.stop()
        sim.stop()
