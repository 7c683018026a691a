"""How task messages become broker messages: prepared once per event, published per batch.

On a Redis broker each message is encoded by core.task_message into the message `send_task`
would store (a few tens of µs instead of Celery's ~0.2-1 ms), and a whole batch goes out with
one LPUSH (WireBatches); the spool keeps those very bytes. Other brokers (RabbitMQ) publish
through kombu's pipelined batches, and their spool rows are the §3.1 message as JSON, what
kombu's `send_task` takes (KombuBatches). listener/handoff/publisher.py moves the batches.

A broker's batches have two item types: what `prepare` makes of a fresh message on the loop
(published by `publish`), and what a spool row holds (published by `publish_spooled`). The
publisher keeps them apart, so no item is ever inspected to learn which kind it is.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

import redis
from celery import Celery
from redis.backoff import NoBackoff
from redis.retry import Retry

from config.celery_app import (
    SUPPORTED_TRANSPORT_OPTIONS,
    broker_transport_options,
    create_app,
    supports,
)
from config.settings import Settings
from core import json_codec, task_message
from core.task_message import INGEST_TASK, StoredMessage, TaskBody

__all__ = ["SUPPORTED_TRANSPORT_OPTIONS", "supports"]

Message = dict[str, Any]
PublishBatch = Callable[[list[Message]], None]
Prepared = TypeVar("Prepared")
"""What a fresh message becomes on the event loop (WireBatches: its `TaskBody`)."""
Spooled = TypeVar("Spooled")
"""What a spool row becomes for publishing (WireBatches: the `StoredMessage` it holds)."""

BROKER_TIMEOUT_S = 5.0
"""How long a publish may wait on the broker before the batch goes to the spool instead
(LISTENER_BROKER_TIMEOUT)."""


@runtime_checkable
class BrokerBatches(Protocol[Prepared, Spooled]):
    """How messages become broker messages: prepared once per event, published per batch."""

    def prepare(self, message: Message) -> Prepared:
        """Called on the event loop for each event: do the per-event work here, once."""

    def publish(self, items: list[Prepared]) -> None:
        """Called on the publisher thread: put prepared items on the broker, in order."""

    def spool_body(self, item: Prepared) -> bytes:
        """What the spool keeps of a prepared item."""

    def from_spool(self, body: bytes) -> Spooled:
        """The item a spooled body holds (ValueError or TypeError: it does not decode)."""

    def publish_spooled(self, items: list[Spooled]) -> None:
        """Called on the publisher thread: put items read from the spool on the broker."""

    def from_legacy(self, message_json: str) -> bytes:
        """The spool body for a row of an older spool: the §3.1 message as JSON text."""


def celery_publisher(settings: Settings) -> BrokerBatches[Any, Any]:
    """Publish ordinary Celery task messages to CELERY_QUEUE, one broker round trip per batch.

    Redis brokers take the fast path (WireBatches), which needs no Celery app; anything else
    goes through kombu, with an app built for it.
    """
    broker_url = settings.celery_broker_url.get_secret_value()
    if supports(settings.broker_kind, broker_transport_options(settings)):
        return WireBatches(
            broker_url, settings.celery_queue, timeout=settings.listener_broker_timeout
        )
    return KombuBatches(create_app(settings), settings.celery_queue)


class WireBatches:
    """Messages built by core.task_message (body on the loop, wrap here); one LPUSH per batch.

    The spool holds the built messages themselves. A batch pushed again after an LPUSH whose
    reply was lost repeats task ids: a duplicate, which delivery at-least-once allows and
    idempotent points absorb.
    """

    def __init__(
        self, broker_url: str, queue_name: str, *, timeout: float = BROKER_TIMEOUT_S
    ) -> None:
        self._client = redis.Redis.from_url(
            broker_url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # One immediate retry covers a connection Redis closed while idle; longer outages
            # are the spool's business (a retry after an unanswered LPUSH may duplicate: fine,
            # delivery is at-least-once and points are idempotent).
            retry=Retry(NoBackoff(), 1),
        )
        self._queue = queue_name
        self._wire = task_message.TaskWire(
            INGEST_TASK, queue_name, origin=f"gen{os.getpid()}@{socket.gethostname()}"
        )
        # The loop only renders the JSON body; compressing it into the message happens on
        # the publisher thread (core.task_message.TaskWire.body).
        self.prepare: Callable[[Message], TaskBody] = self._wire.body

    def publish(self, items: list[TaskBody]) -> None:
        # LPUSH q a b c is LPUSH a; LPUSH b; LPUSH c: workers BRPOP the oldest first.
        wrap = self._wire.wrap
        self._client.lpush(self._queue, *[wrap(item) for item in items])

    def spool_body(self, item: TaskBody) -> bytes:
        return self._wire.wrap(item)

    def from_spool(self, body: bytes) -> StoredMessage:
        return StoredMessage(body)

    def publish_spooled(self, items: list[StoredMessage]) -> None:
        self._client.lpush(self._queue, *items)

    def from_legacy(self, message_json: str) -> bytes:
        return self._wire.encode(json_codec.loads(message_json))


class KombuBatches:
    """Celery's send_task into kombu's Producer.batch (pipelined on Redis, any broker).

    The spool holds the §3.1 message as JSON, the argument send_task takes: fresh and spooled
    items are the same message.
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
        return json_codec.dumps(item)

    def from_spool(self, body: bytes) -> Message:
        loaded: Message = json_codec.loads(body)
        return loaded

    def publish_spooled(self, items: list[Message]) -> None:
        self.publish(items)

    def from_legacy(self, message_json: str) -> bytes:
        return message_json.encode()


class CallableBatches(KombuBatches):
    """Any function publishing a list of messages (tests pass a failing one, for instance)."""

    def __init__(self, publish: PublishBatch) -> None:
        self._publish_fn = publish

    def publish(self, items: list[Message]) -> None:
        self._publish_fn(items)
