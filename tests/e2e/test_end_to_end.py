"""The whole pipeline with real processes: simulator → listener → Redis → worker → InfluxDB."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from devtools.local_servers import free_port
from tests.expectations import (
    expected_points,
    ha_states,
    points_in_influx,
    recorded_events,
    state_events,
)
from tests.helpers import InfluxDatabase, wait_until
from tests.processes import AppProcess, app_env, beat_argv, listener_argv, worker_argv
from tests.sim_thread import SimulatorThread

pytestmark = pytest.mark.e2e

TOKEN = "e2e-token-0123456789"
EVENTS = 5000


def _health(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
            body: dict[str, Any] = json.load(reply)
    except urllib.error.HTTPError as exc:
        body = json.load(exc)
    except OSError:
        body = {"listener": {"events_enqueued": -1}}
    return body


def test_5000_events_reach_influxdb_exactly(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase
) -> None:
    record = tmp_path / "sent.jsonl"
    sim = SimulatorThread(
        token=TOKEN, rate=2000, events=EVENTS, entities=40, record_path=record
    ).start(paused=True)
    health_port = free_port()
    env = app_env(
        HA_URL=sim.sim.url,
        HA_TOKEN=TOKEN,
        CELERY_BROKER_URL=redis_url,
        INFLUXDB_URL=influx_db.url,
        INFLUXDB_DATABASE=influx_db.name,
        HEALTH_PORT=str(health_port),
        DATA_DIR=str(tmp_path / "data"),
        BEAT_INTERVAL="1",
    )
    worker = AppProcess("worker", worker_argv(), env, tmp_path).start()
    beat = AppProcess("beat", beat_argv(tmp_path / "beat-schedule"), env, tmp_path).start()
    listener = AppProcess("listener", listener_argv(), env, tmp_path).start()
    try:
        initial = ha_states(sim.sim.url, TOKEN)
        wait_until(
            lambda: sim.do(lambda: sim.sim.subscriber_count) >= 1,
            20,
            message="the listener subscribed",
        )
        wait_until(
            lambda: _health(health_port)["listener"]["events_enqueued"] >= len(initial),
            20,
            message="the snapshot enqueued before HA sends anything new",
        )
        sim.do(sim.sim.resume_events)
        sim.call(sim.sim.wait_done(), timeout=60)

        sent = recorded_events(record)
        assert len(sent) == EVENTS
        expected = expected_points(state_events(initial) + sent)
        wait_until(
            lambda: len(points_in_influx(influx_db)) >= len(expected),
            90,
            message=f"{len(expected)} points in InfluxDB",
        )
        found = points_in_influx(influx_db)
        assert found.keys() == expected.keys()
        for key, point in expected.items():
            fields = dict(point.fields)
            row = found[key]
            if "value" in fields:
                assert row["value"] == pytest.approx(fields["value"]), key
            if "state" in fields:
                assert row["state"] == fields["state"], key
        per_entity_sent: dict[str, int] = {}
        for key in expected:
            per_entity_sent[key[1]] = per_entity_sent.get(key[1], 0) + 1
        per_entity_found: dict[str, int] = {}
        for key in found:
            per_entity_found[key[1]] = per_entity_found.get(key[1], 0) + 1
        assert per_entity_found == per_entity_sent

        wait_until(
            lambda: (
                _health(health_port)["status"] == "healthy"
                and _health(health_port)["pipeline"]["queue_depth"] == 0
            ),
            30,
            message="a healthy verdict once beat has looked at the drained pipeline",
        )
        health = _health(health_port)
        assert health["subscription"]["total_events_received"] == EVENTS
        assert health["pipeline"]["queue_depth"] == 0
    finally:
        listener_code = listener.stop()
        worker.stop()
        beat.stop()
        sim.stop()
    assert listener_code == 0, listener.log_text()[-3000:]
