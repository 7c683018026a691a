"""What a worker process builds at start (workers/worker_context.py), against real servers."""

from __future__ import annotations

import time

import pytest
import redis

from config.celery_app import create_app
from config.redis_keys import RedisKeys
from config.settings import load_settings
from core.rules import Rules
from tests.helpers import InfluxDatabase
from workers.consumers.task_sender import TaskSender
from workers.monitoring.health_job import Monitor
from workers.sinks.influx_sink import V1Sink
from workers.worker_context import WorkerContext

pytestmark = pytest.mark.integration

T = "2026-01-01T00:00:00+00:00"
T_NS = 1_767_225_600 * 10**9


def state_message(entity_id: str, state: str, seq: int) -> dict[str, object]:
    new_state = {"entity_id": entity_id, "state": state, "attributes": {}, "last_updated": T}
    data = {"entity_id": entity_id, "new_state": new_state}
    event = {"event_type": "state_changed", "data": data}
    return {"event": event, "received_at": time.time(), "source": "live", "seq": seq}


def test_a_refused_write_puts_influxdbs_words_in_the_health_reason(
    redis_url: str, influx_db: InfluxDatabase
) -> None:
    """`write_errors` quotes InfluxDB's error text: the workers keep the last one in Redis
    (`last_write_error`, for HEALTH_WINDOW), beat reads it."""
    settings = load_settings(
        celery_broker_url=redis_url,
        influxdb_url=influx_db.url,
        influxdb_database=influx_db.name,
        health_window=120,
    )
    # `value` already a string in this series: the worker's float is a field type conflict.
    planted = V1Sink(influx_db.url, influx_db.name)
    planted.write([f'sensor.conflict,entity_id=planted value="x" {T_NS - 1}'])
    planted.close()
    context = WorkerContext(settings, Rules(), send_many=TaskSender(create_app(settings)))
    try:
        outcome = context.ingest([state_message("sensor.conflict", "5", 1)])
    finally:
        context.close()
    assert outcome.dead_lettered == {"rejected_by_influxdb": 1}

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    key = RedisKeys(settings.redis_prefix).last_write_error()
    assert "field type conflict" in str(client.get(key))
    assert 0 < client.ttl(key) <= 120
    report = Monitor.from_settings(settings).run()
    [reason] = [r for r in report["reasons"] if r.startswith("InfluxDB refused 1 batch")]
    assert "InfluxDB rejected the points (400)" in reason
    assert "field type conflict" in reason, reason
