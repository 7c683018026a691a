"""Celery task messages built directly in the form kombu's Redis transport stores them.

Why: `send_task` costs about 0.2-1 ms of CPU per message (argument repr, uuid4s, option
merging, two JSON passes), which caps a Python publisher at a few thousand messages/s; the
listener must outrun Home Assistant's peaks. A message here is one (orjson) dump of the task
arguments and a string template, and a whole batch goes to Redis as one LPUSH.

What it builds is what `app.send_task(name, args=[arg], queue=queue)` puts in the Redis list —
Celery's task protocol 2 inside kombu's envelope (base64 body, delivery_mode 2, priority 0, the
default exchange routing to `queue`), the same headers and properties, the body the same JSON
value written compactly in UTF-8 — and tests/integration/test_task_wire.py proves stock Celery
workers (a plain task and a celery-batches one) consume it. Only Redis brokers take this path;
others publish through kombu (listener.publisher.celery_publisher).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import socket
import uuid
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import orjson

REDIS_SCHEMES = frozenset(("redis", "rediss"))
"""Broker URL schemes whose queue is a plain Redis list this module can push to."""

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

_ARGSREPR_MAX = 200

# ASCII-only like Celery's own JSON: lone surrogates HA may send cannot break the encoding.
_dump_args = json.JSONEncoder(separators=(",", ":")).encode
_json_str = json.JSONEncoder(ensure_ascii=True).encode
_b64 = base64.b64encode
_BODY_TAIL = b'],{},{"callbacks":null,"errbacks":null,"chain":null,"chord":null}]'


def supports(broker_url: str, transport_options: Mapping[str, Any] | None = None) -> bool:
    """Whether messages for this broker can be built here (a Redis broker, plain options)."""
    if urlsplit(broker_url).scheme not in REDIS_SCHEMES:
        return False
    return set(transport_options or {}) <= SUPPORTED_TRANSPORT_OPTIONS


class TaskWire:
    """Encodes one task argument into the bytes kombu would LPUSH onto the queue's list."""

    def __init__(self, task: str, queue: str, *, origin: str | None = None) -> None:
        self.task = task
        self.queue = queue
        # Task ids and delivery tags are UUID-shaped: 80 random bits per process + a counter.
        self._id_base = uuid.uuid4().hex[:20]
        self._tag_base = uuid.uuid4().hex[:20]
        self._counter = itertools.count(1)
        origin = origin or f"gen{os.getpid()}@{socket.gethostname()}"
        # Everything but the per-message parts is rendered once. `%` placeholders would clash
        # with JSON braces, so the template is split around the variable parts.
        head = (
            '{"body":"',
            '","content-encoding":"utf-8","content-type":"application/json","headers":'
            '{"lang":"py","task":' + _json_str(task) + ',"id":"',
            '","shadow":null,"eta":null,"expires":null,"group":null,"group_index":null,'
            '"retries":0,"timelimit":[null,null],"root_id":"',
            '","parent_id":null,"argsrepr":',
            ',"kwargsrepr":"{}","origin":' + _json_str(origin) + ',"ignore_result":false,'
            '"replaced_task_nesting":0,"stamped_headers":null,"stamps":{}},"properties":'
            '{"correlation_id":"',
            '","reply_to":"","delivery_mode":2,"delivery_info":{"exchange":"","routing_key":'
            + _json_str(queue)
            + '},"priority":0,"body_encoding":"base64","delivery_tag":"',
            '"}}',
        )
        self._parts = head

    def _next_ids(self) -> tuple[str, str]:
        n = next(self._counter)
        suffix = f"{n & 0xFFFFFFFFFFFF:012x}"
        base, tag = self._id_base, self._tag_base
        task_id = f"{base[:8]}-{base[8:12]}-4{base[13:16]}-{base[16:20]}-{suffix}"
        delivery_tag = f"{tag[:8]}-{tag[8:12]}-4{tag[13:16]}-{tag[16:20]}-{suffix}"
        return task_id, delivery_tag

    def encode(self, arg: Any, argsrepr: str | None = None) -> bytes:
        """The stored message for a task called with the single positional argument `arg`."""
        return self._encode(dump_json(arg), summary(arg) if argsrepr is None else argsrepr)

    def encode_json(self, arg_json: str, argsrepr: str) -> bytes:
        """The same from the argument already serialised as JSON (a spooled message)."""
        return self._encode(arg_json.encode(), argsrepr)

    def _encode(self, arg_json: bytes, argsrepr: str) -> bytes:
        body = b"[[" + arg_json + _BODY_TAIL
        task_id, delivery_tag = self._next_ids()
        p = self._parts
        return "".join(
            (
                p[0],
                _b64(body).decode("ascii"),
                p[1],
                task_id,
                p[2],
                task_id,
                p[3],
                _json_str(argsrepr[:_ARGSREPR_MAX]),
                p[4],
                task_id,
                p[5],
                delivery_tag,
                p[6],
            )
        ).encode("ascii")

    def encode_many(self, args: Iterable[Any]) -> list[bytes]:
        encode = self.encode
        return [encode(arg) for arg in args]


def dump_json(arg: Any) -> bytes:
    """The argument as UTF-8 JSON: orjson (5x faster than json), json where orjson refuses.

    orjson refuses what HA's JSON can still carry into a dict: lone surrogates (`"\\ud800"`)
    and integers beyond 64 bits; the standard library escapes those. One difference is
    accepted: orjson writes NaN and infinities as null, which the worker drops anyway (it
    never writes non-finite numbers, DESIGN §3.2).
    """
    try:
        return orjson.dumps(arg)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return _dump_args(arg).encode("ascii")


def argument_json(stored: bytes) -> str:
    """The task argument's JSON inside a message built by TaskWire (to spool it as such)."""
    start = stored.index(b'"body":"') + 8
    body = base64.b64decode(stored[start : stored.index(b'"', start)])
    if not (body.startswith(b"[[") and body.endswith(_BODY_TAIL)):
        raise ValueError("not a message built by TaskWire")
    return body[2 : -len(_BODY_TAIL)].decode()


def summary(arg: Any) -> str:
    """A short, secret-free stand-in for the arguments (what Flower shows as `args`)."""
    if not isinstance(arg, Mapping):
        return f"({type(arg).__name__},)"
    event = arg.get("event")
    entity_id = None
    event_type = None
    if isinstance(event, Mapping):
        event_type = event.get("event_type")
        data = event.get("data")
        if isinstance(data, Mapping):
            entity_id = data.get("entity_id")
    return (
        f"({{'seq': {arg.get('seq')!r}, 'source': {arg.get('source')!r}, "
        f"'event_type': {event_type!r}, 'entity_id': {entity_id!r}}},)"
    )
