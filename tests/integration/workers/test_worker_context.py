"""What a worker process builds at start (workers/worker_context.py), against real servers."""

from __future__ import annotations

import os
import time

import pytest
import redis
from celery.signals import worker_shutting_down

from config.celery_app import create_app
from config.destinations import Destinations
from config.redis_keys import RedisKeys
from config.settings import load_settings
from tests.helpers import InfluxDatabase
from workers.consumers.task_sender import TaskSender
from workers.monitoring.health_job import Monitor
from workers.sinks.influx_sink import V1Sink
from workers.worker_context import WorkerContext, context_of
from workers.worker_start import start_worker

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
    # `value` already a string in this series: the worker's float is a field type conflict,
    # and its shadow field `value_float` a string too, so no shadow can take it.
    planted = V1Sink(influx_db.url, influx_db.name)
    planted.write([f'sensor.conflict,entity_id=planted value="x",value_float="x" {T_NS - 1}'])
    planted.close()
    context = WorkerContext(
        settings, Destinations.single(settings), send_many=TaskSender(create_app(settings))
    )
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


@pytest.mark.parametrize("shadows", [True, False])
def test_a_type_clash_goes_to_a_shadow_field_unless_turned_off(
    redis_url: str, influx_db: InfluxDatabase, shadows: bool
) -> None:
    """By default (TYPE_SHADOW_FIELDS) the worker writes a number that meets an integer `value`
    to `value_float` and counts it in the report; turned off, the point is dead-lettered."""
    settings = load_settings(
        celery_broker_url=redis_url,
        influxdb_url=influx_db.url,
        influxdb_database=influx_db.name,
        type_shadow_fields=shadows,
    )
    planted = V1Sink(influx_db.url, influx_db.name)
    planted.write([f"sensor.clash,entity_id=planted value=7i {T_NS - 1}"])
    planted.close()
    context = WorkerContext(
        settings, Destinations.single(settings), send_many=TaskSender(create_app(settings))
    )
    try:
        outcome = context.ingest([state_message("sensor.clash", "21.5", 1)])
    finally:
        context.close()

    report = Monitor.from_settings(settings).run()
    rows = influx_db.query(
        "SELECT value, value_float FROM \"sensor.clash\" WHERE entity_id = 'clash'"
    )
    if shadows:
        assert (outcome.written, outcome.type_shadowed, outcome.dead_lettered) == (1, 1, {})
        assert rows == [{"time": T_NS, "value": None, "value_float": 21.5}]
        assert report["pipeline"]["type_shadowed"] == 1
    else:
        assert outcome.dead_lettered == {"rejected_by_influxdb": 1}
        assert rows == []
        assert report["pipeline"]["type_shadowed"] == 0


def test_the_app_carries_the_worker_context_and_a_forked_child_builds_its_own(
    redis_url: str, influx_db: InfluxDatabase
) -> None:
    """No module global holds it: the start-up step hangs it on the worker's app, where the
    consumer step and the ingest task find it; the worker's shutdown reaches it."""
    settings = load_settings(
        celery_broker_url=redis_url, influxdb_url=influx_db.url, influxdb_database=influx_db.name
    )
    app = create_app(settings)
    with pytest.raises(RuntimeError, match="no worker context: the ingest task runs in a worker"):
        context_of(app)
    context = start_worker(app)
    try:
        holder = context_of(app)
        assert holder.current() is context
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: sockets are not shared across a fork
            child = holder.current()
            os.write(write, b"own" if child is not context else b"shared")
            os._exit(0)
        os.close(write)
        assert os.read(read, 10) == b"own"
        os.waitpid(pid, 0)
        assert not context.stopping.is_set()
        worker_shutting_down.send(sender="test@host", sig="SIGTERM", how="Warm", exitcode=0)
        assert context.stopping.is_set(), "a held batch hands its messages back at shutdown"
    finally:
        context.close()
