"""The quiet-sensor heartbeat with real processes: a quiet home, the listener restarted once.

A quiet entity gets heartbeat points (tagged `heartbeat=true`), one that keeps changing and one
that HA reports `unavailable` get none; after a restart the heartbeat carries on from the
snapshot: the quiet entity at once, an entity changed while the listener was down only an
interval after that change.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from listener.handoff.state_heartbeat import SLACK_S
from tests.helpers import InfluxDatabase, wait_until
from tests.sim_thread import SimulatorThread
from tests.stack import TOKEN, Stack

pytestmark = pytest.mark.e2e

INTERVAL = 5.0
"""Long enough that a listener's restart (about 2 s) falls well inside it."""
QUIET = "sensor.temperature_du_sejour"
CHANGING = "sensor.kuche_luftfeuchtigkeit"
FRESH = "sensor.power_usage"
DOWN = "binary_sensor.front_door"
HEARTBEAT_ENV = {
    "STATE_HEARTBEAT_INTERVAL": f"{INTERVAL:g}",
    "STATE_HEARTBEAT_DOMAINS": "binary_sensor",
    "STATE_HEARTBEAT_ENTITY_GLOBS": f"sensor.temperature_*,sensor.kuche_luft*,{FRESH}",
}


def _heartbeats(influx: InfluxDatabase) -> dict[str, list[int]]:
    """Heartbeat point times (ns) by entity object id."""
    rows = influx.query("SELECT * FROM /.*/ WHERE \"heartbeat\" = 'true' GROUP BY *")
    found: dict[str, list[int]] = {}
    for row in rows:
        found.setdefault(row["entity_id"], []).append(int(row["time"]))
    return {entity: sorted(times) for entity, times in found.items()}


Beats = dict[str, list[int]]


def _wait_for_beats(influx: InfluxDatabase, ok: Callable[[Beats], bool], message: str) -> Beats:
    """The heartbeats found once `ok` holds for them (fails after 30 s)."""
    found: Beats = {}

    def check() -> bool:
        nonlocal found
        found = _heartbeats(influx)
        return ok(found)

    wait_until(check, 30, interval=0.2, message=message)
    return found


def _object_id(entity_id: str) -> str:
    return entity_id.partition(".")[2]


def _updated_ns(sim: SimulatorThread, entity_id: str) -> int:
    updated = sim.do(lambda: sim.sim.home.states[entity_id]["last_updated"])
    return int(datetime.fromisoformat(updated).timestamp() * 1e9)


class _Changer:
    """Changes one entity every 0.4 s (far below the interval) until stopped."""

    def __init__(self, sim: SimulatorThread, entity_id: str) -> None:
        self._sim, self._entity_id = sim, entity_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        value = 40.0
        while not self._stop.wait(0.4):
            value += 0.1
            self._sim.do(self._sim.sim.set_state, self._entity_id, f"{value:.1f}")

    def __enter__(self) -> _Changer:
        self._sim.do(self._sim.sim.set_state, self._entity_id, "40.0")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def test_heartbeat_marks_quiet_entities_skips_others_and_survives_a_restart(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase
) -> None:
    sim = SimulatorThread(token=TOKEN, rate=1, events=0, entities=16).start()
    stack = Stack(tmp_path, sim, redis_url, influx_db, extra_env=HEARTBEAT_ENV)
    sim.do(sim.sim.set_state, DOWN, "unavailable")
    try:
        stack.start_worker()
        with _Changer(sim, CHANGING):
            listener = stack.start_listener()
            stack.wait_subscribed()
            found = _wait_for_beats(
                influx_db,
                lambda beats: len(beats.get(_object_id(QUIET), [])) >= 2,
                "two heartbeats of the quiet entity",
            )
            first = found[_object_id(QUIET)]
            assert first[1] - first[0] >= (INTERVAL - SLACK_S) * 1e9
            assert stack.health()["listener"]["state_heartbeats"] >= 2
            assert listener.stop() == 0
            stopped_ns = time.time_ns()
            sim.do(sim.sim.set_state, FRESH, "123.0")  # changed while nobody listens
            fresh_ns = _updated_ns(sim, FRESH)
            stack.start_listener()
            after = _wait_for_beats(
                influx_db,
                lambda beats: (
                    any(t > fresh_ns for t in beats.get(_object_id(FRESH), []))
                    and any(t > stopped_ns for t in beats.get(_object_id(QUIET), []))
                ),
                "heartbeats of the quiet and the fresh entity after the restart",
            )
        assert _object_id(CHANGING) not in after, "a changing entity is never quiet"
        assert _object_id(DOWN) not in after, "an unavailable entity gets no heartbeat"
        fresh_beat = min(t for t in after[_object_id(FRESH)] if t > fresh_ns)
        assert fresh_beat - fresh_ns >= (INTERVAL - SLACK_S) * 1e9, (
            "the restart's snapshot set the clock to the change, not to 'never written'"
        )
        kept = influx_db.query(
            'SELECT "value" FROM "°C" WHERE "entity_id" = \'temperature_du_sejour\' '
            "AND \"heartbeat\" != 'true'"
        )
        assert len(kept) == 1, "filtering the tag out leaves the state's own point"
        values = influx_db.query(
            'SELECT "value" FROM "°C" WHERE "entity_id" = \'temperature_du_sejour\' '
            "AND \"heartbeat\" = 'true'"
        )
        assert {row["value"] for row in values} == {kept[0]["value"]}
    except AssertionError:
        print(stack.logs())
        raise
    finally:
        stack.stop()
        sim.stop()
