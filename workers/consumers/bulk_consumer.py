"""The consumer bootstep that decides how this worker takes the ingest queue, and owns its taker.

How it fits in Celery. The worker stays a Celery worker (remote control, Flower, events), and a
stock worker with the task registered still consumes the same messages
(workers/consumers/ingest_task.py). With WORKER_BULK_TAKE (the default) the step takes the
ingest queue out of Celery's task consumer (kombu's public `Consumer.cancel_by_queue`) and runs
the bulk taker of the broker kind (`Settings.broker_kind`, decided once from the URL): Redis
(workers/consumers/redis_taker.py) or RabbitMQ (workers/consumers/amqp_taker.py), both a
workers/consumers/taker.py Taker. With WORKER_BULK_TAKE=false it takes nothing itself: Celery's
stock consumer and transport deliver the messages to the celery-batches task, one
acknowledgement per message (docs/operations.md says what that costs).

On every path the step gives the worker context (built by workers/worker_start.py, carried by
the app) the batches' task events for Flower (workers/batch_events.py).

Celery restarts its consumer on a broker reconnect (stop, then start, on this same step): the
taker keeps running then, with its own connection; it stops with the worker.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, bootsteps
from celery.signals import worker_shutting_down

from config.broker_kind import BrokerKind
from config.celery_app import app_settings
from config.settings import Settings
from workers.batch_events import BatchEvents
from workers.consumers.amqp_taker import AmqpTaker
from workers.consumers.redis_taker import RedisTaker
from workers.consumers.taker import Taker
from workers.worker_context import WorkerContext, context_of

log = logging.getLogger(__name__)

TASKS_STEP = "celery.worker.consumer.tasks:Tasks"


def make_taker(settings: Settings, app: Celery, context: WorkerContext) -> Taker | None:
    """The bulk taker for this broker kind; None with WORKER_BULK_TAKE=false."""
    if not settings.worker_bulk_take:
        return None
    if settings.broker_kind is BrokerKind.AMQP:
        return AmqpTaker(settings, app.amqp.queues[settings.celery_queue], context)
    return RedisTaker(settings, context)


class BulkConsumer(bootsteps.StartStopStep):  # type: ignore[misc]
    """Celery consumer step: the ingest queue is taken in bulk here, by the broker's taker."""

    name = "ha_ingestor.bulk_consumer"
    requires = (TASKS_STEP,)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        super().__init__(c, **kwargs)
        self.taker: Taker | None = None

    def start(self, c: Any) -> None:
        context = context_of(c.app).current()
        context.batch_events = BatchEvents(c)  # every path's batches become tasks in Flower
        settings = app_settings(c.app)
        if not settings.worker_bulk_take:
            return
        # Celery's consumer must not take the queue too; everything else of it stays.
        c.task_consumer.cancel_by_queue(settings.celery_queue)
        if self.taker is None or not self.taker.running():
            self.taker = make_taker(settings, c.app, context)
            if self.taker is not None:
                self.taker.start()
                # Weak (Celery's default): the receiver goes with this step.
                worker_shutting_down.connect(self.on_shutting_down)

    def stop(self, c: Any) -> None:
        """Celery restarts its consumer on a broker reconnect: the taker keeps going then; it
        stops with the worker."""
        if self.taker is not None and self.taker.stop_event.is_set():
            self._stop_taker()

    def shutdown(self, c: Any) -> None:
        self._stop_taker()

    def on_shutting_down(self, **_: Any) -> None:
        """The worker begins its shutdown: the taker stops taking at once."""
        if self.taker is not None:
            self.taker.stop_event.set()

    def _stop_taker(self) -> None:
        taker, self.taker = self.taker, None
        if taker is not None:
            taker.stop()
