"""The bulk taker on RabbitMQ: prefetch a window, write a batch, acknowledge it with ONE ack.

Why. On amqp, Celery's consumer with celery-batches acknowledges every message with
its own `basic_ack` frame (celery_batches calls `request.acknowledge()` per request): 1,000
frames, and 1,000 trips through kombu and py-amqp, per batch. Here the worker consumes the
ingest queue on a connection and channel of its own with a prefetch of PREFETCH_BATCHES
batches, gathers BATCH_SIZE messages (or what came within BATCH_INTERVAL of the first), runs
the unchanged pipeline, rejects with requeue what the pipeline hands back, and acknowledges
everything else with one `basic_ack(multiple=True)` of the batch's last delivery tag (kombu's
public `Message.ack(multiple=True)`).

Why one multiple ack is exact. This channel carries only the ingest queue and one thread
takes from it, in delivery order: every delivery tag up to the batch's last was delivered
before it, so it is in this batch (done or rejected just before) or in an earlier one (already
settled). Later messages (the next batch, prefetched) have higher tags and stay unacked.

Same guarantees as the Redis path, by RabbitMQ itself: what a worker took and did not
acknowledge is redelivered when its connection closes: at once for a SIGKILLed process (the
kernel closes its socket), after two missed heartbeats for a vanished host. The heartbeat is
serviced by a thread of its own while a batch waits on InfluxDB, so a worker stuck in retries
is not taken for dead. A broker reconnect drops the prefetched messages (RabbitMQ requeues
them) and starts again; nothing is stranded.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

from kombu.connection import Connection
from kombu.entity import Queue
from kombu.message import Message
from kombu.messaging import Consumer

from config.celery_app import PREFETCH_BATCHES
from config.settings import Settings
from core.backoff import BackoffFactory
from core.task_message import TaskArgument, Undecodable, decode_task
from workers.consumers.taker import keep_going, retry_delays
from workers.worker_context import WorkerContext

log = logging.getLogger(__name__)

HEARTBEAT_S = 60.0
"""AMQP heartbeat of the bulk connection: a vanished worker host is noticed within twice this."""
POLL_S = 1.0
"""Longest single wait for deliveries: how soon the taker notices a stop."""


def task_arg(message: Message) -> TaskArgument | Undecodable:
    """The ingest task's argument of a delivery (core/task_message.py decode_task, the one
    decoder of every way in), or Undecodable with the reason.

    kombu's Message uncompressed the body on arrival (its `compression` header) unless that
    failed (`errors`): then the decoder gets the body as it came, and says why it cannot."""
    headers = message.headers or {}
    body = message.body if message.body is not None else b""
    return decode_task(
        headers.get("task"),
        body,
        compression=headers.get("compression") if message.errors else None,
        content_type=message.content_type,
    )


class AmqpTaker:
    """The two threads of one worker process on RabbitMQ: taking and writing, and heartbeats."""

    def __init__(
        self,
        settings: Settings,
        queue: Queue,
        context: WorkerContext,
        backoff: BackoffFactory = retry_delays,
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.context = context
        self.backoff = backoff
        self.url = settings.celery_broker_url.get_secret_value()
        self.batch_size = settings.batch_size
        self.batch_interval = settings.batch_interval
        self.prefetch = PREFETCH_BATCHES * settings.batch_size
        self.stop_event = threading.Event()
        self.batches = 0
        self.acks = 0
        """basic_ack frames sent (one per batch written): what the tests count."""
        self._lock = threading.Lock()
        self._connection: Connection | None = None
        self._pending: list[Message] = []
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._threads = [
            threading.Thread(target=self._heartbeats, name="ha-ingestor-heartbeat", daemon=True),
            threading.Thread(target=self._take_loop, name="ha-ingestor-taker", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        log.info(
            "bulk consumer takes %s from RabbitMQ: prefetch %d, one ack per batch of up to %d",
            self.queue.name,
            self.prefetch,
            self.batch_size,
        )

    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def stop(self, timeout: float = 60.0) -> None:
        """Finish (or hand back) the batch being written; closing the connection gives the
        prefetched rest back to RabbitMQ."""
        self.stop_event.set()
        for thread in reversed(self._threads):
            thread.join(timeout)

    # -- the threads ----------------------------------------------------------------------

    def _heartbeats(self) -> None:
        """Keep the connection alive while the taker waits on InfluxDB (it holds no lock then).

        Only sends (py-amqp's public `send_heartbeat`): judging the server's heartbeats needs
        the socket read, which is the taker's job (`heartbeat_check` after each drain)."""
        while not self.stop_event.wait(HEARTBEAT_S / 4):
            connection = self._connection
            if connection is None or not self._lock.acquire(timeout=POLL_S * 2):
                continue
            try:
                connection.connection.send_heartbeat()
            except Exception as exc:  # noqa: BLE001 - the taker reconnects; say why once here
                log.warning("bulk consumer: RabbitMQ heartbeat failed (%s)", exc)
            finally:
                self._lock.release()

    def _take_loop(self) -> None:
        # Unacked messages are RabbitMQ's again once the connection is gone.
        keep_going(
            self._connect_and_consume,
            stop=self.stop_event,
            backoff=self.backoff,
            broker_errors=(Exception,),  # connection errors of kombu, py-amqp and the socket
            broker="RabbitMQ",
        )

    def _connect_and_consume(self) -> None:
        try:
            with Connection(self.url, heartbeat=HEARTBEAT_S) as connection:
                self._consume(connection)
        finally:
            self._connection = None
            self._pending = []

    def _consume(self, connection: Connection) -> None:
        connection.ensure_connection(max_retries=1)
        channel = connection.channel()
        channel.basic_qos(0, self.prefetch, False)
        consumer = Consumer(
            channel,
            queues=[self.queue],
            on_message=self._pending.append,
            accept=["json"],
            no_ack=False,
        )
        with consumer:
            self._connection = connection
            while not self.stop_event.is_set():
                if self._pause_after_hand_back(connection):
                    return
                batch = self._gather(connection)
                if batch:
                    self._write(batch)

    def _gather(self, connection: Connection) -> list[Message]:
        pending = self._pending
        deadline: float | None = time.monotonic() + self.batch_interval if pending else None
        while len(pending) < self.batch_size and not self.stop_event.is_set():
            wait = POLL_S if deadline is None else min(POLL_S, deadline - time.monotonic())
            if wait <= 0.005:
                break
            with self._lock:
                with contextlib.suppress(TimeoutError):  # nothing came: check the deadline
                    connection.drain_events(timeout=wait)
                connection.heartbeat_check()  # after reading: what was read counts as alive
            if pending and deadline is None:
                deadline = time.monotonic() + self.batch_interval
        batch = pending[: self.batch_size]
        del pending[: self.batch_size]
        return batch

    def _pause_after_hand_back(self, connection: Connection) -> bool:
        """After a hand-back, wait before taking again, keeping the connection's heartbeats
        (workers/hand_back.py); True when stopping. Prefetched messages wait unacked."""
        end = time.monotonic() + self.context.pacer.delay()
        while (left := end - time.monotonic()) > 0:
            if self.stop_event.wait(min(left, HEARTBEAT_S / 4)):
                return True
            with self._lock:
                connection.heartbeat_check()
        return self.stop_event.is_set()

    def _write(self, batch: list[Message]) -> None:
        outcome = self.context.ingest([task_arg(m) for m in batch])
        back = set(outcome.handed_back)
        with self._lock:
            for i in sorted(back):
                batch[i].reject(requeue=True)
            done = [m for i, m in enumerate(batch) if i not in back]
            if done:
                done[-1].ack(multiple=True)
                self.acks += 1
        self.batches += 1
