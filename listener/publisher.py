"""Publishing task messages to the broker from one thread, never from the event loop.

The reader hands messages over through a bounded in-memory queue. This thread publishes them in
pipelined batches. When the broker is down, or publishing falls behind (the queue passes its
high-water mark), messages go to the durable spool instead, and from then on everything goes
through the spool until it is drained, so the order of events is kept.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from celery import Celery

from config.backoff import BackoffFactory, exponential_backoff
from config.messages import INGEST_TASK
from listener.spool import Spool, SpoolFull
from listener.stats import ListenerStats

log = logging.getLogger(__name__)

Message = dict[str, Any]
PublishBatch = Callable[[list[Message]], None]


def celery_publisher(app: Celery, queue_name: str) -> PublishBatch:
    """Publish a batch as ordinary Celery task messages, pipelined in one round trip on Redis."""

    def publish(messages: list[Message]) -> None:
        with app.producer_or_acquire() as producer, producer.batch(max_size=len(messages)):
            for message in messages:
                app.send_task(
                    INGEST_TASK, args=[message], queue=queue_name, producer=producer, retry=False
                )

    return publish


class Publisher:
    """Moves messages from memory to the broker, through the spool when needed."""

    def __init__(
        self,
        publish: PublishBatch,
        spool: Spool,
        stats: ListenerStats,
        *,
        capacity: int = 20_000,
        batch_size: int = 500,
        backoff: BackoffFactory = lambda: exponential_backoff(initial=0.2, cap=10.0),
    ) -> None:
        self._publish = publish
        self._spool = spool
        self._stats = stats
        self._queue: queue.Queue[Message] = queue.Queue(maxsize=capacity)
        self._high_water = capacity // 2
        self._batch_size = batch_size
        self._backoff = backoff
        self._delays: Iterator[float] | None = None
        self._retry_at = 0.0
        self._stop = threading.Event()
        self._spool_full_logged_at = 0.0
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
        stats.spool_depth = spool.depth

    # --- called from the event loop ---------------------------------------------------------

    def submit(self, message: Message) -> bool:
        """Hand a message over without blocking; False when memory is full (caller waits)."""
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            return False
        return True

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._spool.depth:
            log.info("spool holds %d events from before; draining them first", self._spool.depth)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Publish or spool everything in memory, then stop the thread."""
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("publisher did not finish within %.0f s", timeout)
        leftover = self._drain_memory(limit=None)
        if leftover:
            self._to_spool(leftover)

    # --- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            stopping = self._stop.is_set()
            if self._spool.depth or self._queue.qsize() > self._high_water:
                done = self._spool_mode_step(stopping)
            else:
                done = self._direct_step(stopping)
            self._stats.memory_queue_depth = self._queue.qsize()
            self._stats.spool_depth = self._spool.depth
            if done:
                return

    def _direct_step(self, stopping: bool) -> bool:
        batch = self._drain_memory(limit=self._batch_size, wait=0.0 if stopping else 0.1)
        if not batch:
            return stopping
        if not self._try_publish(batch):
            self._to_spool(batch)
        else:
            self._stats.events_enqueued += len(batch)
        return False

    def _spool_mode_step(self, stopping: bool) -> bool:
        """Keep order: memory goes to the spool's end, the broker is fed from its head."""
        moved = self._drain_memory(limit=5_000)
        if moved:
            self._to_spool(moved)
        if time.monotonic() < self._retry_at:
            if stopping:
                return True
            self._stop.wait(min(0.1, self._retry_at - time.monotonic()))
            return False
        rows = self._spool.peek(self._batch_size)
        if not rows:
            return False
        if self._try_publish([json.loads(body) for _, body in rows]):
            self._spool.remove_through(rows[-1][0])
            self._stats.events_drained += len(rows)
            self._stats.events_enqueued += len(rows)
            if not self._spool.depth:
                log.info("spool drained: every event is in the broker")
        elif stopping:
            return True
        return False

    def _try_publish(self, batch: list[Message]) -> bool:
        try:
            self._publish(batch)
        except Exception as exc:  # noqa: BLE001 - any publish failure means: keep it on disk
            self._stats.publish_errors += 1
            delays = self._delays = self._delays or self._backoff()
            delay = next(delays)
            self._retry_at = time.monotonic() + delay
            if self._stats.broker_up:
                log.warning(
                    "broker unreachable (%s): events go to the spool at %s until it is back",
                    type(exc).__name__,
                    self._spool.path,
                )
            self._stats.broker_up = False
            return False
        if not self._stats.broker_up:
            log.info("broker reachable again")
        self._stats.broker_up = True
        self._delays = None
        return True

    def _to_spool(self, batch: list[Message]) -> None:
        bodies = [json.dumps(m, ensure_ascii=False) for m in batch]
        while True:
            try:
                self._spool.append(bodies)
            except SpoolFull as exc:
                now = time.monotonic()
                if now - self._spool_full_logged_at > 30:
                    log.error("%s — reading from HA pauses until there is room", exc)  # noqa: TRY400
                    self._spool_full_logged_at = now
                # Retry publishing the head so the spool can shrink; never drop the batch.
                if self._try_publish(batch):
                    self._stats.events_enqueued += len(batch)
                    return
                if self._stop.wait(1.0) and self._thread is not threading.current_thread():
                    log.critical("stopping with %d events that fit nowhere", len(batch))
                    return
                continue
            self._stats.events_spooled += len(batch)
            return

    def _drain_memory(self, limit: int | None, wait: float = 0.0) -> list[Message]:
        batch: list[Message] = []
        try:
            if wait:
                batch.append(self._queue.get(timeout=wait))
            while limit is None or len(batch) < limit:
                batch.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        return batch
