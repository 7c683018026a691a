"""Enqueue task messages again for the workers: the dead-letter replays, the workers' own after
an outage (AutoReplay) and `ha-ingestor dlq replay`'s, on one producer connection per call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import Celery

from core.task_message import INGEST_TASK


class TaskSender:
    """`send(messages)`: each message becomes one ingest task on the app's broker, in order;
    raises when the broker does not take them (the caller keeps its dead letters then)."""

    def __init__(self, app: Celery) -> None:
        self._app = app

    def __call__(self, messages: Sequence[Any]) -> None:
        app = self._app
        with app.producer_or_acquire() as producer:
            for message in messages:
                app.send_task(INGEST_TASK, args=[message], producer=producer)
