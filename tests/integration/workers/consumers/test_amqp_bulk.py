"""RabbitMQ as the broker (CELERY_BROKER_URL=amqp://…), Redis still the state store.

Runs against the RabbitMQ server of the machine (127.0.0.1:5672, guest/guest), in a vhost of
its own created with `rabbitmqctl` and deleted afterwards, so the server's other vhosts and
queues are never touched. A missing server fails with the install command.

kombu's `Producer.batch()` pipelines publishes only on Redis; on amqp it publishes each
message at once (`supports_batch_publish` is False), which the listener's publisher relies on.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu.connection import Connection

from config.celery_app import create_app
from config.destinations import Destinations
from config.redis_keys import RedisKeys
from config.settings import load_settings
from core.task_message import INGEST_TASK
from devtools.local_servers import free_port
from listener.handoff.publisher import KombuBatches, Publisher, celery_publisher
from listener.handoff.spool import Spool
from listener.health.stats import ListenerStats
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
from tests.stack import SIM_HOME
from workers.consumers.amqp_taker import AmqpTaker
from workers.consumers.bulk_consumer import make_taker
from workers.consumers.task_sender import TaskSender
from workers.stores.dead_letters import UNDECODABLE, DeadLetterStore
from workers.worker_context import WorkerContext

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

RABBITMQ = ("127.0.0.1", 5672)
INSTALL = (
    "install and start RabbitMQ: `apt-get install rabbitmq-server` (Debian starts it; "
    "otherwise `service rabbitmq-server start`)"
)
TOKEN = "rabbitmq-token-0123456789"
EVENTS = 2000


def _rabbitmqctl(*args: str) -> str:
    binary = shutil.which("rabbitmqctl") or shutil.which("rabbitmqctl", path="/usr/sbin:/sbin")
    if binary is None:
        pytest.fail(f"rabbitmqctl is missing: {INSTALL}", pytrace=False)
    result = subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        pytest.fail(
            f"`rabbitmqctl {' '.join(args)}` failed: {result.stderr.strip()} — is the server "
            f"running? {INSTALL}",
            pytrace=False,
        )
    return result.stdout


def _new_vhost() -> tuple[str, str]:
    """A vhost of our own on the machine's RabbitMQ, with guest allowed in: (name, URL)."""
    try:
        socket.create_connection(RABBITMQ, timeout=2).close()
    except OSError as exc:
        pytest.fail(f"no RabbitMQ on {RABBITMQ[0]}:{RABBITMQ[1]} ({exc}): {INSTALL}")
    name = f"ha_ingestor_test_{uuid.uuid4().hex[:10]}"
    _rabbitmqctl("add_vhost", name)
    _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    return name, f"amqp://guest:guest@{RABBITMQ[0]}:{RABBITMQ[1]}/{name}"


@pytest.fixture(scope="module")
def amqp_url() -> Iterator[str]:
    """One vhost for the module (each test uses its own queue names inside it)."""
    name, url = _new_vhost()
    try:
        yield url
    finally:
        _rabbitmqctl("delete_vhost", name)


def _message(seq: int) -> dict[str, Any]:
    return {"event": {"event_type": "state_changed", "n": seq}, "received_at": 1.0,
            "source": "live", "seq": seq}  # fmt: skip


