"""A message no worker can read becomes a dead letter that says why, on every way in.

Real worker processes on a real Redis: the bulk taker (the default) and Celery's stock consumer
with the celery-batches task (WORKER_BULK_TAKE=false). The dead letters are read back from
Redis, where `ha-ingestor dlq list` reads them. (RabbitMQ's taker: test_amqp_bulk.py.)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import redis

from config.celery_app import create_app
from config.redis_keys import RedisKeys
from config.settings import load_settings
from core.task_message import INGEST_TASK, TaskWire
from tests.expectations import expected_points, points_in_influx, state_events
from tests.helpers import InfluxDatabase, wait_until
from tests.processes import AppProcess, app_env, worker_argv
from workers.stores.dead_letters import UNDECODABLE, DeadLetter, DeadLetterStore

pytestmark = pytest.mark.integration

QUEUE = "ha_events"


def _arg(seq: int) -> dict[str, Any]:
    state = {"entity_id": f"sensor.undecodable_{seq}", "state": str(seq), "attributes": {},
             "last_updated": 1_780_000_000 + seq}  # fmt: skip
    return {"event": state_events([state])[0], "received_at": time.time(), "source": "live",
            "seq": seq}  # fmt: skip


def _letters(store: DeadLetterStore, count: int) -> list[DeadLetter] | None:
    found = store.list(limit=100)
    return found if len(found) >= count else None


def _run_worker(
    redis_url: str, influx_db: InfluxDatabase, tmp_path: Path, bulk_take: str
) -> AppProcess:
    env = app_env(CELERY_BROKER_URL=redis_url, INFLUXDB_URL=influx_db.url,
                  INFLUXDB_DATABASE=influx_db.name, BATCH_INTERVAL="0.2",
                  WORKER_BULK_TAKE=bulk_take, DATA_DIR=str(tmp_path / "data"))  # fmt: skip
    return AppProcess("worker", worker_argv(), env, tmp_path).start()


def test_the_bulk_taker_dead_letters_an_undecodable_message_with_its_reason(
    redis_url: str, influx_db: InfluxDatabase, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(redis_url)
    wire = TaskWire(INGEST_TASK, QUEUE, origin="gen1@test")
    foreign = TaskWire("other.task", QUEUE, origin="gen1@test").encode(_arg(2))
    good = [_arg(1), _arg(3)]
    # LPUSH: the rightmost is taken first.
    client.lpush(QUEUE, wire.encode(good[0]), b"not json", foreign, wire.encode(good[1]))
    worker = _run_worker(redis_url, influx_db, tmp_path, "true")
    store = DeadLetterStore(client, RedisKeys())
    try:
        letters = wait_until(lambda: _letters(store, 2), 30, 0.2, message="two dead letters")
        assert letters is not None
        expected = expected_points([a["event"] for a in good])
        wait_until(lambda: points_in_influx(influx_db).keys() >= expected.keys(), 30, 0.2,
                   message="the good messages written")  # fmt: skip
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]
    by_error = {letter.error.split(":")[0]: letter for letter in letters}
    assert {letter.reason for letter in letters} == {UNDECODABLE}
    assert set(by_error) == {"not JSON", "a 'other.task' task in the ingest queue"}
    assert by_error["not JSON"].message == repr(b"not json")
    assert "other.task" in by_error["a 'other.task' task in the ingest queue"].message
    assert client.llen(QUEUE) == 0, "acknowledged: dead letters are done"


def test_the_stock_consumer_dead_letters_a_task_without_its_argument_with_the_reason(
    redis_url: str, influx_db: InfluxDatabase, tmp_path: Path
) -> None:
    """WORKER_BULK_TAKE=false: Celery decodes the message, the task decodes its argument with
    the same decoder."""
    worker = _run_worker(redis_url, influx_db, tmp_path, "false")
    client = redis.Redis.from_url(redis_url)
    store = DeadLetterStore(client, RedisKeys())
    app = create_app(load_settings(celery_broker_url=redis_url))
    try:
        app.send_task(INGEST_TASK, args=[])
        app.send_task(INGEST_TASK, args=[_arg(1)])
        found = wait_until(lambda: _letters(store, 1), 30, 0.2, message="a dead letter")
        assert found is not None
        [letter] = found
        expected = expected_points([_arg(1)["event"]])
        wait_until(lambda: points_in_influx(influx_db).keys() >= expected.keys(), 30, 0.2,
                   message="the good message written")  # fmt: skip
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]
    assert letter.reason == UNDECODABLE
    assert letter.error.startswith("not a Celery protocol-2 task body with one argument")
