"""The Celery app (`celery -A config.celery_app worker|beat|flower`), built without side effects.

Importing this module builds nothing: `create_app(settings)` builds an app (the listener, the
`dlq` command and the tests build their own), and the module's `app` attribute, which Celery's
`-A config.celery_app` looks up, is built from the environment on first access.

The app names worker code only by dotted name, so the listener loads none of it: the task
modules (`include`, imported by a worker or beat when it starts), the worker's start-up
bootstep (workers/worker_start.py), which checks settings and rules and builds the worker
context before the worker takes its first message, and the consumer bootstep that takes the
ingest queue in bulk (workers/consumers/bulk_consumer.py). Messages travel on kombu's own
transports: no transport of ours is installed anywhere.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger

from config.broker_kind import BrokerKind
from config.settings import Settings, SettingsError, get_settings
from core.task_message import INGEST_TASK

PREFETCH_BATCHES = 2
"""Batches a worker process may hold unacknowledged: one being written, one filling."""

TASK_MODULES = ("workers.consumers.ingest_task", "workers.monitoring.beat_tasks")
"""Where the tasks are; a worker or beat imports them at start (their tasks are shared_task)."""
WORKER_START = "workers.worker_start:WorkerStart"
"""The worker bootstep that builds what a worker needs (workers/worker_start.py)."""
BULK_CONSUMER = "workers.consumers.bulk_consumer:BulkConsumer"
"""The consumer bootstep that takes the ingest queue in bulk, with the broker kind's taker
(workers/consumers/bulk_consumer.py)."""


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


def supports(kind: BrokerKind, transport_options: Mapping[str, Any] | None = None) -> bool:
    """Whether core.task_message can build this broker's messages (Redis, plain options): the
    listener publishes them itself then, and workers put replays where they are taken next."""
    if kind is not BrokerKind.REDIS:
        return False
    return set(transport_options or {}) <= SUPPORTED_TRANSPORT_OPTIONS


STATE_CALLS_AFTER_ATTEMPT = 3
"""State-Redis calls a retrying batch makes between its last hold check and its hand-back."""


class DeliveryTimingError(SettingsError):
    """The visibility timeout is too short for the batching and retry settings."""


def batch_hold_limit(settings: Settings) -> float:
    """Seconds a worker keeps retrying one batch against an unavailable InfluxDB before it
    hands the unfinished messages back to the broker. Raises DeliveryTimingError if none fits.

    Why a hold limit, and this one. WORKER_HOLD_TIMEOUT is the longest a message may stay
    unacknowledged: past it, kombu's stock transport on Redis (its visibility timeout) hands the
    message to another consumer. Messages are
    acknowledged only when their batch is done (written or dead-lettered), so a batch held
    longer than that is delivered twice — harmless for the points (same series and time) but
    doubled work and memory, repeated every timeout during a long outage. RabbitMQ has the same
    ceiling as its `consumer_timeout` (30 min by default), past which it closes the channel.

    The longest a message stays unacknowledged, worst case:
        wait in the batch buffer     BATCH_INTERVAL (or until the batch is full)
      + the hold while retrying      hold limit
      + the attempt in flight        INFLUXDB_TIMEOUT
      + the retry delay that ends it WRITE_RETRY_MAX_DELAY (the hold is checked before sleeping,
                                      so this term is a margin)
      + the state-Redis calls after   STATE_CALLS_AFTER_ATTEMPT x 2 x REDIS_SOCKET_TIMEOUT (a
        the last check                counter, the error text, outage letters: each a try and
                                      one retry when Redis does not answer)
    and a message prefetched behind a held batch (PREFETCH_BATCHES = 2) waits for that batch
    first, so twice that must stay below WORKER_HOLD_TIMEOUT:
        hold = WORKER_HOLD_TIMEOUT / 2 - (BATCH_INTERVAL + INFLUXDB_TIMEOUT + WRITE_RETRY_MAX_DELAY
                                         + 6 x REDIS_SOCKET_TIMEOUT)
    With the defaults (3600 s, 0.5 s, 10 s, 30 s, 5 s) that is about 28 min, also below
    RabbitMQ's 30 min consumer_timeout.

    Why WORKER_HOLD_TIMEOUT (formerly CELERY_VISIBILITY_TIMEOUT) is not WORKER_LIVENESS_TIMEOUT:
    one bounds how long a LIVE worker holds a batch, the other when a SILENT one counts as dead.
    The bulk takers tell a busy
    worker from a dead one (a liveness key renewed by a thread of the worker; RabbitMQ's
    connection), so on Redis a killed worker's messages come back within WORKER_LIVENESS_TIMEOUT
    and a half (30 s), while a live one may hold a batch for this hold limit. kombu's stock
    transport (WORKER_BULK_TAKE=false) cannot tell them apart: its visibility timeout is both
    bounds at once, so it must be long, and a killed worker's messages come back only after it
    (plus at most one restore sweep, `unacked_restore_interval`).
    """
    overhead = (
        settings.batch_interval
        + settings.influxdb_timeout
        + settings.write_retry_max_delay
        + STATE_CALLS_AFTER_ATTEMPT * 2 * settings.redis_socket_timeout
    )
    hold = settings.worker_hold_timeout / PREFETCH_BATCHES - overhead
    if hold <= 0:
        needed = PREFETCH_BATCHES * overhead
        raise DeliveryTimingError(
            "ha-ingestor cannot start, fix these settings (environment variables):\n"
            f"  WORKER_HOLD_TIMEOUT: {settings.worker_hold_timeout:g} s is too short; "
            f"it must exceed {needed:g} s = {PREFETCH_BATCHES} x (BATCH_INTERVAL + "
            "INFLUXDB_TIMEOUT + WRITE_RETRY_MAX_DELAY + 6 x REDIS_SOCKET_TIMEOUT), or a batch "
            "still being retried is delivered again. Raise it or lower those."
        )
    return hold


def restore_interval(settings: Settings) -> float:
    """Seconds between a worker's sweeps for messages whose visibility timeout ran out.

    kombu's default sweeps about every 100 s (10 s times a throttle of 10); a tenth of the
    visibility timeout, between 1 s and 60 s, keeps a killed worker's batch from waiting much
    longer than the timeout itself, for one cheap ZRANGE per sweep.
    """
    return min(60.0, max(1.0, settings.worker_hold_timeout / 10))


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    """Per-broker options: Redis's redelivery timing; RabbitMQ's publisher confirms."""
    if settings.broker_kind is BrokerKind.AMQP:
        # Without confirms a message RabbitMQ took but lost in a crash would count as
        # enqueued; with them, publishing fails and the listener spools it (half the speed).
        return {"confirm_publish": True}
    return {
        "visibility_timeout": settings.worker_hold_timeout,
        "unacked_restore_interval": restore_interval(settings),
        "unacked_restore_throttle": 1,
        # The sweep takes a mutex in Redis; one left by a worker killed (or cut off by a broker
        # restart) mid-sweep blocks every sweep until it expires: kombu's 300 s would hold a
        # killed worker's batch back for minutes after its visibility timeout.
        "unacked_mutex_expire": int(min(300, max(5, settings.worker_hold_timeout // 2))),
        # A hung broker must fail a publish (the listener then spools), not block it forever.
        "socket_timeout": 15.0,
        "socket_connect_timeout": 5.0,
    }


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings derived from ours; one place that decides delivery semantics."""
    queue = settings.celery_queue
    return {
        "broker_url": settings.celery_broker_url.get_secret_value(),
        "broker_connection_retry_on_startup": True,
        # Redis redelivers unacknowledged messages after this many seconds: how long a killed
        # worker's batch waits before another worker takes it. See batch_hold_limit() for why
        # a live worker never holds a message that long.
        "broker_transport_options": broker_transport_options(settings),
        "task_serializer": "json",
        # Bodies zlib-compressed (kombu's `compression` header, which every worker reads): a
        # waiting event costs Redis under 1 kB (the listener's TaskWire does the same).
        "task_compression": "zlib",
        "accept_content": ["json"],
        "result_serializer": "json",
        "task_ignore_result": True,
        "result_backend": None,
        # No results, so nothing expires: otherwise beat adds Celery's `celery.backend_cleanup`
        # at 04:00 every day, sent to the default queue, which is the ingest queue (a daily
        # `undecodable` dead letter).
        "result_expires": None,
        # A message is acknowledged only once its point is written or dead-lettered; a batch
        # the worker gives up holding is rejected with requeue (workers/consumers/ingest_task.py).
        # With the prefork pool a killed child's batch is neither acknowledged nor rejected, so it
        # comes back after the visibility timeout; reject_on_worker_lost covers plain tasks.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_default_queue": queue,
        "task_routes": {INGEST_TASK: {"queue": queue}},
        # celery-batches reads these off the task when the consumer starts: a batch is written
        # when BATCH_SIZE messages are in, or BATCH_INTERVAL after the first one.
        "task_annotations": {
            INGEST_TASK: {
                "flush_every": settings.batch_size,
                "flush_interval": settings.batch_interval,
            }
        },
        # celery-batches needs a prefetch window of at least one batch, or it stalls; two let
        # the next batch fill while one is written (and bound a worker's memory in an outage).
        "worker_prefetch_multiplier": PREFETCH_BATCHES * settings.batch_size,
        "worker_max_memory_per_child": None,
        "worker_hijack_root_logger": True,
        "worker_send_task_events": False,
        # Beat runs its monitoring jobs itself (workers/monitoring/beat_tasks.py says why), every
        # BEAT_INTERVAL seconds.
        "beat_scheduler": "workers.monitoring.beat_tasks:InProcessScheduler",
        "beat_schedule": {
            "compute-health": {
                "task": "ha_ingestor.compute_health",
                "schedule": settings.beat_interval,
            },
        },
        "timezone": "UTC",
        "enable_utc": True,
    }


