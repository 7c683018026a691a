"""WORKER_BULK_TAKE=false: Celery's stock consumer on kombu's stock transport, and what it costs.

No transport of ours: a worker takes messages through `kombu.transport.redis` (the URL keeps
its scheme in the banner and in Flower), building the app loads no worker code, and the costs
docs/operations.md states are measured here against a real redis-server:
- a killed worker's messages come back only after WORKER_HOLD_TIMEOUT, not before;
- a consumer killed after Redis handed it a message (BRPOP) but before kombu recorded it as
  unacknowledged loses that message. If that test fails, kombu closed the gap upstream: drop
  the warning from the docs and from WORKER_BULK_TAKE's description.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu.connection import Connection
from kombu.entity import Exchange, Queue

from config.celery_app import create_app
from config.settings import load_settings
from core.task_message import INGEST_TASK, TaskWire
from devtools.local_servers import terminate
from tests.expectations import expected_points, points_in_influx, state_events
from tests.helpers import InfluxDatabase, wait_until
from tests.processes import AppProcess, app_env, worker_argv

pytestmark = pytest.mark.integration

STOCK = "kombu.transport.redis:Transport"
QUEUE = "stock_test"

CONSUMER = textwrap.dedent(
    """
    import sys
    from kombu import Connection, Exchange, Queue

    url, out, name = sys.argv[1:4]
    queue = Queue(name, Exchange(name, type="direct"), name)
    with Connection(url, transport_options={"polling_interval": 30}) as conn:
        def on_message(body, message):
            with open(out, "a") as f:
                f.write(str(body["n"]) + "\\n")
            message.ack()
        with conn.Consumer(queue, callbacks=[on_message], accept=["json"]):
            while True:
                conn.drain_events()
    """
)


@pytest.mark.parametrize(
    ("url", "transport_module"),
    [
        ("redis://:pw@127.0.0.1:6379/3", "kombu.transport.redis"),
        ("rediss://:pw@127.0.0.1:6380/3", "kombu.transport.redis"),
        ("amqp://guest:pw@127.0.0.1:5672//", "kombu.transport.pyamqp"),
    ],
)
def test_the_app_takes_every_broker_url_through_kombus_own_transport_and_keeps_its_scheme(
    url: str, transport_module: str
) -> None:
    """The URL reads the same in the worker's banner and in Flower (which picks its
    queue-length API by scheme)."""
    import workers.worker_start  # noqa: F401 - what a worker loads: it installs nothing

    app = create_app(load_settings(celery_broker_url=url, redis_url="redis://127.0.0.1:6379/0"))
    with app.connection_for_read() as conn:
        assert type(conn.transport).__module__ == transport_module
        assert conn.as_uri() == url.replace(":pw@", ":**@")


def test_building_the_app_loads_no_worker_code_and_leaves_kombus_transports() -> None:
    """The listener builds the same app: it must not load worker modules through it. In a
    fresh interpreter; then the worker's modules, which leave kombu's alias table alone too."""
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
        aliases = dict(kombu.transport.TRANSPORT_ALIASES)
        import workers.worker_start, workers.consumers.bulk_consumer
        print(aliases == kombu.transport.TRANSPORT_ALIASES, aliases["redis"])
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines() == ["kombu.transport.redis", "[]", f"True {STOCK}"]


def _arg(seq: int) -> dict[str, Any]:
    state = {"entity_id": f"sensor.stock_{seq}", "state": str(seq), "attributes": {},
             "last_updated": 1_780_000_000 + seq}  # fmt: skip
    return {"event": state_events([state])[0], "received_at": time.time(), "source": "live",
            "seq": seq}  # fmt: skip


def test_a_killed_stock_workers_messages_come_back_only_after_the_visibility_timeout(
    redis_url: str, influx_db: InfluxDatabase, tmp_path: Path
) -> None:
    """Lowered values: visibility timeout 20 s. A worker whose InfluxDB is unreachable holds a
    batch (10 messages) unacknowledged and is SIGKILLed; a second worker writes them, but only
    once the timeout has passed: kombu cannot tell a dead worker from a busy one."""
    timeout = 20.0
    client = redis.Redis.from_url(redis_url)
    wire = TaskWire(INGEST_TASK, "ha_events", origin="gen1@test")
    args = [_arg(seq) for seq in range(10)]
    client.lpush("ha_events", *[wire.encode(arg) for arg in args])
    settings = {"CELERY_BROKER_URL": redis_url, "WORKER_BULK_TAKE": "false",
                "WORKER_HOLD_TIMEOUT": f"{timeout:g}", "BATCH_SIZE": "10",
                "BATCH_INTERVAL": "0.2", "INFLUXDB_TIMEOUT": "1", "WRITE_RETRY_MAX_DELAY": "1",
                "REDIS_SOCKET_TIMEOUT": "0.5", "INFLUXDB_DATABASE": influx_db.name,
                "DATA_DIR": str(tmp_path / "data")}  # fmt: skip
    stuck_env = app_env(**settings, INFLUXDB_URL="http://127.0.0.1:9")
    stuck = AppProcess("worker", worker_argv("stuck"), stuck_env, tmp_path).start()
    second: AppProcess | None = None
    try:
        wait_until(lambda: client.hlen("unacked") == 10 and not client.llen("ha_events"), 30,
                   0.05, message="the worker holding its batch unacknowledged")  # fmt: skip
        stuck.kill()
        killed = time.monotonic()
        env = app_env(**settings, INFLUXDB_URL=influx_db.url)
        second = AppProcess("worker", worker_argv("second"), env, tmp_path).start()
        while time.monotonic() - killed < timeout / 2:  # watching that nothing comes back early
            assert not points_in_influx(influx_db), "written before the visibility timeout"
            time.sleep(0.5)
        expected = expected_points([a["event"] for a in args])
        wait_until(lambda: points_in_influx(influx_db).keys() >= expected.keys(), timeout + 30,
                   0.2, message="every point, once the timeout passed")  # fmt: skip
        back = time.monotonic() - killed
        print(f"\nFIGURES stock consumer, SIGKILL, visibility timeout {timeout:g} s: 10 held "
              f"messages written {back:.1f} s after the kill")  # fmt: skip
        assert back >= timeout - 3, "not before the timeout (less the time held before the kill)"
    finally:
        stuck.stop()
        if second is not None:
            assert second.stop() == 0, second.log_text()[-3000:]


class ConsumerProcess:
    """A bare kombu consumer on the stock transport, in a process of its own."""

    def __init__(self, url: str, tmp_path: Path) -> None:
        self.received = tmp_path / "received.txt"
        with (tmp_path / "consumer.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", CONSUMER, url, str(self.received), QUEUE],
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


def test_kombus_stock_transport_loses_a_message_taken_at_the_kill(
    redis_url: str, client: redis.Redis, tmp_path: Path
) -> None:
    """A consumer blocked on the queue is paused (SIGSTOP), a message is published and handed
    to it by Redis, and it is SIGKILLed before reading it: the message is in no list and no
    unacknowledged record, so no sweep can give it back."""
    consumer = ConsumerProcess(redis_url, tmp_path)
    try:

        def blocked() -> bool:
            clients = client.client_list()
            return any(c.get("cmd") == "brpop" and "b" in c.get("flags", "") for c in clients)

        wait_until(blocked, 15, message="a consumer in BRPOP")
        os.kill(consumer.proc.pid, signal.SIGSTOP)
        queue = Queue(QUEUE, Exchange(QUEUE, type="direct"), QUEUE)
        with Connection(redis_url) as conn, conn.Producer() as producer:
            producer.publish({"n": 1}, exchange=queue.exchange, routing_key=QUEUE,
                             declare=[queue], serializer="json")  # fmt: skip
        wait_until(lambda: client.llen(QUEUE) == 0, 5, message="Redis handing it the message")
        consumer.proc.kill()
        consumer.proc.wait(5)
    finally:
        consumer.stop()
    assert consumer.numbers() == []
    assert client.hlen("unacked") == 0
    with Connection(redis_url) as conn:
        conn.default_channel.qos.restore_visible(num=100, interval=1)
    assert client.llen(QUEUE) == 0, "nothing left to give back"
