"""Several destinations in one worker (workers/destinations.py), against a real InfluxDB 1.x:
each takes what its own rules choose, and one that is down holds no other back."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from config.celery_app import create_app
from config.destinations import load_destinations
from config.redis_keys import RedisKeys
from config.settings import Settings, load_settings
from tests.helpers import InfluxDatabase, wait_until
from tests.tcp_proxy import SlowProxy
from workers.consumers.task_sender import TaskSender
from workers.stores.backlog import Backlog
from workers.stores.dead_letters import DeadLetterStore
from workers.worker_context import WorkerContext

pytestmark = pytest.mark.integration

T0 = 1_767_225_600.0


def state_message(entity_id: str, state: str, seq: int) -> dict[str, object]:
    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(T0 + seq)) + "+00:00"
    new_state = {"entity_id": entity_id, "state": state, "attributes": {}, "last_updated": when}
    event = {
        "event_type": "state_changed",
        "data": {"entity_id": entity_id, "new_state": new_state},
    }
    return {"event": event, "received_at": time.time(), "source": "live", "seq": seq}


@pytest.fixture
def second_db(influx_db: InfluxDatabase) -> Iterator[InfluxDatabase]:
    """Another database on the same server: a second store."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    influx_db.client.results(f'CREATE DATABASE "{name}"')
    yield InfluxDatabase(url=influx_db.url, name=name, client=influx_db.client)
    influx_db.client.results(f'DROP DATABASE "{name}"')


def two_destinations(
    tmp_path: Path, redis_url: str, main: InfluxDatabase, other_url: str, other_db: str, extra: str
) -> Settings:
    config = tmp_path / "ha-ingestor.yaml"
    config.write_text(
        "destinations:\n"
        "  - name: default\n"
        f"  - {{name: archive, url: '{other_url}', database: {other_db}{extra}}}\n",
        encoding="utf-8",
    )
    return load_settings(
        celery_broker_url=redis_url,
        influxdb_url=main.url,
        influxdb_database=main.name,
        ha_ingestor_config=config,
    )


def count(db: InfluxDatabase, measurement: str = "state") -> int:
    rows = db.query(f'SELECT count(*) FROM "{measurement}"', epoch=None)
    return max((v for row in rows for k, v in row.items() if k != "time"), default=0)


def points(db: InfluxDatabase) -> int:
    rows = db.query("SHOW MEASUREMENTS", epoch=None)
    return sum(count(db, row["name"]) for row in rows)


def test_each_destination_takes_what_its_own_rules_choose(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase, second_db: InfluxDatabase
) -> None:
    extra = ", include: {entity_globs: ['sensor.*_energy']}"
    settings = two_destinations(
        tmp_path, redis_url, influx_db, second_db.url, second_db.name, extra
    )
    context = WorkerContext(
        settings, load_destinations(settings), send_many=TaskSender(create_app(settings))
    )
    try:
        batch = [
            state_message("sensor.kitchen_energy", "1.5", 1),
            state_message("sensor.kitchen_temperature", "21", 2),
            state_message("light.hall", "on", 3),
        ]
        outcome = context.ingest(batch)
    finally:
        context.close()
    assert outcome.destinations["default"].written == 3
    assert outcome.destinations["archive"].written == 1
    assert dict(outcome.destinations["archive"].skipped) == {"filtered": 2}
    assert outcome.handed_back == []
    assert points(influx_db) == 3
    assert points(second_db) == 1


def test_a_down_destination_keeps_its_events_apart_and_gets_them_on_its_return(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase, second_db: InfluxDatabase
) -> None:
    """The archive is down: the default still gets each batch at once, the archive's events
    wait in its backlog (the broker is done with them) and land within 2 s of its return."""
    proxy = SlowProxy(int(influx_db.url.rsplit(":", 1)[1]), delay=0)
    archive_url = f"http://127.0.0.1:{proxy.port}"
    settings = two_destinations(tmp_path, redis_url, influx_db, archive_url, second_db.name, "")
    context = WorkerContext(
        settings, load_destinations(settings), send_many=TaskSender(create_app(settings))
    )
    client = redis.Redis.from_url(redis_url)
    backlog = Backlog(client, RedisKeys(settings.redis_prefix).for_destination("archive"))
    try:
        first = context.ingest([state_message("sensor.a", str(i), i) for i in range(10)])
        assert first.destinations["default"].written == 10
        assert first.destinations["archive"].backlogged == 10
        assert first.handed_back == []
        assert backlog.parked()
        assert backlog.events() == 10
        second = context.ingest([state_message("sensor.b", str(i), 10 + i) for i in range(10)])
        assert second.destinations["archive"].backlogged == 10  # parked: no write tried
        assert second.destinations["archive"].write_errors == 0
        assert points(influx_db) == 20
        assert points(second_db) == 0

        proxy.start()  # the archive answers again
        returned = time.monotonic()
        wait_until(lambda: points(second_db) == 20, timeout=2.0, message="the archive's backlog")
        landed = time.monotonic() - returned
        print(f"archive backlog of 20 events landed {landed:.2f} s after its return")
        wait_until(lambda: not backlog.parked(), timeout=2.0, message="the archive unparked")
        assert backlog.events() == 0
        assert backlog.chunks() == 0
        third = context.ingest([state_message("sensor.c", "1", 30)])
        assert third.destinations["archive"].written == 1  # straight to it again
    finally:
        context.close()
        proxy.stop()
        client.close()
    assert points(influx_db) == 21
    assert points(second_db) == 21