def _drain(url: str, queue: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Take every message off the queue: (headers, task message) in broker order."""
    out = []
    with Connection(url) as connection:
        channel = connection.channel()
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            headers = dict(message.headers)
            body = message.body
            if headers.get("compression"):  # what kombu's Message.decode undoes
                body = zlib.decompress(body)
            args, _, _ = json.loads(body)
            out.append((headers, args[0]))
    return out


def _queue_depth(url: str, queue: str) -> int:
    with Connection(url) as connection:
        _, depth, _ = connection.default_channel.queue_declare(queue=queue, passive=True)
    return int(depth)


def test_publisher_sends_each_message_at_once_as_a_stock_task(
    amqp_url: str, redis_url: str, tmp_path: Path
) -> None:
    queue = f"q_{uuid.uuid4().hex[:8]}"
    app = create_app(load_settings(celery_broker_url=amqp_url, redis_url=redis_url))
    with app.producer_or_acquire() as producer:
        assert not producer.supports_batch_publish  # kombu falls back to immediate publishes
    stats = ListenerStats()
    batches = celery_publisher(
        load_settings(celery_broker_url=amqp_url, redis_url=redis_url, celery_queue=queue)
    )
    publisher = Publisher(batches, Spool(tmp_path / "spool"), stats)
    publisher.start()
    for seq in range(1, 1001):
        assert publisher.submit(_message(seq))
    publisher.stop()
    assert stats.events_enqueued == 1000
    assert stats.events_spooled == 0
    messages = _drain(amqp_url, queue)
    assert [m["seq"] for _, m in messages] == list(range(1, 1001))
    assert {h["task"] for h, _ in messages} == {INGEST_TASK}


def test_broker_outage_spools_then_drains_in_order(redis_url: str, tmp_path: Path) -> None:
    """Deleting the vhost cuts every connection to it, as a broker outage does."""
    name, url = _new_vhost()
    try:
        stats = ListenerStats()
        spool = Spool(tmp_path / "spool.sqlite3")
        publisher = Publisher(
            celery_publisher(load_settings(celery_broker_url=url, redis_url=redis_url)),
            spool,
            stats,
            backoff=lambda: iter([0.1] * 1_000_000),
        )
        publisher.start()
        for seq in range(1, 101):
            publisher.submit(_message(seq))
        wait_until(lambda: stats.events_enqueued == 100, 10, message="100 published")
        _rabbitmqctl("delete_vhost", name)  # the queue goes with it: only what follows counts
        for seq in range(101, 401):
            publisher.submit(_message(seq))
        wait_until(lambda: stats.events_spooled >= 300, 20, message="300 events spooled")
        assert not stats.broker_up
        _rabbitmqctl("add_vhost", name)
        _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        wait_until(lambda: spool.depth == 0 and stats.broker_up, 30, message="spool drained")
        publisher.stop()
        assert [m["seq"] for _, m in _drain(url, "ha_events")] == list(range(101, 401))
    finally:
        _rabbitmqctl("delete_vhost", name)


def test_end_to_end_over_rabbitmq(
    amqp_url: str, redis_url: str, influx_db: InfluxDatabase, tmp_path: Path
) -> None:
    """Simulator → listener → RabbitMQ → worker → InfluxDB; beat measures the amqp queue."""
    queue = f"ha_events_{uuid.uuid4().hex[:8]}"
    record = tmp_path / "sent.jsonl"
    sim = SimulatorThread(
        token=TOKEN, rate=1000, events=EVENTS, entities=30, record_path=record
    ).start(paused=True)
    health_port = free_port()
    env = app_env(
        HA_URL=sim.sim.url,
        HA_TOKEN=TOKEN,
        CELERY_BROKER_URL=amqp_url,
        CELERY_QUEUE=queue,
        REDIS_URL=redis_url,
        INFLUXDB_URL=influx_db.url,
        INFLUXDB_DATABASE=influx_db.name,
        HEALTH_PORT=str(health_port),
        DATA_DIR=str(tmp_path / "data"),
        BEAT_INTERVAL="1",
    )
    processes = [
        AppProcess("worker", worker_argv(), env, tmp_path),
        AppProcess("beat", beat_argv(tmp_path / "beat-schedule"), env, tmp_path),
        AppProcess("listener", listener_argv(), env, tmp_path),
    ]
    for process in processes:
        process.start()
    listener = processes[-1]
    try:
        initial = ha_states(sim.sim.url, TOKEN)
        # Resume HA's events only once the listener's snapshot is in the broker: a snapshot
        # taken later would hold newer states than `initial`.
        wait_until(
            lambda: _enqueued(health_port) >= len(initial),
            30,
            0.1,
            message="the listener subscribed and enqueued its snapshot",
        )
        sim.do(sim.sim.resume_events)
        sim.call(sim.sim.wait_done(), timeout=60)
        expected = expected_points(state_events(initial) + recorded_events(record))
        wait_until(
            lambda: len(points_in_influx(influx_db)) >= len(expected),
            60,
            0.2,
            message=f"{len(expected)} points in InfluxDB",
        )
        found = points_in_influx(influx_db)
        assert found.keys() == expected.keys()
        for key, point in expected.items():
            fields = dict(point.fields)
            if "value" in fields:
                assert found[key]["value"] == pytest.approx(fields["value"]), key

        # The events travelled through RabbitMQ, which is now empty; Redis holds only state.
        wait_until(lambda: _queue_depth(amqp_url, queue) == 0, 20, message="RabbitMQ emptied")
        state = redis.Redis.from_url(redis_url)
        assert not state.exists(queue), "the ingest queue must not be in Redis"
        assert state.exists(RedisKeys().for_home(SIM_HOME).listener_state())
        # beat reads the queue depth from RabbitMQ for /health.
        health = wait_until(
            lambda: _pipeline_health(health_port, queue_depth=0), 30, message="/health: depth 0"
        )
        assert health is not None
        assert health["subscription"]["total_events_received"] == EVENTS
    finally:
        codes = {p.name: p.stop() for p in reversed(processes)}
        sim.stop()
    assert codes["listener"] == 0, listener.log_text()[-3000:]
    assert codes["worker"] == 0, processes[0].log_text()[-3000:]


def _health(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
            body: dict[str, Any] = json.load(reply)
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read())
    except OSError:
        return None
    return body


def _enqueued(port: int) -> int:
    return int(((_health(port) or {}).get("listener") or {}).get("events_enqueued") or 0)


def _pipeline_health(port: int, queue_depth: int) -> dict[str, Any] | None:
    body = _health(port) or {}
    return body if (body.get("pipeline") or {}).get("queue_depth") == queue_depth else None


# --- the bulk taker on RabbitMQ: prefetch, one multiple ack per batch ------------------------


def _state_args(seqs: range) -> list[dict[str, Any]]:
    states = [{"entity_id": f"sensor.amqp_{seq % 40}", "state": str(seq), "attributes": {},
               "last_updated": 1_780_000_000 + seq} for seq in seqs]  # fmt: skip
    return [{"event": event, "received_at": time.time(), "source": "live", "seq": seq}
            for seq, event in zip(seqs, state_events(states), strict=True)]  # fmt: skip


def _publish(url: str, redis_url: str, queue: str, args: list[dict[str, Any]]) -> None:
    """As the listener does on amqp: Celery's send_task, zlib-compressed bodies."""
    settings = load_settings(celery_broker_url=url, redis_url=redis_url, celery_queue=queue)
    KombuBatches(create_app(settings), queue).publish(args)


def _depths(vhost_url: str, queue: str) -> tuple[int, int]:
    """(ready, unacknowledged) of the queue, as RabbitMQ counts them."""
    vhost = vhost_url.rsplit("/", 1)[1]
    out = _rabbitmqctl("list_queues", "-q", "-p", vhost, "name", "messages_ready",
                       "messages_unacknowledged")  # fmt: skip
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] == queue:
            return int(parts[1]), int(parts[2])
    return 0, 0


