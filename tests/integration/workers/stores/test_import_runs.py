"""Workers mark what became of each imported message (workers/stores/import_runs.py): real Redis and
InfluxDB, the worker's own context."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from config.celery_app import create_app
from config.destinations import Destinations
from config.redis_keys import RedisKeys
from config.settings import load_settings
from core.statistics_point import statistics_event
from core.task_message import TaskMessage
from listener.history.backfill import state_event
from listener.importing.run_progress import RunProgress
from tests.helpers import InfluxDatabase
from workers.consumers.task_sender import TaskSender
from workers.sinks.influx_sink import V1Sink
from workers.worker_context import WorkerContext

pytestmark = pytest.mark.integration

T = "2026-01-01T00:00:00+00:00"
T_NS = 1_767_225_600 * 10**9


def _state(entity_id: str, state: str, unit: str = "W") -> dict[str, Any]:
    return state_event({"entity_id": entity_id, "state": state, "last_updated": T,
                        "attributes": {"unit_of_measurement": unit}})  # fmt: skip


def test_each_finished_import_message_is_marked_once_by_kind(
    redis_url: str, influx_db: InfluxDatabase
) -> None:
    settings = load_settings(
        celery_broker_url=redis_url, influxdb_url=influx_db.url, influxdb_database=influx_db.name
    )
    # `value` already text in this series, and its shadow field too: no shadow can take it.
    planted = V1Sink(influx_db.url, influx_db.name)
    planted.write([f'V,domain=sensor,entity_id=conflict value="x",value_float="x" {T_NS - 1}'])
    planted.close()
    row = {"start": T_NS // 10**6, "mean": 2.5, "min": 1.0, "max": 4.0}
    events = [
        _state("sensor.power", "5"),  # written
        statistics_event("sensor.power", "kWh", "hour", row),  # written, statistics schema
        _state("sensor.power", "unavailable"),  # skipped by rule
        _state("sensor.conflict", "7", "V"),  # refused by InfluxDB: dead letter
        {"event_type": "state_changed", "data": "nonsense"},  # invalid: dead letter
    ]
    messages = [TaskMessage(e, time.time(), "import", i, "run1").to_json()
                for i, e in enumerate(events)]  # fmt: skip
    messages.append(TaskMessage(_state("sensor.live", "1"), time.time(), "live", 99).to_json())
    context = WorkerContext(
        settings, Destinations.single(settings), send_many=TaskSender(create_app(settings))
    )
    try:
        outcome = context.ingest(messages)
        context.ingest(messages[:1])  # a redelivery: its bit is set again, not twice
    finally:
        context.close()
    assert outcome.written == 3
    client = redis.Redis.from_url(redis_url)
    progress = RunProgress(client, RedisKeys(settings.redis_prefix), "run1")
    assert progress.finished() == 5
    assert progress.finished_between(0, 4) == 5
    assert progress.counts() == {"written": 3, "skipped": 1, "dead_lettered": 2}
    rows = influx_db.query('SELECT * FROM "kWh" GROUP BY *')
    assert [(r["statistic_id"], r["period"], r["entity_id"], r["mean"], int(r["time"]))
            for r in rows] == [("sensor.power", "hour", "power", 2.5, T_NS)]  # fmt: skip