def test_a_message_no_destination_can_read_is_one_dead_letter(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase, second_db: InfluxDatabase
) -> None:
    settings = two_destinations(tmp_path, redis_url, influx_db, second_db.url, second_db.name, "")
    context = WorkerContext(
        settings, load_destinations(settings), send_many=TaskSender(create_app(settings))
    )
    client = redis.Redis.from_url(redis_url)
    try:
        outcome = context.ingest([{"not": "a task"}, state_message("sensor.a", "1", 1)])
        keys = RedisKeys(settings.redis_prefix)
        shared = DeadLetterStore(client, keys)
        archive = DeadLetterStore(client, keys.for_destination("archive"))
        assert [letter.reason for letter in shared.list()] == ["invalid_event"]
        assert archive.count() == 0
        assert outcome.dead_lettered == {"invalid_event": 1}
        assert outcome.destinations["archive"].written == 1
    finally:
        context.close()
        client.close()


def test_every_destinations_secrets_are_known_to_the_log_filter(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase
) -> None:
    """Settings.secrets() (what logs, /health and errors are scrubbed of) holds the secrets of
    every destination, from the file or beside it."""
    token_file = tmp_path / "archive.token"
    token_file.write_text("archive-token-0123456789\n", encoding="utf-8")
    config = tmp_path / "ha-ingestor.yaml"
    config.write_text(
        "destinations:\n"
        "  - name: default\n"
        "  - {name: archive, kind: influxdb3, url: 'http://127.0.0.1:1', "
        f"token_file: '{token_file}'}}\n"
        "  - {name: old, url: 'http://reader:old-password-987@127.0.0.1:2'}\n",
        encoding="utf-8",
    )
    settings = load_settings(
        celery_broker_url=redis_url, influxdb_url=influx_db.url, ha_ingestor_config=config
    )
    secrets = settings.secrets()
    assert "archive-token-0123456789" in secrets
    assert "old-password-987" in secrets
    described = [d.describe() for d in load_destinations(settings).all]
    assert not any(s in text for s in secrets for text in described), described


def test_outage_letters_kept_before_a_second_destination_are_replayed_to_all(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase, second_db: InfluxDatabase
) -> None:
    """Events a lone `default` kept in its outage store are enqueued again once writes
    succeed after a second destination was added, so no configuration change strands them."""
    settings = two_destinations(tmp_path, redis_url, influx_db, second_db.url, second_db.name, "")
    client = redis.Redis.from_url(redis_url)
    waiting = state_message("sensor.waited", "7", 5)
    DeadLetterStore(client, RedisKeys(settings.redis_prefix)).add_many(
        [(waiting, "too_old_during_outage", "InfluxDB was down")]
    )
    sent: list[object] = []
    context = WorkerContext(settings, load_destinations(settings), send_many=sent.extend)
    try:
        context.ingest([state_message("sensor.a", "1", 1)])
    finally:
        context.close()
        client.close()
    assert sent == [{**waiting, "source": "replay"}]


def test_a_batch_that_failed_unforeseen_is_kept_once_for_every_destination(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase, second_db: InfluxDatabase
) -> None:
    settings = two_destinations(tmp_path, redis_url, influx_db, second_db.url, second_db.name, "")
    context = WorkerContext(settings, load_destinations(settings), send_many=list().extend)
    client = redis.Redis.from_url(redis_url)
    try:
        assert context.fan_out is not None
        batch = [state_message("sensor.a", "1", 1), state_message("sensor.b", "2", 2)]
        outcome = context.fan_out.dead_letter_all(batch, "worker_error", "RuntimeError()")
        keys = RedisKeys(settings.redis_prefix)
        shared = DeadLetterStore(client, keys)
        archive = DeadLetterStore(client, keys.for_destination("archive"))
        assert [letter.reason for letter in shared.list()] == ["worker_error"] * 2
        assert archive.count() == 0
        assert outcome.dead_lettered == {"worker_error": 2}
    finally:
        context.close()
        client.close()
