"""Where `ha-ingestor import` puts its messages, and how full that is (its back-pressure).

The messages are ordinary task messages published the listener's way
(listener/handoff/broker_batches.py: one LPUSH per batch on Redis, kombu's batches elsewhere);
the depth is read from the broker itself (LLEN on Redis, a passive queue declare on
RabbitMQ), so the import publishes only while fewer than IMPORT_MAX_QUEUE messages wait.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.connection import Connection

from config.broker_kind import BrokerKind
from config.settings import Settings
from listener.handoff.broker_batches import celery_publisher


class ImportBroker:
    """Publishes batches of task messages and reads the queue's depth (blocking calls)."""

    def __init__(self, settings: Settings) -> None:
        self._url = settings.celery_broker_url.get_secret_value()
        self._queue = settings.celery_queue
        self._batches = celery_publisher(settings)
        self._redis = (
            redis.Redis.from_url(self._url, socket_timeout=10)
            if settings.broker_kind is BrokerKind.REDIS
            else None
        )

    def publish(self, messages: list[dict[str, Any]]) -> None:
        prepare = self._batches.prepare
        self._batches.publish([prepare(message) for message in messages])

    def depth(self) -> int:
        """Messages waiting in the ingest queue (taken ones not counted)."""
        if self._redis is not None:
            return int(self._redis.llen(self._queue))
        with Connection(self._url, connect_timeout=5) as connection:  # type: ignore[no-untyped-call]
            _, depth, _ = connection.default_channel.queue_declare(queue=self._queue, passive=True)
        return int(depth)

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
