"""Publishing task messages to the broker from one thread, never from the event loop.

The reader hands messages over through a bounded in-memory queue. This thread publishes them in
pipelined batches. When the broker is down, or publishing falls behind (the queue passes its
high-water mark), messages go to the durable spool instead, and from then on everything goes
through the spool until it is drained, so the order of events is kept.

Each message is prepared once, on the event loop, when it is submitted: on a Redis broker its
task body is rendered by core.task_message (a few µs), so memory holds bytes rather than event
dicts; this thread compresses each into the message `send_task` would store (zlib, ~17 µs:
off the loop, as zlib releases the GIL per call) and pushes whole batches with one LPUSH.
The spool keeps those very bytes and its drain pushes them unchanged (WireBatches). Other
brokers (RabbitMQ) publish through kombu's pipelined batches, and their spool rows are the §3.1
message as JSON, what kombu's `send_task` takes (KombuBatches). Memory only ever holds prepared
items and the spool only stored ones: each kind has its own type and its own publish call.

At the rates homes send (tens to a few thousand events/s) the cost is in waking up, not in
the events: a thread wake-up and an LPUSH round trip cost more CPU than an event's own work.
So a batch is given BATCH_LINGER_S to form before it is published: one wake-up and one LPUSH
carry every event of that time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from core.backoff import BackoffFactory, exponential_backoff
from listener.handoff.broker_batches import (
    BrokerBatches,
    CallableBatches,
    KombuBatches,
    Message,
    Prepared,
    Spooled,
    WireBatches,
    celery_publisher,
    supports,
)
from listener.handoff.spool import Spool, SpoolFull
from listener.handoff.storage_watch import READ_EVERY_S, BrokerMemoryGate, spool_disk
from listener.handoff.watermark import HandoffWatermark
from listener.health.stats import ListenerStats

__all__ = [
    "BrokerBatches",
    "CallableBatches",
    "KombuBatches",
    "Message",
    "Publisher",
    "WireBatches",
    "celery_publisher",
    "supports",
]

log = logging.getLogger(__name__)

RESTART_DELAY_S = 1.0
"""Pause before the publisher loop starts again after an exception (no hot failure loop)."""

BATCH_LINGER_S = 0.02
"""How long a batch may form before it is published (less when it fills first). At 200
events/s it makes one wake-up and one LPUSH carry four events instead of one, and 20 ms is
nothing beside the worker's own batching (end-to-end latency p50 ~0.3 s)."""

T = TypeVar("T")


