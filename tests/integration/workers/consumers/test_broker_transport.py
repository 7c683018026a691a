"""The broker transport against a real redis-server: a message a consumer took is never only in
that consumer (workers/consumers/broker_transport.py).

A consumer process blocks on its queue with a long server-side timeout, is paused (SIGSTOP),
a message is published and taken by the server for it, and the consumer is SIGKILLed before it
ever reads it: the window in which kombu's stock transport loses a message.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu.connection import Connection
from kombu.entity import Exchange, Queue
from kombu.message import Message

from config.celery_app import create_app
from config.redis_keys import broker_alive, broker_consumers, broker_inflight
from config.settings import load_settings
from devtools.local_servers import terminate
from tests.helpers import wait_until
from workers.consumers.broker_transport import Channel, install, takes_reliably

pytestmark = pytest.mark.integration

OURS = "workers.consumers.broker_transport:Transport"
STOCK = "kombu.transport.redis:Transport"
QUEUE = "transport_test"
TTL_S = 2  # the visibility timeout, hence the liveness key's TTL

CONSUMER = textwrap.dedent(
    """
    import sys
    from kombu import Connection, Exchange, Queue

    url, transport, out, name, ttl = sys.argv[1:6]
    options = {"polling_interval": 30, "visibility_timeout": int(ttl)}
    queue = Queue(name, Exchange(name, type="direct"), name)
    with Connection(url, transport=transport, transport_options=options) as conn:
        def on_message(body, message):
            with open(out, "a") as f:
                f.write(str(body["n"]) + "\\n")
            message.ack()
        with conn.Consumer(queue, callbacks=[on_message], accept=["json"]):
            while True:
                conn.drain_events()
    """
)


def connection(url: str, transport: str = OURS) -> Connection:
    return Connection(url, transport=transport, transport_options={"visibility_timeout": TTL_S})


def publish(url: str, *numbers: int) -> None:
    queue = Queue(QUEUE, Exchange(QUEUE, type="direct"), QUEUE)
    with connection(url) as conn, conn.Producer() as producer:
        for n in numbers:
            producer.publish({"n": n}, exchange=queue.exchange, routing_key=QUEUE,
                             declare=[queue], serializer="json")  # fmt: skip


def collect(into: list[Any]) -> Any:
    """A consumer callback that keeps each body and acknowledges its message."""

    def on_message(body: Any, message: Message) -> None:
        into.append(body)
        message.ack()

    return on_message


def blocked_on_queue(client: redis.Redis, command: str) -> bool:
    """Some client is blocked in `command` (BLMOVE for ours, BRPOP for kombu's)."""
    return any(c.get("cmd") == command and "b" in c.get("flags", "") for c in client.client_list())


class ConsumerProcess:
    def __init__(self, url: str, transport: str, tmp_path: Path, name: str = "first") -> None:
        self.received = tmp_path / f"received-{name}.txt"
        with (tmp_path / f"consumer-{name}.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", CONSUMER, url, transport, str(self.received), QUEUE,
                 str(TTL_S)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def numbers(self) -> list[int]:
        if not self.received.exists():
            return []
        return [int(line) for line in self.received.read_text().split()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            terminate(self.proc, 5)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url, decode_responses=True)
    yield c
    c.close()


@pytest.fixture
def consumers(redis_url: str, tmp_path: Path) -> Iterator[list[ConsumerProcess]]:
    started: list[ConsumerProcess] = []
    yield started
    for consumer in started:
        consumer.stop()


def kill_while_taking(
    url: str, transport: str, tmp_path: Path, client: redis.Redis, started: list[ConsumerProcess]
) -> None:
    """Publish one message for a paused consumer blocked on the queue, then SIGKILL it."""
    consumer = ConsumerProcess(url, transport, tmp_path)
    started.append(consumer)
    command = "blmove" if transport == OURS else "brpop"
    wait_until(lambda: blocked_on_queue(client, command), 15, message=f"a consumer in {command}")
    os.kill(consumer.proc.pid, signal.SIGSTOP)
    publish(url, 1)
    wait_until(lambda: client.llen(QUEUE) == 0, 5, message="the server handing it the message")
    consumer.proc.kill()
    consumer.proc.wait(5)
    assert consumer.numbers() == []


def test_a_consumer_killed_before_it_read_a_message_it_took_loses_nothing(
    redis_url: str, client: redis.Redis, tmp_path: Path, consumers: list[ConsumerProcess]
) -> None:
    kill_while_taking(redis_url, OURS, tmp_path, client, consumers)
    [(consumer_id, queue_key)] = client.hgetall(broker_consumers()).items()
    consumer_id, queue_key = str(consumer_id), str(queue_key)  # decoded by the client
    assert queue_key == QUEUE
    inflight = broker_inflight(consumer_id)
    assert client.llen(inflight) == 1, "the message waits in the killed consumer's list"

    with connection(redis_url) as conn:
        sweeper: Channel = conn.default_channel
        assert sweeper.restore_orphans() == 0, "not while its liveness key lives"
        wait_until(lambda: not client.exists(broker_alive(consumer_id)), TTL_S + 3,
                   message="the killed consumer's liveness key expiring")  # fmt: skip
        assert sweeper.restore_orphans() == 1
        assert sweeper.restore_orphans() == 0, "given back once"
    assert client.llen(inflight) == 0
    assert client.hlen(broker_consumers()) == 0, "the dead consumer is forgotten"

    survivor = ConsumerProcess(redis_url, OURS, tmp_path, "survivor")
    consumers.append(survivor)
    assert wait_until(survivor.numbers, 15, message="the message delivered again") == [1]


def test_kombus_stock_transport_loses_that_message(
    redis_url: str, client: redis.Redis, tmp_path: Path, consumers: list[ConsumerProcess]
) -> None:
    """The baseline that makes the transport necessary. If this fails, kombu fixed it
    upstream (celery/kombu#305) and workers/consumers/broker_transport.py can go."""
    kill_while_taking(redis_url, STOCK, tmp_path, client, consumers)
    assert client.llen(QUEUE) == 0
    assert client.hlen("unacked") == 0
    with connection(redis_url, STOCK) as conn:
        conn.default_channel.qos.restore_visible(num=100, interval=1)
    assert client.llen(QUEUE) == 0, "nothing left to give back"


def test_messages_pass_through_without_residue_and_a_closed_consumer_is_forgotten(
    redis_url: str, client: redis.Redis, tmp_path: Path, consumers: list[ConsumerProcess]
) -> None:
    consumer = ConsumerProcess(redis_url, OURS, tmp_path)
    consumers.append(consumer)
    publish(redis_url, *range(200))
    wait_until(lambda: len(consumer.numbers()) == 200, 30, message="200 messages consumed")
    assert sorted(consumer.numbers()) == list(range(200))
    wait_until(lambda: client.hlen("unacked") == 0, 5, message="every message acknowledged")
    [consumer_id] = map(str, client.hkeys(broker_consumers()))
    assert client.llen(broker_inflight(consumer_id)) == 0
    assert client.exists(broker_alive(consumer_id))

    consumer.stop()  # a bare drain loop dies on SIGTERM without closing: the sweep's case

    with connection(redis_url) as conn:
        queue = Queue(QUEUE, Exchange(QUEUE, type="direct"), QUEUE)
        got: list[Any] = []
        with conn.Consumer(queue, callbacks=[collect(got)]):
            publish(redis_url, 7)
            conn.drain_events(timeout=5)
        channel: Channel = conn.default_channel
        own = channel.consumer_id
        assert client.hget(broker_consumers(), own) == QUEUE
    assert got == [{"n": 7}]
    assert client.hget(broker_consumers(), own) is None, "close() forgot the consumer"
    assert not client.exists(broker_alive(own))


def test_a_channel_consuming_two_queues_falls_back_to_brpop_and_says_so(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    other = Queue("transport_test_other", Exchange("transport_test_other", type="direct"),
                  "transport_test_other")  # fmt: skip
    queue = Queue(QUEUE, Exchange(QUEUE, type="direct"), QUEUE)
    got: list[Any] = []
    with (
        caplog.at_level(logging.WARNING, logger="workers.consumers.broker_transport"),
        connection(redis_url) as conn,
        conn.Consumer([queue, other], callbacks=[collect(got)]),
    ):
        publish(redis_url, 3)
        conn.drain_events(timeout=5)
    assert got == [{"n": 3}]
    assert "taking messages with BRPOP because this consumer takes from 2 queues" in caplog.text
    assert "Consume one queue per worker" in caplog.text


@pytest.mark.parametrize(
    ("url", "transport_module"),
    [
        ("redis://:pw@127.0.0.1:6379/3", "workers.consumers.broker_transport"),
        ("rediss://:pw@127.0.0.1:6380/3", "workers.consumers.broker_transport"),
        ("amqp://guest:pw@127.0.0.1:5672//", "kombu.transport.pyamqp"),
    ],
)
def test_a_started_worker_takes_redis_urls_through_our_transport_and_keeps_their_scheme(
    url: str, transport_module: str
) -> None:
    """Installed at worker start (workers/worker_start.py) under kombu's scheme names, so the
    URL reads the same in the worker's banner and in Flower (which picks its queue-length API
    by scheme)."""
    app = create_app(load_settings(celery_broker_url=url, redis_url="redis://127.0.0.1:6379/0"))
    install()  # what the worker's start-up does first
    with app.connection_for_read() as conn:
        assert type(conn.transport).__module__ == transport_module
        assert conn.as_uri() == url.replace(":pw@", ":**@")


def test_building_the_app_loads_no_worker_code_and_leaves_kombus_transport() -> None:
    """The listener builds the same app: it must not load the workers' transport (or any
    worker module) through it. In a fresh interpreter, since install() is process-wide."""
    probe = textwrap.dedent(
        """
        import sys
        import kombu.transport
        from config.celery_app import create_app
        from config.settings import load_settings

        app = create_app(load_settings(celery_broker_url="redis://127.0.0.1:6379/0"))
        with app.connection_for_write() as conn:
            print(type(conn.transport).__module__)
        print(sorted(m for m in sys.modules if m.split(".")[0] == "workers"))
        print(kombu.transport.TRANSPORT_ALIASES["redis"])
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines() == [
        "kombu.transport.redis",
        "[]",
        "kombu.transport.redis:Transport",
    ]


@pytest.mark.parametrize(
    ("version", "reliable"),
    [("7.0.15", True), ("6.2.0", True), ("6.0.16", False), ("5.0.7", False), ("10.0", True)],
)
def test_blmove_needs_redis_6_2(version: str, reliable: bool) -> None:
    assert takes_reliably(version) is reliable


def test_a_no_ack_consumer_takes_the_stock_way_and_registers_nothing(
    redis_url: str, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """Replies to `celery inspect` (Flower polls them) are consumed without acknowledgement:
    at-most-once by choice, so no in-flight list, no liveness key, no warning."""
    queue = Queue(QUEUE, Exchange(QUEUE, type="direct"), QUEUE)
    got: list[Any] = []
    with (
        caplog.at_level(logging.WARNING, logger="workers.consumers.broker_transport"),
        connection(redis_url) as conn,
        conn.Consumer(queue, callbacks=[lambda body, _: got.append(body)], no_ack=True),
    ):
        publish(redis_url, 5)
        conn.drain_events(timeout=5)
        assert client.hlen(broker_consumers()) == 0
    assert got == [{"n": 5}]
    assert client.hlen("unacked") == 0
    assert caplog.text == ""