def test_the_bulk_consumer_acks_each_batch_with_one_multiple_ack(
    amqp_url: str, redis_url: str, influx_db: InfluxDatabase
) -> None:
    """2,500 messages in batches of 500: every point written, about 5 acks (not 2,500), and a batch
    the pipeline hands back is requeued, not acknowledged."""
    queue = f"bulk_{uuid.uuid4().hex[:8]}"
    args = _state_args(range(1, 2501))
    _publish(amqp_url, redis_url, queue, args)
    settings = load_settings(celery_broker_url=amqp_url, redis_url=redis_url, celery_queue=queue,
                             influxdb_url=influx_db.url, influxdb_database=influx_db.name,
                             batch_size=500, batch_interval=0.2)  # fmt: skip
    app = create_app(settings)
    context = WorkerContext(
        settings, Destinations.single(settings), send_many=TaskSender(app), hold_limit=30
    )
    taker = make_taker(settings, app, context)  # chosen by the broker kind
    assert isinstance(taker, AmqpTaker)
    taker.start()
    try:
        expected = expected_points([a["event"] for a in args])
        wait_until(lambda: len(points_in_influx(influx_db)) >= len(expected), 60, 0.2,
                   message=f"{len(expected)} points in InfluxDB")  # fmt: skip
        assert points_in_influx(influx_db).keys() == expected.keys()
        wait_until(lambda: _depths(amqp_url, queue) == (0, 0), 20, 0.2,
                   message="RabbitMQ holds nothing, acknowledged or not")  # fmt: skip
        print(f"\nFIGURES amqp bulk: {len(args)} messages, {taker.batches} batches, "
              f"{taker.acks} basic_ack frames")  # fmt: skip
        # Five full batches; under load a batch may close on BATCH_INTERVAL before it is full.
        assert taker.batches == taker.acks
        assert 5 <= taker.acks <= 10, "one multiple ack per batch, not one per message"
    finally:
        taker.stop()
        context.close()