class Publisher(Generic[Prepared, Spooled]):
    """Moves messages from memory to the broker, through the spool when needed."""

    def __init__(
        self,
        publish: BrokerBatches[Prepared, Spooled],
        spool: Spool,
        stats: ListenerStats,
        *,
        capacity: int = 20_000,
        batch_size: int = 500,
        backoff: BackoffFactory = lambda: exponential_backoff(initial=0.2, cap=10.0),
        memory_gate: BrokerMemoryGate | None = None,
        spool_max_bytes: int | None = None,
        linger: float = BATCH_LINGER_S,
    ) -> None:
        self._memory_gate = memory_gate
        self._spool_max_bytes = spool_max_bytes
        self._storage_read_at = -float("inf")
        self._batches = publish
        self._prepare = publish.prepare
        self._linger = linger
        if spool.needs_upgrade:
            converted = spool.upgrade(self._batches.from_legacy)
            log.info(
                "spool %s: converted %d events left by an older version", spool.path, converted
            )
        self._spool = spool
        self._stats = stats
        # A deque, not a queue.Queue: appends and pops are atomic under the GIL and cost a
        # fraction of Queue's lock and condition round trips, at ten thousand events a second.
        # Items are prepared (encoded) already: memory holds compact bytes, not event dicts.
        self._items: deque[Prepared] = deque()
        self._capacity = capacity
        self._high_water = capacity // 2
        self._batch_size = batch_size
        self._backoff = backoff
        self._delays: Iterator[float] | None = None
        self._retry_at = 0.0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._idle = False
        self._streaming = False
        """The last step published something: the next sleeps instead of waiting for a wake."""
        self._spool_full_logged_at = 0.0
        self._in_hand: list[Prepared] = []
        """What the current step took from memory: put back if the step fails."""
        self.watermark = HandoffWatermark()
        """What of memory is durably handed off (broker or spool): where a restart's gap starts."""
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
        stats.spool_depth = spool.depth

    # --- called from the event loop ---------------------------------------------------------

    def submit(self, message: Message, mark: Any = None) -> bool:
        """Hand a message over without blocking; False when memory is full (caller waits).

        `mark` (a live event's `time_fired`) becomes `watermark.value` once the message is in
        the broker or the spool.
        """
        items = self._items
        if len(items) >= self._capacity:
            return False
        items.append(self._prepare(message))
        self.watermark.submitted(mark)
        if self._idle:
            self._idle = False
            self._wake.set()
        return True

    @property
    def backlog(self) -> int:
        return len(self._items)

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._spool.depth:
            log.info("spool holds %d events from before; draining them first", self._spool.depth)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Publish or spool everything in memory, then stop the thread."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("publisher did not finish within %.0f s", timeout)
        leftover = self._drain_memory(limit=None)
        if leftover:
            self._to_spool(leftover)

    # --- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        """Supervise the loop: an exception is logged, counted and the loop started again.

        Messages taken from memory for the step that failed go back to its front, in order.
        """
        while True:
            try:
                self._loop()
            except Exception:
                self._stats.publisher_restarts += 1
                log.exception(
                    "the publisher failed (restart %d); starting it again in %.0f s",
                    self._stats.publisher_restarts,
                    RESTART_DELAY_S,
                )
                self._items.extendleft(reversed(self._in_hand))
                self._in_hand = []
                self._stop.wait(RESTART_DELAY_S)
                continue
            return

    def _loop(self) -> None:
        while True:
            stopping = self._stop.is_set()
            if self._spool.depth or len(self._items) > self._high_water:
                done = self._spool_mode_step(stopping)
            else:
                done = self._direct_step(stopping)
            self._in_hand = []
            self._stats.memory_queue_depth = len(self._items)
            self._stats.spool_depth = self._spool.depth
            self._stats.spool_quarantined = self._spool.quarantined
            self._read_storage()
            if done:
                return

    def _read_storage(self) -> None:
        """The spool's size and free disk for the health report, at most once a second."""
        now = time.monotonic()
        if now - self._storage_read_at < READ_EVERY_S:
            return
        self._storage_read_at = now
        stats = self._stats
        disk = spool_disk(self._spool.path, self._spool.size_bytes(), self._spool_max_bytes or 0)
        stats.spool_bytes = disk.used
        stats.spool_max_bytes = self._spool_max_bytes
        stats.spool_disk_free_bytes = disk.disk_free

    def _wait_for_items(self, timeout: float) -> None:
        """Sleep until submit() wakes us (or timeout); never misses an item appended meanwhile."""
        self._wake.clear()
        self._idle = True
        if not self._items and not self._stop.is_set():
            self._wake.wait(timeout)
        self._idle = False

    def _direct_step(self, stopping: bool) -> bool:
        if not stopping:
            self._let_a_batch_form()
        batch = self._drain_memory(limit=self._batch_size)
        self._streaming = bool(batch)
        if not batch:
            return stopping
        if not self._try_publish(self._batches.publish, batch):
            self._to_spool(batch)
        else:
            self._stats.events_enqueued += len(batch)
            self.watermark.handed_off(len(batch))
        return False

    def _let_a_batch_form(self) -> None:
        """Sleep for BATCH_LINGER_S unless a whole batch waits; first wait for an item if the
        last step found none.

        While events flow the thread never goes idle: a sleep ends each step, so submit() has
        no thread to wake and one wake-up and one LPUSH carry every event of the sleep.
        """
        if not self._items and not self._streaming:
            self._wait_for_items(0.1)
            if not self._items:
                return
        if len(self._items) < self._batch_size:
            self._stop.wait(self._linger)

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
        batch = self._decode(rows)
        if not batch:
            return False
        if self._try_publish(self._batches.publish_spooled, batch):
            self._spool.remove_through(rows[-1][0])
            self._stats.events_drained += len(rows)
            self._stats.events_enqueued += len(rows)
            if not self._spool.depth:
                log.info("spool drained: every event is in the broker")
        elif stopping:
            return True
        return False

    def _decode(self, rows: list[tuple[int, bytes]]) -> list[Spooled]:
        """Spool rows → broker items; a row that does not decode is quarantined, not retried."""
        from_spool = self._batches.from_spool
        batch: list[Spooled] = []
        bad: list[int] = []
        for row_id, body in rows:
            try:
                batch.append(from_spool(body))
            except (ValueError, TypeError) as exc:
                bad.append(row_id)
                log.error(  # noqa: TRY400 - the reason is the whole story
                    "spool row %d cannot be decoded (%s): kept apart in the spool's quarantine "
                    "table",
                    row_id,
                    exc,
                )
        if bad:
            self._spool.quarantine(bad, "the row does not decode")
            self._stats.spool_quarantined = self._spool.quarantined
            return []  # peek again: the rows left are the batch, in order
        return batch

    def _try_publish(self, publish: Callable[[list[T]], None], batch: list[T]) -> bool:
        gate = self._memory_gate
        if gate is not None:
            full = gate.check()
            memory = gate.memory
            if memory is not None:
                self._stats.broker_memory_used_bytes = memory.used
                self._stats.broker_memory_max_bytes = memory.limit
            self._stats.broker_full = full
            if full:  # kept on disk until the broker's memory is below its threshold again
                self._retry_at = time.monotonic() + READ_EVERY_S
                return False
        try:
            publish(batch)
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

    def _to_spool(self, batch: list[Prepared]) -> None:
        spool_body = self._batches.spool_body
        bodies = [spool_body(item) for item in batch]
        while True:
            try:
                self._spool.append(bodies)
            except SpoolFull as exc:
                self._stats.spool_full = True
                now = time.monotonic()
                if now - self._spool_full_logged_at > 30:
                    log.error("%s — reading from HA pauses until there is room", exc)  # noqa: TRY400
                    self._spool_full_logged_at = now
                # Retry publishing the head so the spool can shrink; never drop the batch.
                if self._try_publish(self._batches.publish, batch):
                    self._stats.events_enqueued += len(batch)
                    self.watermark.handed_off(len(batch))
                    return
                if self._stop.wait(1.0) and self._thread is not threading.current_thread():
                    log.critical("stopping with %d events that fit nowhere", len(batch))
                    return
                continue
            self._stats.spool_full = False
            self._stats.events_spooled += len(batch)
            self.watermark.handed_off(len(batch))
            return

    def _drain_memory(self, limit: int | None) -> list[Prepared]:
        items = self._items
        count = len(items) if limit is None else min(limit, len(items))
        popleft = items.popleft
        taken = self._in_hand = [popleft() for _ in range(count)]
        return taken
