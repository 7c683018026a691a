"""Worker start-up: what `celery -A config.celery_app worker` does before its first message.

A worker bootstep, which config/celery_app.py names by dotted name (config imports no worker
code, so the listener, beat and Flower never load this). While Celery builds the worker, before
any step starts and so before the consumer connects, it

1. with the bulk take on Redis (the default), refuses a broker Redis too old for the bulk
   take's scripts (workers/consumers/bulk_queue.py says which and what to do);
2. checks the delivery timing settings (config/celery_app.py, batch_hold_limit) and reads the
   rules file, and refuses to start with one message naming every problem and a non-zero exit
   (SystemExit: Celery lets it through, where it would log and swallow an exception);
3. builds the worker context (workers/worker_context.py: sink, Redis stores, pipeline) and
   hangs it on the app, where the consumer step (workers/consumers/bulk_consumer.py) and the
   ingest task find it.

The batching itself (BATCH_SIZE, BATCH_INTERVAL) is set on the task by the app's configuration
(`task_annotations`), which celery-batches reads when the consumer starts.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import Celery, bootsteps
from celery.signals import worker_shutting_down

from config.broker_kind import BrokerKind
from config.celery_app import DeliveryTimingError, app_settings, batch_hold_limit
from config.destinations import Destinations, load_destinations
from config.settings import Settings
from core.rules import RulesError
from workers.consumers.bulk_queue import too_old_for_bulk_take
from workers.consumers.task_sender import FrontSender
from workers.worker_context import ProcessContext, WorkerContext, attach

log = logging.getLogger(__name__)


class WorkerStart(bootsteps.Step):  # type: ignore[misc]
    """Runs while the worker is built: a refusal stops it before it takes anything."""

    name = "ha_ingestor.worker_start"

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        start_worker(worker.app)


def start_worker(app: Celery) -> WorkerContext:
    """Check the broker, the settings and the rules, build the context and hang it on `app`;
    SystemExit when something must be fixed first."""
    settings = app_settings(app)
    if settings.worker_bulk_take and settings.broker_kind is BrokerKind.REDIS:
        _refuse_old_redis(settings)
    hold_limit, destinations = checked(settings)
    send_many = FrontSender(settings, app)  # outage replays are written first
    holder = ProcessContext(
        lambda: WorkerContext(settings, destinations, send_many=send_many, hold_limit=hold_limit)
    )
    attach(app, holder)
    # Weak (Celery's default): the receiver goes with the app that carries the holder.
    worker_shutting_down.connect(holder.on_shutting_down)
    context = holder.current()
    log.info(
        "worker ready to write to %s: batches of %d events or %g s, rules: %s",
        "; ".join(f"{w.name} ({w.sink.target})" for w in context.writers)
        if context.several
        else context.sink.target,
        settings.batch_size,
        settings.batch_interval,
        settings.ha_ingestor_config or "defaults",
    )
    return context


def _refuse_old_redis(settings: Settings) -> None:
    """The bulk take's scripts need a recent Redis: say so at start rather than fail every take.

    An unreachable broker is not refused here: Celery waits for it, and the taker retries.
    """
    client = redis.Redis.from_url(
        settings.celery_broker_url.get_secret_value(), socket_timeout=5, socket_connect_timeout=5
    )
    try:
        info = client.info("server")
    except redis.RedisError:
        return
    finally:
        client.close()
    problem = too_old_for_bulk_take(info)
    if problem is not None:
        detail, fix = problem
        raise SystemExit(f"ha-ingestor cannot start: the broker {detail}. {fix}.")


def checked(settings: Settings) -> tuple[float, Destinations]:
    """The batch hold limit and the destinations with their rules; SystemExit with every
    problem if either is wrong."""
    problems: list[str] = []
    hold_limit = 0.0
    destinations = Destinations(())
    try:
        hold_limit = batch_hold_limit(settings)
    except DeliveryTimingError as exc:
        problems.append(str(exc))  # "ha-ingestor cannot start, fix these settings …"
    try:
        destinations = load_destinations(settings)
    except RulesError as exc:
        lead = "and fix" if problems else "ha-ingestor cannot start, fix"
        problems.append(f"{lead} the rules file: {exc}")
    if problems:
        raise SystemExit("\n".join(problems))
    return hold_limit, destinations
