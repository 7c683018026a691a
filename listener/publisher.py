"""Publishing task messages to the broker from one thread, never from the event loop.

The reader hands messages over through a bounded in-memory queue. This thread publishes them in
pipelined batches. When the broker is down, or publishing falls behind (the queue passes its
high-water mark), messages go to the durable spool instead, and from then on everything goes
through the spool until it is drained, so the order of events is kept.

Each message is prepared once, on the event loop, when it is submitted: on a Redis broker it is
encoded by core.task_message into the message `send_task` would store (a few tens of µs instead
of Celery's ~0.2-1 ms), so memory holds compact bytes rather than event dicts, and this thread
only pushes whole batches with one LPUSH, mostly waiting on the socket with the GIL released.
The spool keeps those very bytes and its drain pushes them unchanged (WireBatches). Other
brokers (RabbitMQ) publish through kombu's pipelined batches, and their spool rows are the §3.1
message as JSON, what kombu's `send_task` takes (KombuBatches).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import redis
from celery import Celery
from redis.backoff import NoBackoff
from redis.retry import Retry

from config.celery_app import broker_transport_options, create_app
from config.settings import Settings
from core import task_message
from core.backoff import BackoffFactory, exponential_backoff
from core.task_message import INGEST_TASK
from listener.listener_stats import ListenerStats
from listener.spool import Spool, SpoolFull

log = logging.getLogger(__name__)

Message = dict[str, Any]
PublishBatch = Callable[[list[Message]], None]

REDIS_SCHEMES = frozenset(("redis", "rediss"))
"""Broker URL schemes whose queue is a plain Redis list WireBatches can push to."""

SUPPORTED_TRANSPORT_OPTIONS = frozenset(
    (
        "visibility_timeout",
        "unacked_restore_interval",
        "unacked_restore_throttle",
        "unacked_mutex_expire",
        "max_connections",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "retry_on_timeout",
        "health_check_interval",
        "polling_interval",
        "queue_order_strategy",
    )
)
"""kombu Redis transport options that only concern consumers or connections, not where or how
a message is stored (a key prefix, for one, would: then kombu publishes)."""


def supports(broker_url: str, transport_options: Mapping[str, Any] | None = None) -> bool:
    """Whether core.task_message can build this broker's messages (Redis, plain options)."""
    if urlsplit(broker_url).scheme not in REDIS_SCHEMES:
        return False
    return set(transport_options or {}) <= SUPPORTED_TRANSPORT_OPTIONS


BROKER_TIMEOUT_S = 5.0
"""How long a publish may wait on the broker before the batch goes to the spool instead."""


@runtime_checkable
class BrokerBatches(Protocol):
    """How messages become broker messages: prepared once per event, published per batch."""

    def prepare(self, message: Message) -> Any:
        """Called on the event loop for each event: do the per-event work here, once."""

    def publish(self, items: list[Any]) -> None:
        """Called on the publisher thread: put prepared items on the broker, in order."""

    def spool_body(self, item: Any) -> bytes:
        """What the spool keeps of a prepared item."""

    def from_spool(self, body: bytes) -> Any:
        """The prepared item a spooled body holds."""

    def from_legacy(self, message_json: str) -> bytes:
        """The spool body for a row of an older spool: the §3.1 message as JSON text."""


def celery_publisher(settings: Settings) -> BrokerBatches:
    """Publish ordinary Celery task messages to CELERY_QUEUE, one broker round trip per batch.

    Redis brokers take the fast path (WireBatches), which needs no Celery app; anything else
    goes through kombu, with an app built for it.
    """
    broker_url = settings.celery_broker_url.get_secret_value()
    if supports(broker_url, broker_transport_options(settings)):
        return WireBatches(broker_url, settings.celery_queue)
    return KombuBatches(create_app(settings), settings.celery_queue)


class WireBatches:
    """Messages built by core.task_message on the event loop; one LPUSH per batch.

    The spool holds the built messages themselves. A batch pushed again after an LPUSH whose
    reply was lost repeats task ids: a duplicate, which delivery at-least-once allows and
    idempotent points absorb.
    """

    def __init__(self, broker_url: str, queue_name: str) -> None:
        self._client = redis.Redis.from_url(
            broker_url,
            socket_timeout=BROKER_TIMEOUT_S,
            socket_connect_timeout=BROKER_TIMEOUT_S,
            # One immediate retry covers a connection Redis closed while idle; longer outages
            # are the spool's business (a retry after an unanswered LPUSH may duplicate: fine,
            # delivery is at-least-once and points are idempotent).
            retry=Retry(NoBackoff(), 1),
        )
        self._queue = queue_name
        self._wire = task_message.TaskWire(
            INGEST_TASK, queue_name, origin=f"gen{os.getpid()}@{socket.gethostname()}"
        )
        self.prepare = self._wire.encode

    def publish(self, items: list[bytes]) -> None:
        # LPUSH q a b c is LPUSH a; LPUSH b; LPUSH c: workers BRPOP the oldest first.
        self._client.lpush(self._queue, *items)

    def spool_body(self, item: bytes) -> bytes:
        return item

    def from_spool(self, body: bytes) -> bytes:
        return body

    def from_legacy(self, message_json: str) -> bytes:
        return self._wire.encode(json.loads(message_json))


