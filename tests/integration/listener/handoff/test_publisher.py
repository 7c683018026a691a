"""The publisher against a real Redis broker: pipelined publishing, spool while it is down."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from celery.contrib.testing.worker import start_worker

from config.settings import Settings, load_settings
from core.task_message import INGEST_TASK
from devtools.local_servers import RedisServer, free_port
from listener.handoff.publisher import (
    CallableBatches,
    KombuBatches,
    Publisher,
    WireBatches,
    celery_publisher,
)
from listener.handoff.spool import Spool
from listener.health.stats import ListenerStats
from tests.helpers import stock_celery_app, stored_arg, wait_until

pytestmark = pytest.mark.integration


def _message(seq: int) -> dict[str, Any]:
    return {"event": {"event_type": "state_changed", "n": seq}, "received_at": 1.0,
            "source": "live", "seq": seq}  # fmt: skip


def _settings(broker_url: str, queue: str = "ha_events") -> Settings:
    return load_settings(celery_broker_url=broker_url, celery_queue=queue)


def _queued(client: redis.Redis, queue: str) -> list[bytes]:
    """Every message waiting in the queue as stored, oldest first (kombu LPUSHes, workers
    BRPOP: the tail is the oldest)."""
    return list(reversed(cast("list[bytes]", client.lrange(queue, 0, -1))))


def _queued_seqs(client: redis.Redis, queue: str) -> list[int]:
    """The seq of every task message waiting in the queue, oldest first."""
    seqs = []
    for raw in _queued(client, queue):
        seqs.append(stored_arg(raw)["seq"])  # the body may be zlib-compressed
    return seqs


def test_every_message_becomes_one_celery_task_in_order(redis_url: str, tmp_path: Path) -> None:
    batches = celery_publisher(_settings(redis_url))
    assert isinstance(batches, WireBatches), "a plain Redis broker takes the fast path"
    stats = ListenerStats()
    publisher = Publisher(batches, Spool(tmp_path / "s"), stats)
    publisher.start()
    for seq in range(1, 2001):
        assert publisher.submit(_message(seq))
    publisher.stop()
    client = redis.Redis.from_url(redis_url)
    assert _queued_seqs(client, "ha_events") == list(range(1, 2001))
    assert stats.events_enqueued == 2000
    assert stats.events_spooled == 0


def test_broker_down_spools_then_drains_in_order(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", appendonly=True)
    server.start()
    try:
        stats = ListenerStats()
        spool = Spool(tmp_path / "spool.sqlite3")
        publisher = Publisher(
            celery_publisher(_settings(server.url)),
            spool,
            stats,
            backoff=lambda: iter([0.05] * 1_000_000),
        )
        publisher.start()
        for seq in range(1, 301):
            publisher.submit(_message(seq))
        wait_until(lambda: stats.events_enqueued == 300, 10, message="first 300 published")
        server.stop()
        for seq in range(301, 801):
            publisher.submit(_message(seq))
        wait_until(lambda: stats.events_spooled >= 500, 10, message="500 events spooled")
        assert not stats.broker_up
        server.start()
        wait_until(lambda: spool.depth == 0 and stats.broker_up, 20, message="spool drained")
        publisher.stop()
        client = redis.Redis.from_url(server.url)
        seqs = _queued_seqs(client, "ha_events")
        assert sorted(set(seqs)) == list(range(1, 801)), "every event reached the broker"
        assert seqs == sorted(seqs), "and in order"
    finally:
        server.stop()


def _spool_while_the_broker_is_down(spool_path: Path, messages: list[Any]) -> list[bytes]:
    """Submit to a broker nobody listens on; returns the spooled rows."""
    stats = ListenerStats()
    down = f"redis://127.0.0.1:{free_port()}/0"
    publisher = Publisher(
        celery_publisher(_settings(down, "spooled")),
        Spool(spool_path),
        stats,
        backoff=lambda: iter([0.05] * 1_000_000),
    )
    publisher.start()
    for message in messages:
        assert publisher.submit(message)
    wait_until(lambda: stats.events_spooled == len(messages), 10, message="everything spooled")
    publisher.stop()
    spool = Spool(spool_path)
    rows = [body for _, body in spool.peek(len(messages) + 1)]
    spool.close()
    return rows


def test_spooled_bytes_reach_a_stock_worker_unchanged(redis_url: str, tmp_path: Path) -> None:
    spool_path = tmp_path / "spool.sqlite3"
    sent = [_message(seq) for seq in range(1, 201)]
    spooled = _spool_while_the_broker_is_down(spool_path, sent)
    assert len(spooled) == len(sent)

    stats = ListenerStats()
    publisher = Publisher(
        celery_publisher(_settings(redis_url, "spooled")), Spool(spool_path), stats
    )
    publisher.start()
    wait_until(lambda: stats.events_drained == len(sent), 10, message="the spool drained")
    publisher.stop()
    client = redis.Redis.from_url(redis_url)
    assert _queued(client, "spooled") == spooled, "the broker got the spooled bytes as they are"

    app = stock_celery_app(redis_url, "spool_test")
    seen: list[Any] = []

    @app.task(name=INGEST_TASK, acks_late=True, shared=False)  # type: ignore[untyped-decorator]
    def ingest(message: Any) -> None:
        seen.append(message)

    with start_worker(
        app, pool="solo", perform_ping_check=False, queues=["spooled"], loglevel="WARNING"
    ):
        wait_until(lambda: len(seen) >= len(sent), 30, message="the worker ran every task")
    assert seen == sent


def test_a_spool_left_by_a_killed_listener_is_drained_first(redis_url: str, tmp_path: Path) -> None:
    spool_path = tmp_path / "spool.sqlite3"
    _spool_while_the_broker_is_down(spool_path, [_message(seq) for seq in range(1, 51)])
    stats = ListenerStats()
    publisher = Publisher(
        celery_publisher(_settings(redis_url, "spooled")), Spool(spool_path), stats
    )
    publisher.start()
    for seq in range(51, 101):
        publisher.submit(_message(seq))
    publisher.stop()
    assert _queued_seqs(redis.Redis.from_url(redis_url), "spooled") == list(range(1, 101))


def test_a_spool_written_by_the_previous_version_drains(redis_url: str, tmp_path: Path) -> None:
    """Before schema version 1 the spool held each task argument as JSON TEXT."""
    spool_path = tmp_path / "spool.sqlite3"
    db = sqlite3.connect(spool_path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE spool (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT)")
    db.executemany(
        "INSERT INTO spool (body) VALUES (?)", ((json.dumps(_message(s)),) for s in range(1, 51))
    )
    db.commit()
    db.close()
    stats = ListenerStats()
    spool = Spool(spool_path)
    assert spool.needs_upgrade
    publisher = Publisher(celery_publisher(_settings(redis_url)), spool, stats)
    assert not spool.needs_upgrade, "converted once, before anything is published"
    publisher.start()
    for seq in range(51, 101):
        publisher.submit(_message(seq))
    publisher.stop()
    client = redis.Redis.from_url(redis_url)
    assert _queued_seqs(client, "ha_events") == list(range(1, 101))
    oldest = stored_arg(_queued(client, "ha_events")[0])  # fails unless an ingest task
    assert oldest["seq"] == 1, "rebuilt as a task message"
    assert stats.events_drained >= 50


def test_other_brokers_spool_the_message_json() -> None:
    """RabbitMQ's path keeps the §3.1 message (send_task's argument); older rows are the same."""
    settings = load_settings(
        celery_broker_url="amqp://guest:guest@127.0.0.1:1//", redis_url="redis://127.0.0.1:1/0"
    )
    batches = celery_publisher(settings)
    assert isinstance(batches, KombuBatches)
    message = _message(7)
    assert json.loads(batches.spool_body(message)) == message
    assert batches.from_spool(batches.spool_body(message)) == message
    assert batches.from_spool(batches.from_legacy(json.dumps(message))) == message


def test_the_watermark_follows_what_the_broker_or_the_spool_holds(tmp_path: Path) -> None:
    """A mark counts once LPUSH returned or the spool committed it."""
    broker = RedisServer(tmp_path / "redis")
    broker.start()
    try:
        publisher = Publisher(
            celery_publisher(_settings(broker.url)), Spool(tmp_path / "s"), ListenerStats()
        )
        assert publisher.watermark.value is None
        publisher.start()
        for seq in range(1, 101):
            assert publisher.submit(_message(seq), mark=f"t{seq}")
        wait_until(lambda: publisher.watermark.value == "t100", 10, message="t100 in the broker")
        assert len(_queued(redis.Redis.from_url(broker.url), "ha_events")) == 100
        broker.stop()
        for seq in range(101, 201):
            assert publisher.submit(_message(seq), mark=f"t{seq}")
        # The broker is down: the spool's commit is what makes these durable.
        wait_until(lambda: publisher.watermark.value == "t200", 20, message="t200 spooled")
        assert publisher._spool.depth == 100
        publisher.stop()
    finally:
        broker.stop()


def test_a_batch_forms_while_it_lingers_and_goes_out_in_one_publish(tmp_path: Path) -> None:
    """At the rates homes send, one wake-up and one publish carry every event of the linger."""
    batches: list[list[dict[str, Any]]] = []
    stats = ListenerStats()
    publisher = Publisher(CallableBatches(batches.append), Spool(tmp_path / "s"), stats, linger=0.5)
    publisher.start()
    for seq in range(1, 11):  # the first wakes the thread, which lingers: the rest join it
        assert publisher.submit(_message(seq))
    wait_until(lambda: stats.events_enqueued == 10, 10, message="the batch published")
    publisher.stop()
    assert [[m["seq"] for m in batch] for batch in batches] == [list(range(1, 11))]


def test_a_full_batch_does_not_linger_and_stop_does_not_wait_it_out(tmp_path: Path) -> None:
    published: list[dict[str, Any]] = []
    stats = ListenerStats()
    publisher = Publisher(
        CallableBatches(published.extend),
        Spool(tmp_path / "s"),
        stats,
        batch_size=100,
        linger=3600.0,
    )
    for seq in range(1, 101):  # a whole batch waits before the thread looks
        assert publisher.submit(_message(seq))
    publisher.start()
    wait_until(lambda: stats.events_enqueued == 100, 10, message="a full batch at once")
    assert publisher.submit(_message(101))  # lingers for an hour, unless stopped
    started = time.monotonic()
    publisher.stop()
    assert time.monotonic() - started < 5
    assert [m["seq"] for m in published] == list(range(1, 102))
    assert stats.events_spooled == 0
