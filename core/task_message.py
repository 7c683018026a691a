"""The task message (DESIGN §3.1) and its broker envelope, both directions, in one place.

The contract: one Celery task per HA event, its single argument
`{"event", "received_at", "source", "seq"}` (`TaskMessage`, `parse_message`). The envelope: the
bytes kombu's Redis transport stores for `app.send_task(INGEST_TASK, args=[arg], queue=queue)`,
built directly (`TaskWire`) and read back (`received_at_of`). The listener, the workers and beat
import this module, so the shape is written down exactly once.

Why build the envelope here: `send_task` costs about 0.2-1 ms of CPU per message (argument repr,
uuid4s, option merging, two JSON passes), which caps a Python publisher at a few thousand
messages/s; the listener must outrun Home Assistant's peaks. A message here is one (orjson) dump
of the task argument and a string template. It is Celery's task protocol 2 inside kombu's
envelope (base64 body, delivery_mode 2, priority 0, the default exchange routing to `queue`),
with the same headers and properties and the body the same JSON value written compactly in UTF-8;
tests/integration/test_task_wire.py proves stock Celery workers (a plain task and a
celery-batches one) consume it. Only Redis brokers take this path (listener/publisher.py decides),
and a message is encoded once: the listener's spool keeps these bytes as they are.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

import orjson

from core.ha_event import entity_id_of

INGEST_TASK = "ha_ingestor.ingest_event"
"""Task name the listener sends to; the worker registers the task under this name."""

Source = Literal["live", "snapshot", "backfill", "replay"]
SOURCES: frozenset[str] = frozenset(("live", "snapshot", "backfill", "replay"))


class InvalidMessage(ValueError):
    """A task message that does not follow the contract; it is dead-lettered with this text."""


@dataclass(frozen=True, slots=True)
class TaskMessage:
    """One HA event as the listener received it, with where and when it came from."""

    event: Mapping[str, Any]
    received_at: float
    source: Source
    seq: int

    def to_json(self) -> dict[str, Any]:
        """The JSON-serialisable task argument."""
        return {
            "event": self.event,
            "received_at": self.received_at,
            "source": self.source,
            "seq": self.seq,
        }


def parse_message(raw: Any) -> TaskMessage:
    """Validate a task argument, or raise InvalidMessage saying what is wrong."""
    if not isinstance(raw, Mapping):
        raise InvalidMessage(f"task argument is a {type(raw).__name__}, not an object")
    event = raw.get("event")
    if not isinstance(event, Mapping):
        raise InvalidMessage("'event' is missing or not an object")
    received_at = raw.get("received_at")
    if isinstance(received_at, bool) or not isinstance(received_at, int | float):
        raise InvalidMessage("'received_at' is missing or not a number")
    source = raw.get("source")
    if source not in SOURCES:
        raise InvalidMessage(f"'source' is {source!r}, not one of {sorted(SOURCES)}")
    seq = raw.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int):
        raise InvalidMessage("'seq' is missing or not an integer")
    return TaskMessage(event, float(received_at), cast(Source, source), seq)


# --- the broker envelope --------------------------------------------------------------------

_ARGSREPR_MAX = 200

# ASCII-only like Celery's own JSON: lone surrogates HA may send cannot break the encoding.
_dump_args = json.JSONEncoder(separators=(",", ":")).encode
_json_str = json.JSONEncoder(ensure_ascii=True).encode
_b64 = base64.b64encode
_BODY_TAIL = b'],{},{"callbacks":null,"errbacks":null,"chain":null,"chord":null}]'


class TaskWire:
    """Encodes one task argument into the bytes kombu would LPUSH onto the queue's list."""

    def __init__(self, task: str, queue: str, *, origin: str) -> None:
        """`origin` names the sender as Celery does (`gen<pid>@<host>`), given by the caller."""
        self.task = task
        self.queue = queue
        # Task ids and delivery tags are UUID-shaped: 80 random bits per process + a counter.
        self._id_base = uuid.uuid4().hex[:20]
        self._tag_base = uuid.uuid4().hex[:20]
        self._counter = itertools.count(1)
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

    def encode(self, arg: Any) -> bytes:
        """The stored message for a task called with the single positional argument `arg`."""
        body = b"[[" + dump_json(arg) + _BODY_TAIL
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
                _json_str(summary(arg)[:_ARGSREPR_MAX]),
                p[4],
                task_id,
                p[5],
                delivery_tag,
                p[6],
            )
        ).encode("ascii")


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


def summary(arg: Any) -> str:
    """A short, secret-free stand-in for the arguments (what Flower shows as `args`)."""
    if not isinstance(arg, Mapping):
        return f"({type(arg).__name__},)"
    event = arg.get("event")
    event_type = event.get("event_type") if isinstance(event, Mapping) else None
    return (
        f"({{'seq': {arg.get('seq')!r}, 'source': {arg.get('source')!r}, "
        f"'event_type': {event_type!r}, 'entity_id': {entity_id_of(event)!r}}},)"
    )


def received_at_of(raw: bytes | str | None) -> float | None:
    """`received_at` of the event in a Celery message as kombu stores it in Redis."""
    if raw is None:
        return None
    try:
        message = json.loads(raw)
        if isinstance(message, list):  # an unacked entry: [message, exchange, routing_key]
            message = message[0]
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return float(args[0]["received_at"])
    except (ValueError, KeyError, IndexError, TypeError, binascii.Error):
        return None
