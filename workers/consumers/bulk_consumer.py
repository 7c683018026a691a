"""The workers' bulk consumer: takes the ingest queue from Redis N messages per round trip.

Why (issue 12, measured). kombu's Redis transport spends about 1.9 ms of a worker's CPU per
message on bookkeeping (one BLMOVE, one MULTI to record it unacknowledged, a new Redis client
per ack), against about 90 µs for the pipeline itself: one worker drained ~500 events/s. This
Celery consumer bootstep takes up to BATCH_SIZE messages with one Lua script, decodes Celery's
documented task protocol 2 (core/task_message.py), runs the unchanged pipeline and finishes the
batch with one more script (workers/consumers/bulk_queue.py). Only public interfaces: Redis
commands, Celery's message format, a bootstep, and kombu's `Consumer.cancel_by_queue`.

How it fits in Celery. The worker stays a Celery worker (remote control, Flower, events), and a
stock worker with the task registered still consumes the same messages
(workers/consumers/ingest_task.py). On a Redis broker the step takes the ingest queue out of
Celery's task consumer and runs
- a taker thread: take, write, finish; one batch at a time;
- a liveness thread: renews this consumer's key every quarter of WORKER_LIVENESS_TIMEOUT and
  sweeps silent consumers every half, so a batch held in InfluxDB retries for ten minutes never
  looks dead, and a SIGKILLed worker's batch is back in the queue within that timeout plus half
  (30 s with the defaults).
Celery restarting its consumer (a broker reconnect) leaves both threads running: they have
their own Redis connection and reconnect by themselves. On RabbitMQ the step runs
workers/consumers/amqp_bulk.py instead: a prefetch window and one multiple ack per batch. With
WORKER_BULK_TAKE=false the step does nothing: Celery's consumer and celery-batches take the
queue, one ack per message.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

import redis
from celery import bootsteps
from celery.signals import worker_shutting_down

from config.broker_kind import BrokerKind
from config.celery_app import app_settings
from config.settings import Settings
from core.task_message import INGEST_TASK, InvalidMessage, decode_stored
from workers import worker_context
from workers.consumers import batch_events
from workers.consumers.amqp_bulk import AmqpTaker, uses_amqp_bulk_take
from workers.consumers.bulk_queue import BulkQueue, sweep

log = logging.getLogger(__name__)

TASKS_STEP = "celery.worker.consumer.tasks:Tasks"
POLL_S = 0.2
"""Wait between takes when Redis refuses to block (out of memory) or after an error."""
RETRY_CAP_S = 5.0
FILL_POLL_S = 0.05
"""How often a batch that is filling up takes what arrived since (at most 1/BATCH_INTERVAL)."""


def on_redis(settings: Settings) -> bool:
    """Whether the broker is Redis."""
    return settings.broker_kind is BrokerKind.REDIS


def uses_bulk_take(settings: Settings) -> bool:
    """Whether the worker takes the ingest queue itself: Redis broker and WORKER_BULK_TAKE."""
    return settings.worker_bulk_take and on_redis(settings)


def decode_all(raws: list[bytes]) -> list[Any]:
    """Task arguments for the pipeline; what is not an ingest task becomes a text the pipeline
    dead-letters (with what is wrong), never an exception."""
    out: list[Any] = []
    for raw in raws:
        try:
            stored = decode_stored(raw)
        except InvalidMessage as exc:
            out.append(f"{exc}: {raw[:300]!r}")
            continue
        if stored.task != INGEST_TASK:
            out.append(f"a {stored.task!r} task in the ingest queue: {raw[:300]!r}")
            continue
        out.append(stored.arg)
    return out


class BulkTaker:
    """The two threads of one worker process: taking and writing, and staying alive."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.consumer_id = uuid.uuid4().hex
        self.client = redis.Redis.from_url(
            settings.celery_broker_url.get_secret_value(),
            socket_timeout=30,
            socket_connect_timeout=5,
            health_check_interval=10,
        )
        self.queue = BulkQueue(
            self.client,
            settings.celery_queue,
            self.consumer_id,
            settings.worker_liveness_timeout,
        )
        self.batch_size = settings.batch_size
        self.batch_interval = settings.batch_interval
        self.stop_event = threading.Event()
        self._threads: list[threading.Thread] = []
        self.batches = 0

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._renew_until_it_works()
        self._threads = [
            threading.Thread(target=self._keep_alive, name="ha-ingestor-liveness", daemon=True),
            threading.Thread(target=self._take_loop, name="ha-ingestor-taker", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        log.info(
            "bulk consumer %s takes %s from Redis, up to %d messages per round trip "
            "(liveness %g s)",
            self.consumer_id,
            self.settings.celery_queue,
            self.batch_size,
            self.settings.worker_liveness_timeout,
        )

    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def stop(self, timeout: float = 60.0) -> None:
        """Finish (or hand back) the batch being written, then give back anything in flight."""
        self.stop_event.set()
        taker = self._threads[1] if len(self._threads) > 1 else None
        if taker is not None:
            taker.join(timeout)
        try:
            given = self.queue.retire()
            if given > 0:
                log.warning("bulk consumer: %d unfinished messages back in the queue", given)
        except redis.RedisError as exc:
            log.warning(
                "bulk consumer: could not retire from Redis (%s); a sweep gives back what it "
                "held within %g s",
                type(exc).__name__,
                self.settings.worker_liveness_timeout,
            )
        self.client.close()

    # -- the threads ----------------------------------------------------------------------

    def _renew_until_it_works(self) -> None:
        delay = POLL_S
        while not self.stop_event.is_set():
            try:
                self.queue.renew()
                return
            except redis.RedisError as exc:
                log.warning("bulk consumer: Redis unavailable (%s), retrying", exc)
                self.stop_event.wait(delay)
                delay = min(RETRY_CAP_S, delay * 2)

    def _keep_alive(self) -> None:
        """Renew the liveness key every quarter TTL and sweep every half: nothing here waits on
        a batch, so a worker stuck in InfluxDB retries stays alive."""
        ttl = self.settings.worker_liveness_timeout
        next_sweep = time.monotonic() + ttl / 2
        failing = False
        while not self.stop_event.wait(ttl / 4):
            try:
                self.queue.renew()
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + ttl / 2
                    for consumer, n in sweep(self.client, skip=self.consumer_id).items():
                        log.warning(
                            "bulk consumer: %d messages taken by worker %s, which stopped "
                            "responding, are back in the queue",
                            n,
                            consumer,
                        )
                failing = False
            except redis.RedisError as exc:
                if not failing:
                    log.warning("bulk consumer: cannot renew liveness yet (%s)", exc)
                failing = True

    def _take_loop(self) -> None:
        delay = POLL_S
        while not self.stop_event.is_set():
            try:
                self._one_batch()
                delay = POLL_S
            except redis.RedisError as exc:
                # The batch stays in the in-flight list; the next take returns it again.
                log.warning(
                    "bulk consumer: Redis unavailable (%s: %s), retrying in %.1f s",
                    type(exc).__name__,
                    exc,
                    delay,
                )
                self.stop_event.wait(delay)
                delay = min(RETRY_CAP_S, delay * 2)
            except Exception:
                log.exception("bulk consumer: unexpected error; retrying the batch in 1 s")
                self.stop_event.wait(1.0)

    def _one_batch(self) -> None:
        context = worker_context.current()
        if context.pause_after_hand_back():
            return
        batch = self._gather()
        if not batch:
            return
        outcome = context.ingest(decode_all(batch))
        self.queue.finish([batch[i] for i in outcome.handed_back])
        self.batches += 1

    def _gather(self) -> list[bytes]:
        """A batch: BATCH_SIZE messages, or what arrived within BATCH_INTERVAL of the first."""
        batch = self.queue.take(self.batch_size)
        if not batch:
            if not self.queue.wait(1.0):
                self.stop_event.wait(POLL_S if self._full() else 0)
                return []
            batch = self.queue.take(self.batch_size)
        deadline = time.monotonic() + self.batch_interval
        while len(batch) < self.batch_size and not self.stop_event.is_set():
            left = deadline - time.monotonic()
            if left <= 0.005:
                break
            # Filling: look again every FILL_POLL_S rather than wake on every message (a
            # BLMOVE and a take per arrival cost 60 µs of worker and Redis CPU per event at a
            # live 2,000 events/s); the batch waits BATCH_INTERVAL for its first message anyway.
            self.stop_event.wait(min(left, FILL_POLL_S))
            batch += self.queue.take(self.batch_size, have=len(batch))
        return batch

    def _full(self) -> bool:
        """Whether Redis is at maxmemory (BLMOVE refused): poll instead of blocking."""
        try:
            info = self.client.info("memory")
        except redis.RedisError:
            return True
        limit = int(info.get("maxmemory", 0))
        return bool(limit) and int(info.get("used_memory", 0)) >= limit


_taker: BulkTaker | AmqpTaker | None = None


class BulkConsumer(bootsteps.StartStopStep):  # type: ignore[misc]
    """Celery consumer step: on a Redis broker, the ingest queue is taken in bulk here."""

    name = "ha_ingestor.bulk_consumer"
    requires = (TASKS_STEP,)

    def start(self, c: Any) -> None:
        global _taker
        batch_events.attach(c)  # every path's batches become tasks in Flower
        settings = app_settings(c.app)
        on_amqp = uses_amqp_bulk_take(settings)
        if not (on_amqp or uses_bulk_take(settings)):
            return
        # Celery's consumer must not take the queue too; everything else of it stays.
        c.task_consumer.cancel_by_queue(settings.celery_queue)
        if _taker is None or not _taker.running():
            if on_amqp:
                _taker = AmqpTaker(settings, c.app.amqp.queues[settings.celery_queue])
            else:
                _taker = BulkTaker(settings)
            _taker.start()
            worker_shutting_down.connect(_on_shutting_down, weak=False, dispatch_uid=__name__)

    def stop(self, c: Any) -> None:
        """Celery restarts its consumer on a broker reconnect: the taker keeps going then; it
        stops with the worker."""
        if _taker is not None and _taker.stop_event.is_set():
            _stop_taker()

    def shutdown(self, c: Any) -> None:
        _stop_taker()


def _on_shutting_down(**_: Any) -> None:
    if _taker is not None:
        _taker.stop_event.set()


def _stop_taker() -> None:
    global _taker
    taker, _taker = _taker, None
    if taker is not None:
        taker.stop()
