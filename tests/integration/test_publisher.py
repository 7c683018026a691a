"""The publisher against a real Redis broker: pipelined publishing, spool while it is down."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from config.celery_app import create_app
from config.settings import load_settings
from devtools.local_servers import RedisServer
from listener.listener_stats import ListenerStats
from listener.publisher import Publisher, celery_publisher
from listener.spool import Spool
from tests.helpers import wait_until

pytestmark = pytest.mark.integration


def _message(seq: int) -> dict[str, object]:
    return {"event": {"event_type": "state_changed", "n": seq}, "received_at": 1.0,
            "source": "live", "seq": seq}  # fmt: skip


def _queued_seqs(client: redis.Redis, queue: str) -> list[int]:
    """The seq of every task message waiting in the queue, oldest first."""
    bodies = client.lrange(queue, 0, -1)
    seqs = []
    for raw in reversed(bodies):  # kombu LPUSHes, workers BRPOP: the tail is the oldest
        envelope = json.loads(raw)
        import base64

        args, _, _ = json.loads(base64.b64decode(envelope["body"]))
        seqs.append(args[0]["seq"])
    return seqs


def test_every_message_becomes_one_celery_task_in_order(redis_url: str, tmp_path: Path) -> None:
    app = create_app(load_settings(celery_broker_url=redis_url))
    stats = ListenerStats()
    publisher = Publisher(celery_publisher(app, "ha_events"), Spool(tmp_path / "s"), stats)
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
        app = create_app(load_settings(celery_broker_url=server.url))
        stats = ListenerStats()
        spool = Spool(tmp_path / "spool.sqlite3")
        publisher = Publisher(
            celery_publisher(app, "ha_events"),
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


def test_a_spool_left_by_a_killed_listener_is_drained_first(redis_url: str, tmp_path: Path) -> None:
    spool_path = tmp_path / "spool.sqlite3"
    leftover = Spool(spool_path)
    leftover.append([json.dumps(_message(seq)) for seq in range(1, 51)])
    leftover.close()
    app = create_app(load_settings(celery_broker_url=redis_url))
    stats = ListenerStats()
    publisher = Publisher(celery_publisher(app, "ha_events"), Spool(spool_path), stats)
    publisher.start()
    for seq in range(51, 101):
        publisher.submit(_message(seq))
    publisher.stop()
    assert _queued_seqs(redis.Redis.from_url(redis_url), "ha_events") == list(range(1, 101))