class IngestorApp(Celery):  # type: ignore[misc]
    """Celery's app, knowing the settings it was built for (the worker starts from them)."""

    settings: Settings | None = None
    worker_context: object | None = None
    """What a worker writes with, hung here by its start-up step (workers/worker_context.py
    ProcessContext) for the consumer step and the ingest task; None in every other process."""

    def mask_secrets(self, **_: Any) -> None:
        """Celery set up its logging (after_setup_logger): mask our secrets in every record."""
        from config.logging_setup import install_secret_filter

        if self.settings is not None:
            install_secret_filter(self.settings.secrets())


def create_app(settings: Settings) -> Celery:
    """Build the app for these settings; nothing else happens (no import of worker code). A
    worker started on it runs WORKER_START first (checks, the worker context), then its
    consumer runs BULK_CONSUMER (the bulk take, unless WORKER_BULK_TAKE=false)."""
    app = IngestorApp("ha_ingestor", include=list(TASK_MODULES))
    app.settings = settings
    app.conf.update(celery_config(settings))
    app.steps["worker"].add(WORKER_START)
    app.steps["consumer"].add(BULK_CONSUMER)
    # Weak receivers (Celery's default): they go with the app.
    after_setup_logger.connect(app.mask_secrets)
    after_setup_task_logger.connect(app.mask_secrets)
    return app


def app_settings(app: Celery) -> Settings:
    """The settings `app` was built for (create_app), else this process's."""
    settings = getattr(app, "settings", None)
    return settings if isinstance(settings, Settings) else get_settings()


@functools.cache
def default_app() -> Celery:
    """The app of `celery -A config.celery_app …`: from the environment, once per process.

    Invalid settings end the process with their one message (SystemExit, which Celery's
    command line lets through) rather than a traceback about loading the app.
    """
    try:
        settings = get_settings()
    except SettingsError as exc:
        raise SystemExit(str(exc)) from None
    return create_app(settings)


def __getattr__(name: str) -> Any:
    """`config.celery_app.app`, built on first access (PEP 562), never at import."""
    if name == "app":
        return default_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