def test_an_undecodable_delivery_is_a_dead_letter_with_its_real_reason(
    amqp_url: str, redis_url: str, influx_db: InfluxDatabase
) -> None:
    """A foreign task and a body that is no JSON, between two good messages: both end as
    `undecodable` dead letters in Redis whose error says what was wrong, the good ones are
    written, every delivery is acknowledged."""
    queue = f"undecodable_{uuid.uuid4().hex[:8]}"
    settings = load_settings(celery_broker_url=amqp_url, redis_url=redis_url, celery_queue=queue,
                             influxdb_url=influx_db.url, influxdb_database=influx_db.name,
                             batch_size=10, batch_interval=0.2)  # fmt: skip
    app = create_app(settings)
    good = _state_args(range(1, 3))
    _publish(amqp_url, redis_url, queue, good[:1])
    target = app.amqp.queues[queue]
    with app.producer_or_acquire() as producer:
        where = {"exchange": target.exchange, "routing_key": target.routing_key,
                 "declare": [target]}  # fmt: skip
        producer.publish([[good[0]], {}, {}], serializer="json",
                         headers={"task": "other.task", "id": "foreign-1"}, **where)  # fmt: skip
        producer.publish(b"not json", content_type="application/json",
                         content_encoding="utf-8", headers={"task": INGEST_TASK, "id": "bad-1"},
                         **where)  # fmt: skip
    _publish(amqp_url, redis_url, queue, good[1:])
    context = WorkerContext(
        settings, Destinations.single(settings), send_many=TaskSender(app), hold_limit=30
    )
    taker = AmqpTaker(settings, target, context)
    taker.start()
    store = DeadLetterStore(redis.Redis.from_url(redis_url), RedisKeys(settings.redis_prefix))
    before = {letter.id for letter in store.list(limit=10_000)}
    try:
        expected = expected_points([a["event"] for a in good])
        wait_until(lambda: len(points_in_influx(influx_db)) >= len(expected), 30, 0.2,
                   message="the good messages written")  # fmt: skip

        def new_letters() -> list[Any] | None:
            found = [x for x in store.list(limit=10_000) if x.id not in before]
            return found if len(found) >= 2 else None

        letters = wait_until(new_letters, 20, 0.2, message="two dead letters")
        assert letters is not None
        wait_until(lambda: _depths(amqp_url, queue) == (0, 0), 20, 0.2,
                   message="every delivery acknowledged")  # fmt: skip
    finally:
        taker.stop()
        context.close()
    assert [x.reason for x in letters] == [UNDECODABLE, UNDECODABLE]
    errors = sorted(x.error for x in letters)
    assert errors[0] == "a 'other.task' task in the ingest queue"
    assert errors[1].startswith("its body is not JSON: "), errors[1]
    assert "not json" in str([x.message for x in letters])


def test_a_sigkilled_amqp_worker_has_its_prefetched_messages_redelivered_at_once(
    amqp_url: str, redis_url: str, influx_db: InfluxDatabase, tmp_path: Path
) -> None:
    """Default settings but BATCH_SIZE: InfluxDB unreachable, so the worker holds a batch and
    prefetches the next; SIGKILL; RabbitMQ has them all ready again, and a new worker writes
    every point."""
    queue = f"kill_{uuid.uuid4().hex[:8]}"
    args = _state_args(range(1, 1501))
    _publish(amqp_url, redis_url, queue, args)
    env = app_env(CELERY_BROKER_URL=amqp_url, CELERY_QUEUE=queue, REDIS_URL=redis_url,
                  INFLUXDB_URL="http://127.0.0.1:9", INFLUXDB_DATABASE=influx_db.name,
                  BATCH_SIZE="300")  # fmt: skip
    worker = AppProcess("worker", worker_argv(), env, tmp_path).start()
    try:
        wait_until(lambda: _depths(amqp_url, queue) == (900, 600), 30, 0.2,
                   message="the worker holding 2 batches of 300 unacknowledged")  # fmt: skip
        os.kill(worker.pid, signal.SIGKILL)
        killed = time.monotonic()
        wait_until(lambda: _depths(amqp_url, queue) == (1500, 0), 30, 0.1,
                   message="every message ready again")  # fmt: skip
        back = time.monotonic() - killed
        print(f"\nFIGURES amqp SIGKILL: 600 unacked messages ready again {back:.1f} s later")
        assert back < 10
    finally:
        worker.stop()
    env["INFLUXDB_URL"] = influx_db.url
    worker = AppProcess("worker", worker_argv("worker2"), env, tmp_path).start()
    try:
        expected = expected_points([a["event"] for a in args])
        wait_until(lambda: len(points_in_influx(influx_db)) >= len(expected), 60, 0.2,
                   message=f"{len(expected)} points in InfluxDB")  # fmt: skip
        assert points_in_influx(influx_db).keys() == expected.keys()
        wait_until(lambda: _depths(amqp_url, queue) == (0, 0), 20, 0.2, message="queue empty")
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]


def test_beat_counts_the_workers_consuming_the_queue(amqp_url: str) -> None:
    """`no_workers` on RabbitMQ comes from the queue's consumer count."""
    from kombu.entity import Queue
    from kombu.messaging import Consumer

    from workers.monitoring.health_job import AmqpQueueProbe

    name = f"alive_{uuid.uuid4().hex[:8]}"
    probe = AmqpQueueProbe(amqp_url, name, [])
    with Connection(amqp_url) as connection:
        queue = Queue(name, channel=connection.default_channel, durable=False)
        queue.declare()
        assert probe.read().workers_alive == 0
        with Consumer(connection.channel(), [queue], accept=["json"]):
            assert probe.read().workers_alive == 1
        assert probe.read().workers_alive == 0
        queue.delete()
