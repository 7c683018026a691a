"""Worker start-up: what `celery -A config.celery_app worker` does before its first message.

A worker bootstep, which config/celery_app.py names by dotted name (config imports no worker
code, so the listener, beat and Flower never load this). While Celery builds the worker, before
any step starts and so before the consumer connects, it

1. on Redis, either leaves the ingest queue to the bulk consumer
   (workers/consumers/bulk_consumer.py, a consumer bootstep; the default), or, with
   WORKER_BULK_TAKE=false, installs the workers' kombu transport for redis:// URLs
   (workers/consumers/broker_transport.py: a killed worker loses no message it took);
2. checks the delivery timing settings (config/celery_app.py, batch_hold_limit) and reads the
   rules file, and refuses to start with one message naming every problem and a non-zero exit
   (SystemExit: Celery lets it through, where it would log and swallow an exception);
3. builds the worker context (workers/worker_context.py): sink, Redis stores, pipeline.

The batching itself (BATCH_SIZE, BATCH_INTERVAL) is set on the task by the app's configuration
(`task_annotations`), which celery-batches reads when the consumer starts.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import Celery, bootsteps
from celery.signals import worker_shutting_down

from config.celery_app import DeliveryTimingError, app_settings, batch_hold_limit
from config.rules_file import load_rules
from config.settings import Settings
from core.rules import Rules, RulesError
from workers import worker_context
from workers.consumers import broker_transport
from workers.consumers.bulk_consumer import on_redis
from workers.consumers.bulk_queue import supports_bulk_take
from workers.consumers.kombu_guard import IncompatibleKombu
from workers.consumers.task_sender import FrontSender
from workers.worker_context import WorkerContext

log = logging.getLogger(__name__)


class WorkerStart(bootsteps.Step):  # type: ignore[misc]
    """Runs while the worker is built: a refusal stops it before it takes anything."""

    name = "ha_ingestor.worker_start"

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        start_worker(worker.app)


def start_worker(app: Celery) -> WorkerContext:
    """Install the transport, check settings and rules, build the context; SystemExit when
    something must be fixed first."""
    settings = app_settings(app)
    if on_redis(settings) and settings.worker_bulk_take:
        _refuse_old_redis(settings)
    if on_redis(settings) and not settings.worker_bulk_take:
        try:
            broker_transport.install()  # a Redis broker, taken by kombu: the reliable take
        except IncompatibleKombu as exc:
            raise SystemExit(f"ha-ingestor cannot start: {exc}") from exc
    hold_limit, rules = checked(settings)
    send_many = FrontSender(settings, app)  # outage replays are written first
    context = worker_context.start(
        lambda: WorkerContext(settings, rules, send_many=send_many, hold_limit=hold_limit)
    )
    worker_shutting_down.connect(_on_shutdown, weak=False, dispatch_uid=__name__)
    log.info(
        "worker ready to write to %s: batches of %d events or %g s, rules: %s",
        context.sink.target,
        settings.batch_size,
        settings.batch_interval,
        settings.ha_ingestor_config or "defaults",
    )
    return context


def _refuse_old_redis(settings: Settings) -> None:
    """The bulk take's scripts need Redis 7.0: say so at start rather than fail every take.

    An unreachable broker is not refused here: Celery waits for it, and the taker retries.
    """
    client = redis.Redis.from_url(
        settings.celery_broker_url.get_secret_value(), socket_timeout=5, socket_connect_timeout=5
    )
    try:
        version = str(client.info("server").get("redis_version", ""))
    except redis.RedisError:
        return
    finally:
        client.close()
    if version and not supports_bulk_take(version):
        raise SystemExit(
            f"ha-ingestor cannot start: the broker runs Redis {version}, and the workers' bulk "
            "take needs Redis 7.0 or newer (Debian 12 ships 7.0). Upgrade Redis, or set "
            "WORKER_BULK_TAKE=false to take messages through kombu (about 10x more CPU per "
            "event; needs Redis 6.2)."
        )


def checked(settings: Settings) -> tuple[float, Rules]:
    """The batch hold limit and the rules; SystemExit with every problem if either is wrong."""
    problems: list[str] = []
    hold_limit = 0.0
    rules = Rules()
    try:
        hold_limit = batch_hold_limit(settings)
    except DeliveryTimingError as exc:
        problems.append(str(exc))  # "ha-ingestor cannot start, fix these settings …"
    try:
        rules = load_rules(settings.ha_ingestor_config)
    except RulesError as exc:
        lead = "and fix" if problems else "ha-ingestor cannot start, fix"
        problems.append(f"{lead} the rules file: {exc}")
    if problems:
        raise SystemExit("\n".join(problems))
    return hold_limit, rules


def _on_shutdown(**_: Any) -> None:
    """Let a batch that is waiting for InfluxDB give its messages back instead of blocking."""
    context = worker_context.started()
    if context is not None:
        context.stopping.set()
