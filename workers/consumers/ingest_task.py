"""The ingest task: a thin adapter from broker messages to the pipeline (STYLE rule 3).

`ingest_event` is a celery-batches task: Celery delivers one message per HA event, and the
worker hands them over in batches (up to BATCH_SIZE, or whatever arrived within
BATCH_INTERVAL). A message is acknowledged only after its batch returns, that is after its
point was written or dead-lettered. Messages the pipeline hands back (worker stopping, or
InfluxDB unavailable for the hold limit) are rejected with requeue: the broker keeps them, at
the back of the queue, and no copy is made.

With WORKER_BULK_TAKE=false this task is the way in, on Celery's stock consumer and transport;
by default the bulk takers (workers/consumers/bulk_consumer.py) take the queue instead, and a
stock worker with this task registered still reads the same messages. Either way the argument
is decoded by the one decoder (core/task_message.py decode_task): what is not an ingest task
argument becomes a dead letter with the reason.

A shared task: it registers on whichever app the worker runs (config/celery_app.py names this
module), and needs none at import. What it writes with is built at worker start and carried by
the app (workers/worker_start.py, workers/worker_context.py `context_of`).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from celery import shared_task
from celery_batches import Batches, SimpleRequest
from celery_batches.trace import apply_batches_task

from core.task_message import INGEST_TASK, TaskArgument, Undecodable, decode_task
from workers.worker_context import context_of


class IngestBatches(Batches):  # type: ignore[misc]
    """celery-batches with two changes.

    - A batch may give messages back instead of acknowledging them: the task returns the ids
      of the requests to requeue; every other request is acknowledged. Anything else coming
      back (the pool lost the batch) requeues the whole batch: a message is never acknowledged
      unless its batch said it was done.
    - The periodic flush survives a broker reconnect. Celery restarts its consumer then, which
      clears the consumer's timer and the flush with it, while celery-batches still believes
      its timer runs: a partial batch (a lone event) would wait until BATCH_SIZE more arrived.
    """

    _tref: Any
    _buffer: Any

    def Strategy(self, task: Any, app: Any, consumer: Any) -> Any:
        """Called on every consumer (re)start: arm the flush on the new consumer's timer."""
        if self._tref is not None:
            self._tref.cancel()
            self._tref = None
        strategy = super().Strategy(task, app, consumer)
        if not self._buffer.empty():  # requests taken before the reconnect: flush them too
            self._tref = consumer.timer.call_repeatedly(self.flush_interval, self._do_flush)
        return strategy

    def flush(self, requests: Collection[Any]) -> Any:
        serializable = ([SimpleRequest.from_request(r) for r in requests],)

        def on_return(result: Any) -> None:
            requeue = _requeue_ids(result)
            for request in requests:
                if requeue is None or request.id in requeue:
                    request.reject(requeue=True)
                else:
                    request.acknowledge()

        return self._pool.apply_async(
            apply_batches_task, (self, serializable, 0, None), callback=on_return
        )


def _requeue_ids(result: Any) -> set[str] | None:
    if isinstance(result, dict) and isinstance(result.get("requeue"), list):
        return set(result["requeue"])
    return None


def task_argument(request: SimpleRequest) -> TaskArgument | Undecodable:
    """The request's argument, by the decoder of every way in (Celery decoded the body:
    `[args, kwargs, embed]`)."""
    return decode_task(request.name, [list(request.args or ()), request.kwargs or {}, {}])


@shared_task(base=IngestBatches, name=INGEST_TASK, acks_late=True, ignore_result=True, bind=True)
def ingest_event(task: IngestBatches, requests: list[SimpleRequest]) -> dict[str, list[str]]:
    """Write a batch of HA events to InfluxDB; returns the ids of requests to requeue."""
    context = context_of(task.app).current()
    # After a hand-back, pause before this batch (the previous one is requeued by now), so a
    # batch InfluxDB refuses is not taken and handed back in a tight loop.
    context.pause_after_hand_back()
    outcome = context.ingest([task_argument(request) for request in requests])
    return {"requeue": [requests[i].id for i in outcome.handed_back]}