class KombuBatches:
    """Celery's send_task into kombu's Producer.batch (pipelined on Redis, any broker).

    The spool holds the §3.1 message as JSON, the argument send_task takes.
    """

    def __init__(self, app: Celery, queue_name: str) -> None:
        self._app = app
        self._queue = queue_name

    def prepare(self, message: Message) -> Message:
        return message

    def publish(self, items: list[Message]) -> None:
        app = self._app
        with app.producer_or_acquire() as producer, producer.batch(max_size=len(items)):
            for message in items:
                app.send_task(
                    INGEST_TASK, args=[message], queue=self._queue, producer=producer, retry=False
                )

    def spool_body(self, item: Message) -> bytes:
        return json.dumps(item).encode("ascii")

    def from_spool(self, body: bytes) -> Message:
        loaded: Message = json.loads(body)
        return loaded

    def from_legacy(self, message_json: str) -> bytes:
        return message_json.encode()


class CallableBatches(KombuBatches):
    """Any function publishing a list of messages (tests pass a failing one, for instance)."""

    def __init__(self, publish: PublishBatch) -> None:
        self._publish_fn = publish

    def publish(self, items: list[Message]) -> None:
        self._publish_fn(items)


class Publisher:
    """Moves messages from memory to the broker, through the spool when needed."""

    def __init__(
        self,
        publish: BrokerBatches | PublishBatch,
        spool: Spool,
        stats: ListenerStats,
        *,
        capacity: int = 20_000,
        batch_size: int = 500,
        backoff: BackoffFactory = lambda: exponential_backoff(initial=0.2, cap=10.0),
    ) -> None:
        self._batches = publish if isinstance(publish, BrokerBatches) else CallableBatches(publish)
        self._prepare = self._batches.prepare
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
        self._items: deque[Any] = deque()
        self._capacity = capacity
        self._high_water = capacity // 2
        self._batch_size = batch_size
        self._backoff = backoff
        self._delays: Iterator[float] | None = None
        self._retry_at = 0.0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._idle = False
        self._spool_full_logged_at = 0.0
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
        stats.spool_depth = spool.depth

    # --- called from the event loop ---------------------------------------------------------

    def submit(self, message: Message) -> bool:
        """Hand a message over without blocking; False when memory is full (caller waits)."""
        items = self._items
        if len(items) >= self._capacity:
            return False
        items.append(self._prepare(message))
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
        while True:
            stopping = self._stop.is_set()
            if self._spool.depth or len(self._items) > self._high_water:
                done = self._spool_mode_step(stopping)
            else:
                done = self._direct_step(stopping)
            self._stats.memory_queue_depth = len(self._items)
            self._stats.spool_depth = self._spool.depth
            if done:
                return

    def _wait_for_items(self, timeout: float) -> None:
        """Sleep until submit() wakes us (or timeout); never misses an item appended meanwhile."""
        self._wake.clear()
        self._idle = True
        if not self._items and not self._stop.is_set():
            self._wake.wait(timeout)
        self._idle = False

    def _direct_step(self, stopping: bool) -> bool:
        if not self._items and not stopping:
            self._wait_for_items(0.1)
        batch = self._drain_memory(limit=self._batch_size)
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
        from_spool = self._batches.from_spool
        if self._try_publish([from_spool(body) for _, body in rows]):
            self._spool.remove_through(rows[-1][0])
            self._stats.events_drained += len(rows)
            self._stats.events_enqueued += len(rows)
            if not self._spool.depth:
                log.info("spool drained: every event is in the broker")
        elif stopping:
            return True
        return False

    def _try_publish(self, batch: list[Any]) -> bool:
        try:
            self._batches.publish(batch)
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

    def _to_spool(self, batch: list[Any]) -> None:
        spool_body = self._batches.spool_body
        bodies = [spool_body(item) for item in batch]
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

    def _drain_memory(self, limit: int | None) -> list[Any]:
        items = self._items
        count = len(items) if limit is None else min(limit, len(items))
        popleft = items.popleft
        return [popleft() for _ in range(count)]
