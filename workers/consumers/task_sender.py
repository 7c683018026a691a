"""Enqueue task messages again for the workers: the dead-letter replays, the workers' own after
an outage (AutoReplay) and `ha-ingestor dlq replay`'s, on one producer connection per call."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import Any

import redis
from celery import Celery

from config.celery_app import broker_transport_options, supports
from config.settings import Settings
from core.task_message import INGEST_TASK, TaskWire


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


class FrontSender:
    """Like TaskSender, but on a Redis broker the messages go where workers take next (the
    queue's right end), the first one first: AutoReplay's events are the oldest of an outage,
    and are written before what arrived after them. Other brokers have no such place: there
    they join the queue like any message."""

    def __init__(self, settings: Settings, app: Celery) -> None:
        self._fallback = TaskSender(app)
        url = settings.celery_broker_url.get_secret_value()
        self._client: redis.Redis | None = None
        if supports(settings.broker_kind, broker_transport_options(settings)):
            self._client = redis.Redis.from_url(
                url, socket_timeout=settings.redis_socket_timeout, socket_connect_timeout=5
            )
            self._queue = settings.celery_queue
            origin = f"replay{os.getpid()}@{socket.gethostname()}"
            self._wire = TaskWire(INGEST_TASK, settings.celery_queue, origin=origin)

    def __call__(self, messages: Sequence[Any]) -> None:
        if self._client is None:
            self._fallback(messages)
            return
        if messages:
            # Consumers take from the right: RPUSH the last first, so the first is rightmost.
            encode = self._wire.encode
            self._client.rpush(self._queue, *[encode(m) for m in reversed(messages)])
