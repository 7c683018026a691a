"""The bulk taker on Redis: N messages per round trip, one finish per batch, a liveness key.

Why (measured). kombu's Redis transport spends about 1.9 ms of a worker's CPU per message on
bookkeeping (one BLMOVE, one MULTI to record it unacknowledged, a new Redis client per ack),
against about 90 µs for the pipeline itself: one worker drained ~500 events/s. This taker takes
up to BATCH_SIZE messages with one Lua script, decodes them (core/task_message.py), runs the
unchanged pipeline and finishes the batch with one more script (workers/consumers/bulk_queue.py).
Only public interfaces: Redis commands and Celery's documented message format.

Two threads:
- the taker: take, write, finish; one batch at a time;
- liveness: renews this consumer's key every quarter of WORKER_LIVENESS_TIMEOUT and sweeps
  silent consumers every half, so a batch held in InfluxDB retries for ten minutes never looks
  dead, and a SIGKILLed worker's batch is back in the queue within that timeout plus half
  (30 s with the defaults).
They have their own Redis connection and reconnect by themselves (core/backoff.py's delays), so
Celery restarting its consumer (a broker reconnect) leaves them running.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

import redis

from config.settings import Settings
from core.backoff import BackoffFactory
from core.task_message import decode_stored
from workers.consumers.bulk_queue import BulkQueue, sweep
from workers.consumers.taker import keep_going, retry_delays
from workers.worker_context import WorkerContext

log = logging.getLogger(__name__)

FULL_POLL_S = 0.2
"""Wait between takes when Redis refuses to block (out of memory)."""
FILL_POLL_S = 0.05
"""How often a batch that is filling up takes what arrived since (at most 1/BATCH_INTERVAL)."""


class RedisTaker:
    """The two threads of one worker process on Redis: taking and writing, and staying alive."""

    def __init__(
        self, settings: Settings, context: WorkerContext, backoff: BackoffFactory = retry_delays
    ) -> None:
        self.settings = settings
        self.context = context
        self.backoff = backoff
        self.consumer_id = uuid.uuid4().hex
        self.client = redis.Redis.from_url(
            settings.celery_broker_url.get_secret_value(),
            socket_timeout=30,
            socket_connect_timeout=5,
            health_check_interval=10,
        )
        self.liveness = settings.worker_liveness_timeout
        self.queue = BulkQueue(self.client, settings.celery_queue, self.consumer_id, self.liveness)
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
            self.liveness,
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
                self.liveness,
            )
        self.client.close()

    # -- the threads ----------------------------------------------------------------------

    def _renew_until_it_works(self) -> None:
        for delay in self.backoff():
            if self.stop_event.is_set():
                return
            try:
                self.queue.renew()
                return
            except redis.RedisError as exc:
                log.warning("bulk consumer: Redis unavailable (%s), retrying", exc)
                self.stop_event.wait(delay)

    def _keep_alive(self) -> None:
        """Renew the liveness key every quarter TTL and sweep every half: nothing here waits on
        a batch, so a worker stuck in InfluxDB retries stays alive."""
        ttl = self.liveness
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
        # After a Redis error the batch stays in the in-flight list; the next take returns it.
        keep_going(
            self._one_batch,
            stop=self.stop_event,
            backoff=self.backoff,
            broker_errors=(redis.RedisError,),
            broker="Redis",
        )

    def _one_batch(self) -> None:
        if self.context.pause_after_hand_back():
            return
        batch = self._gather()
        if not batch:
            return
        outcome = self.context.ingest([decode_stored(raw) for raw in batch])
        self.queue.finish([batch[i] for i in outcome.handed_back])
        self.batches += 1

    def _gather(self) -> list[bytes]:
        """A batch: BATCH_SIZE messages, or what arrived within BATCH_INTERVAL of the first."""
        batch = self.queue.take(self.batch_size)
        if not batch:
            if not self.queue.wait(1.0):
                self.stop_event.wait(FULL_POLL_S if self._full() else 0)
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
