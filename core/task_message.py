"""The task message (DESIGN §3.1) and its broker envelope, both directions, in one place.

The contract: one Celery task per HA event, its single argument `{"event", "received_at",
"source", "seq"}`, the home it came from (`instance`, optional) and, from `ha-ingestor import`,
`run` (`TaskMessage`, `parse_message`). The envelope: the bytes kombu's Redis transport stores
for `app.send_task(INGEST_TASK, args=[arg], queue=queue)`, built directly (`TaskWire`) and read
back (`decode_task`, the one decoder of every way into the workers, which returns the task's
argument or `Undecodable` with the reason; `decode_stored` opens kombu's Redis envelope for it;
`received_at_of` serves beat). The listener, the workers and beat import this module, so the
shape is written down exactly once.

Why build the envelope here: `send_task` costs about 0.2-1 ms of CPU per message (argument repr,
uuid4s, option merging, two JSON passes), which caps a Python publisher at a few thousand
messages/s; the listener must outrun Home Assistant's peaks. A message here is one (orjson) dump
of the task argument, zlib and a string template. It is Celery's task protocol 2 inside kombu's
envelope (base64 body, the default exchange routing to `queue`), the body the JSON value
send_task writes, compressed as `compression="zlib"` does, and only the headers and properties
a worker needs (TaskWire says which, and why: Redis memory per waiting event);
tests/integration/listener/handoff/test_task_wire.py proves stock Celery workers (a plain task and a
celery-batches one) consume it. Only Redis brokers take this path (listener/handoff/publisher.py
decides), and a message is encoded once: the listener's spool keeps these bytes as they are.
The two stages have their own types, `TaskBody` (rendered on the listener's loop) and
`StoredMessage` (what Redis holds), so nothing ever guesses which of the two it was given.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import uuid
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NewType, cast, get_args

from core import json_codec
from core.home_name import WHAT_IS_VALID, is_home_name

INGEST_TASK = "ha_ingestor.ingest_event"
"""Task name the listener sends to; the worker registers the task under this name."""

Source = Literal["live", "snapshot", "backfill", "import", "replay", "heartbeat"]
SOURCES: frozenset[str] = frozenset(get_args(Source))
"""`heartbeat`: a quiet entity's last state sent again (core/state_heartbeat.py); its point
takes the event's `time_fired` and the `heartbeat` tag. Workers must know it before a
listener sends it: a worker that does not dead-letters the message as invalid."""


class InvalidMessage(ValueError):
    """A task message that does not follow the contract; it is dead-lettered with this text."""


@dataclass(frozen=True, slots=True)
class TaskMessage:
    """One HA event as the listener received it, with where and when it came from."""

    event: Mapping[str, Any]
    received_at: float
    source: Source
    seq: int
    run: str | None = None
    """The `ha-ingestor import` run a message belongs to (then `seq` numbers it within the
    run from 0): workers count what became of it per run. Optional, so older messages and
    older workers carry on as before."""
    instance: str | None = None
    """The home (HA_INSTANCE) whose listener sent it: workers enrich it from that home's
    registries and, with INSTANCE_TAG, tag its point. Optional: a message of an older listener
    has none and is enriched from the prefix-level registries, as before."""

    def to_json(self) -> dict[str, Any]:
        """The JSON-serialisable task argument."""
        arg: dict[str, Any] = {
            "event": self.event,
            "received_at": self.received_at,
            "source": self.source,
            "seq": self.seq,
        }
        if self.run is not None:
            arg["run"] = self.run
        if self.instance is not None:
            arg["instance"] = self.instance
        return arg


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
    run = raw.get("run")
    if run is not None and not isinstance(run, str):
        raise InvalidMessage("'run' is not a string")
    instance = raw.get("instance")
    if instance is not None and not (isinstance(instance, str) and is_home_name(instance)):
        raise InvalidMessage(f"'instance' is {instance!r}, not a home name ({WHAT_IS_VALID})")
    return TaskMessage(event, float(received_at), cast(Source, source), seq, run, instance)


# --- the broker envelope --------------------------------------------------------------------

ZLIB = "zlib"
"""The `compression` header of a zlib body: kombu's documented alias of `application/x-gzip`
(what Celery's `compression="zlib"` writes), which every kombu decompresses."""
_ZLIB_LEVEL = 6
_ZLIB_WBITS = 12
_ZLIB_MEMLEVEL = 6
"""Small-state deflate: a message is one ~1 kB body, so a 4 kB window and a small hash table
lose nothing of the ratio (414 bytes, as level 9 with zlib's defaults) while zlib's default
state (a 32 kB window, ~256 kB allocated and zeroed per call) was most of the cost: 17 µs per
event instead of 30 (fixture events). Level 1 would save 2 µs more but cost 17 bytes
(23 in Redis) per event, which the 1 kB budget cannot spare (960 bytes per waiting event at
level 1). Any zlib stream decompresses with kombu's plain `zlib.decompress`, whatever window
it was written with."""
_compressobj = zlib.compressobj
_DEFLATED = zlib.DEFLATED

# The standard library: the envelope's template is ASCII, and json_codec writes UTF-8.
_json_str = json.JSONEncoder(ensure_ascii=True).encode
_b64 = base64.b64encode
_BODY_TAIL = b'],{},{"callbacks":null,"errbacks":null,"chain":null,"chord":null}]'

TaskBody = NewType("TaskBody", bytes)
"""A task's JSON body `[[arg],{},{embed}]`, uncompressed: the one serialisation of an event,
rendered on the listener's loop (`TaskWire.body`), made a `StoredMessage` on its publisher
thread (`TaskWire.wrap`)."""

StoredMessage = NewType("StoredMessage", bytes)
"""A whole message as kombu's Redis transport stores it: what LPUSH takes, the listener's
spool keeps, and workers read back (`decode_stored`)."""


class TaskWire:
    """Encodes one task argument into the bytes kombu would LPUSH onto the queue's list.

    Lean and compressed, so a waiting event costs Redis well under 1 kB: the body is
    zlib-compressed with kombu's documented `compression` header (`application/x-gzip`, what
    `send_task(..., compression="zlib")` writes; every stock worker decompresses it), and the
    headers are the ones a protocol-2 worker needs (`task`, `id`); Celery and kombu read every
    other header and property with a default (None, 0, "", priority 0). So a stock worker's
    task events show no `args` (no `argsrepr`): 50 bytes per waiting event saved.
    `compress=False` writes the body uncompressed (for tests and comparisons).
    """

    def __init__(self, task: str, queue: str, *, origin: str, compress: bool = True) -> None:
        """`origin` names the sender as Celery does (`gen<pid>@<host>`); kept for the caller's
        logs, not sent (Celery's `origin` header is optional and costs Redis memory)."""
        self.origin = origin
        self.task = task
        self.queue = queue
        self.compress = compress
        # Task ids are UUID-shaped, delivery tags shorter: random bits per process + a counter.
        self._id_base = uuid.uuid4().hex[:20]
        self._tag_base = uuid.uuid4().hex[:20]
        self._counter = itertools.count(1)
        compression = ',"compression":"' + ZLIB + '"' if compress else ""
        base, tag = self._id_base, self._tag_base
        # Everything but the per-message parts (the body, the counter in the ids) is rendered
        # once, as bytes: a message is one join. `%` placeholders would clash with JSON
        # braces, so the template is split around the variable parts.
        self._parts = tuple(
            part.encode("ascii")
            for part in (
                '{"body":"',
                '","content-encoding":"utf-8","content-type":"application/json","headers":'
                '{"task":' + _json_str(task) + compression + ',"id":"'
                f"{base[:8]}-{base[8:12]}-4{base[13:16]}-{base[16:20]}-",
                '"},"properties":{"delivery_info":{"exchange":"","routing_key":'
                + _json_str(queue)
                + '},"body_encoding":"base64","delivery_tag":"'
                + tag[:12],  # any unique string: kombu only keys on it
                '"}}',
            )
        )

    def _next_suffix(self) -> bytes:
        """What makes the next task id and delivery tag unique: a counter, as 12 hex digits."""
        return b"%012x" % (next(self._counter) & 0xFFFFFFFFFFFF)

    def encode(self, arg: Any) -> StoredMessage:
        """The stored message for a task called with the single positional argument `arg`."""
        return self.wrap(self.body(arg))

    def body(self, arg: Any) -> TaskBody:
        """The first, cheap half of `encode` (a few µs): the task's JSON body, uncompressed.

        The listener calls it on the event loop and `wrap` on its publisher thread: zlib
        releases the GIL around every call, so compressing on the loop cost a GIL hand-over
        per event (51 µs of listener CPU per event instead of 21, measured)."""
        return TaskBody(b"[[" + json_codec.dumps(arg) + _BODY_TAIL)

    def wrap(self, body: TaskBody) -> StoredMessage:
        """The second half of `encode`: the stored message around a `body`, compressed."""
        data: bytes = body
        if self.compress:
            deflate = _compressobj(_ZLIB_LEVEL, _DEFLATED, _ZLIB_WBITS, _ZLIB_MEMLEVEL)
            data = deflate.compress(body) + deflate.flush()
        suffix = self._next_suffix()
        p = self._parts
        return StoredMessage(b"".join((p[0], _b64(data), p[1], suffix, p[2], suffix, p[3])))


# --- decoding what a worker took ------------------------------------------------------------

JSON_CONTENT_TYPE = "application/json"
ZLIB_HEADERS = frozenset((ZLIB, "application/x-gzip", "gzip"))
"""`compression` headers of a zlib body, as kombu and Celery write them."""
EXCERPT_BYTES = 2000
"""How much of an undecodable message its dead letter keeps: a whole task message (about 1 kB
compressed, so another task's message can be sent where it belongs), not a flood of garbage."""

_TEXT = (bytes, str)
_LISTS = (list, tuple)

TaskArgument = Any
"""The ingest task's one argument as it travelled (a JSON value; parse_message checks it)."""


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A message a worker took that carries no ingest task argument.

    The pipeline dead-letters it with `reason` as the letter's error: a person reading the
    dead letter learns what was wrong with the message itself ("not JSON: ...", "a 'x' task in
    the ingest queue"), not that some text was no HA event."""

    reason: str
    excerpt: str
    """The start of the message as it was taken (repr), kept as the dead letter's message."""


def decode_task(
    task: object,
    body: bytes | str | Sequence[Any],
    *,
    compression: str | None = None,
    content_type: str | None = None,
    whole: bytes | str | None = None,
) -> TaskArgument | Undecodable:
    """The ingest task's argument of one delivered task message, or Undecodable saying why not.

    The one decoder of every way in: the Redis bulk taker (through `decode_stored`), the
    RabbitMQ bulk taker (a delivery's headers and body) and Celery's task (whose body Celery
    decoded already: `[args, kwargs, embed]`). Never raises: what cannot be read is a dead
    letter, not an error that would stop a batch. `whole` is the message as taken, for the
    excerpt (the body by default).
    """
    if task != INGEST_TASK:
        return _undecodable(f"a {task!r} task in the ingest queue", whole or body)
    if content_type not in (None, JSON_CONTENT_TYPE):
        return _undecodable(
            f"a {content_type!r} body, and workers read only {JSON_CONTENT_TYPE}", whole or body
        )
    try:
        return _first_argument(body, compression)
    except _Unreadable as exc:
        return _undecodable(str(exc), whole or body)


def decode_stored(raw: bytes | str) -> TaskArgument | Undecodable:
    """A message as kombu's Redis transport stores it (Celery's task protocol 2 in kombu's JSON
    envelope, base64 body, any compression kombu writes by default): its envelope opened, then
    `decode_task`."""
    try:
        message = json_codec.loads(raw)
    except ValueError as exc:
        return _undecodable(f"not JSON: {exc}", raw)
    try:
        headers, body = _open_envelope(message)
    except _Unreadable as exc:
        return _undecodable(str(exc), raw)
    if "task" not in headers:
        return _undecodable("not a Celery task message (no task header)", raw)
    return decode_task(
        headers["task"],
        body,
        compression=headers.get("compression"),
        content_type=message.get("content-type"),
        whole=raw,
    )


def received_at_of(raw: bytes | str | None) -> float | None:
    """`received_at` of the event in a Celery message as kombu stores it in Redis (also as an
    unacknowledged entry: `[message, exchange, routing_key]`), whatever its task: beat only
    wants the age of what waits. None when there is none."""
    if raw is None:
        return None
    try:
        message = json_codec.loads(raw)
        if isinstance(message, list) and message:
            message = message[0]
        headers, body = _open_envelope(message)
        arg = _first_argument(body, headers.get("compression"))
        return float(arg["received_at"])
    except (ValueError, KeyError, TypeError):  # _Unreadable is a ValueError
        return None


class _Unreadable(ValueError):
    """What makes a message unreadable, in words for its dead letter."""


def _open_envelope(message: Any) -> tuple[Mapping[str, Any], bytes | str]:
    """(headers, body) of kombu's envelope, base64 undone; _Unreadable saying what is wrong."""
    try:
        headers = message.get("headers") or {}
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = binascii.a2b_base64(body)  # base64.b64decode, without its wrapper's cost
    except (KeyError, IndexError, TypeError, AttributeError, binascii.Error, ValueError) as exc:
        raise _Unreadable(f"not a Celery task message ({type(exc).__name__}: {exc})") from None
    if not isinstance(headers, Mapping) or not isinstance(body, _TEXT):
        raise _Unreadable("not a Celery task message (headers or body of the wrong type)")
    return headers, body


def _first_argument(body: bytes | str | Sequence[Any], compression: str | None) -> Any:
    """The first positional argument of a protocol-2 body (`[args, kwargs, embed]`), as sent
    (uncompressed, JSON) or already decoded; _Unreadable saying why there is none."""
    decoded: Any = body
    if isinstance(body, _TEXT):
        try:
            decoded = json_codec.loads(_decompressed(body, compression))
        except _Unreadable:
            raise
        except ValueError as exc:
            raise _Unreadable(f"its body is not JSON: {exc}") from None
    if type(decoded) in _LISTS and decoded and type(args := decoded[0]) in _LISTS and args:
        return args[0]
    raise _Unreadable(
        "not a Celery protocol-2 task body with one argument ([[argument], {}, {...}])"
    )


def _decompressed(body: bytes | str, compression: str | None) -> bytes | str:
    if compression is None:
        return body
    if compression not in ZLIB_HEADERS:
        raise _Unreadable(f"compressed with {compression!r}, which workers do not read")
    try:
        return zlib.decompress(body if isinstance(body, bytes) else body.encode("latin-1"))
    except (zlib.error, UnicodeEncodeError) as exc:
        raise _Unreadable(f"its body is not {compression} data as its header says: {exc}") from None


def _undecodable(reason: str, raw: object) -> Undecodable:
    if isinstance(raw, bytes | str):
        return Undecodable(reason, repr(raw[:EXCERPT_BYTES]))
    return Undecodable(reason, repr(raw)[:EXCERPT_BYTES])
