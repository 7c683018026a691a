"""Celery task events for each written batch, so Flower shows the ingestion work.

Workers take the ingest queue in bulk (workers/consumers/redis_taker.py,
workers/consumers/amqp_taker.py) or through celery-batches (workers/consumers/ingest_task.py): no
Celery task runs per message, so Celery sends no task event and Flower's dashboard said Processed 0
after thousands of events written. Here each batch becomes one task in Flower,
`ha_ingestor.ingest_batch`, with its event count (kwargs `events`), its runtime and its outcome:
task-received, task-started, then task-succeeded (result: written, skipped, dead-lettered) or
task-failed (messages handed back to the broker unwritten, or the batch failed). One sequence per
batch, never per message: per-message events would cost what bulk consumption saves.

Sent only while the worker's own dispatcher sends task events (`-E`, or Flower's
`enable_events`, which Flower repeats every few seconds), through a dispatcher of Celery's
events API with a broker connection of its own per thread: the consumer's dispatcher belongs to
the consumer's thread, and kombu connections are not shared between threads. An event that
cannot be sent (broker down) is dropped, never the batch, and for RETRY_AFTER_S no other is
tried: a connection attempt to a broker that is gone takes seconds, which batches must not wait.
The worker's consumer step (workers/consumers/bulk_consumer.py) gives the worker context one.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from workers.pipeline import BatchOutcome

log = logging.getLogger(__name__)

BATCH_TASK = "ha_ingestor.ingest_batch"
"""The name batches have in Flower (no such Celery task is registered: nothing runs it)."""
RETRY_AFTER_S = 30.0
"""After an event could not be sent, events are dropped without trying for this long."""


@dataclass(frozen=True)
class BatchTask:
    """One batch as a task in Flower."""

    id: str
    events: int
    began: float


def outcome_summary(outcome: BatchOutcome) -> dict[str, Any]:
    """What the task's result says: how each message of the batch ended; with several
    destinations also what each destination did with it (`destinations`: {name: written,
    backlogged, dead_lettered}), so Flower shows which one wrote and which one kept it."""
    summary: dict[str, Any] = {
        "written": outcome.written,
        "skipped": sum(outcome.skipped.values()),
        "dead_lettered": dict(outcome.dead_lettered),
        "handed_back": len(outcome.handed_back),
        "write_retries": outcome.retries,
    }
    if outcome.destinations:
        summary["destinations"] = {
            name: {
                "written": own.written,
                "backlogged": own.backlogged,
                "dead_lettered": dict(own.dead_lettered),
            }
            for name, own in outcome.destinations.items()
        }
    return summary


class BatchEvents:
    """Task events of the batches one worker process writes."""

    def __init__(self, consumer: Any) -> None:
        self._consumer = consumer
        self._local = threading.local()
        self._failing = False
        self._retry_at = 0.0

    def enabled(self) -> bool:
        """Whether the worker sends task events now (Celery's own test, on its dispatcher)."""
        dispatcher = getattr(self._consumer, "event_dispatcher", None)
        if dispatcher is None or not dispatcher.enabled:
            return False
        return not dispatcher.groups or "task" in dispatcher.groups

    def started(self, events: int) -> BatchTask | None:
        """A batch of `events` messages starts: received and started; None when events are off."""
        if not self.enabled():
            return None
        task = BatchTask(uuid.uuid4().hex, events, time.monotonic())
        fields = {"uuid": task.id, "name": BATCH_TASK, "args": "()"}
        self._send(
            "task-received",
            **fields,
            kwargs=repr({"events": events}),
            retries=0,
            eta=None,
            expires=None,
            root_id=task.id,
            parent_id=None,
        )
        self._send("task-started", uuid=task.id)
        return task

    def finished(self, task: BatchTask | None, outcome: BatchOutcome | None) -> None:
        """The batch ended: succeeded when every message finished, else failed."""
        if task is None:
            return
        runtime = time.monotonic() - task.began
        if outcome is None:
            self._send("task-failed", uuid=task.id, exception="the batch failed", traceback="")
            return
        summary = outcome_summary(outcome)
        if outcome.handed_back or "worker_error" in outcome.dead_lettered:
            why = (
                f"{len(outcome.handed_back)} of {task.events} events handed back to the broker "
                "unwritten (InfluxDB unavailable, or the worker stopping); "
                f"{outcome.written} written"
                if outcome.handed_back
                else "the batch failed unexpectedly: its events are dead letters (worker_error)"
            )
            self._send("task-failed", uuid=task.id, exception=why, traceback="", runtime=runtime)
        else:
            self._send("task-succeeded", uuid=task.id, result=repr(summary), runtime=runtime)

    def _send(self, type_: str, **fields: Any) -> None:
        if time.monotonic() < self._retry_at:
            return
        try:
            self._dispatcher().send(type_, **fields)
            self._failing = False
        except Exception as exc:  # noqa: BLE001 - a lost event must never fail the batch
            if not self._failing:
                log.warning(
                    "could not send a batch's task event to Flower (%s); dropping them for %g s",
                    exc,
                    RETRY_AFTER_S,
                )
            self._failing = True
            self._retry_at = time.monotonic() + RETRY_AFTER_S
            self._close_dispatcher()

    def _dispatcher(self) -> Any:
        dispatcher = getattr(self._local, "dispatcher", None)
        if dispatcher is None:
            app = self._consumer.app
            connection = app.connection_for_write()
            # One connection attempt, never kombu's retries: a broker that is gone must not
            # hold the batch (the events are dropped for a while instead).
            connection.transport_options = {
                **connection.transport_options,
                "max_retries": 1,
                "connect_retries_timeout": 2,
            }
            dispatcher = self._local.dispatcher = app.events.Dispatcher(
                connection,
                hostname=self._consumer.hostname,
                enabled=True,
                buffer_while_offline=False,  # a failure raises here, and is counted once
            )
        return dispatcher

    def _close_dispatcher(self) -> None:
        dispatcher = getattr(self._local, "dispatcher", None)
        self._local.dispatcher = None
        if dispatcher is not None:
            try:
                dispatcher.connection.close()
                dispatcher.close()
            except Exception as exc:  # noqa: BLE001 - closing a broken connection
                log.debug("closing the event dispatcher: %s", exc)
