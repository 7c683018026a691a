"""What the listener reports about itself: ONE record whose fields define every view of it.

`ListenerFigures` is the one list of the listener's figures. Its fields define, with no second
list of names anywhere:

- the JSON document the listener writes to Redis every 2 s under the listener-state key
  (config/redis_keys.py; its TTL makes a missing key mean a dead listener) — one key per field,
  read back by beat and `ha-ingestor status` through readers chosen from the fields' types;
- the listener's part of the health report (core/health_report.py): each field lands in the
  section and under the key its `Figure` names;
- the listener's Prometheus metrics (listener/health/server.py): each field's `Figure` names its
  metric, or says why it has none;
- the live figures the listener's threads update (listener/health/stats.py): `ListenerStats`
  is a subclass of this record, so mypy checks every counter's name and type there too.

That is why the record is a mutable, slotted dataclass: the live figures are one of its
instances, counted in place, and a {name: count} field is a `Counter` so that `+= 1` on a new
name counts from zero. Everything else treats a record as a value: `ListenerStats.snapshot`
copies the live figures into a new one, and no reader changes it. Adding a counter is one field
here, with its `Figure`, plus the code that counts it.

Reading back: `from_json` checks the type of every field and gives None for a missing or
garbled document, so no reader needs a special case. Fields it does not know are ignored (a
newer listener may write more); a field missing from the document takes its default, unless
every listener version wrote it (`in_every_document`): then the document is not a listener's.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import MISSING, Field, dataclass, field, fields
from types import NoneType, UnionType
from typing import Any, Literal, NamedTuple, TypeVar, get_args, get_origin, get_type_hints

from core import json_codec

T = TypeVar("T")
Section = Literal["connection", "subscription", "listener"]
MetricKind = Literal["counter", "gauge"]


@dataclass(frozen=True)
class Metric:
    """How a figure appears on /metrics; the server adds the `ha_ingestor_` prefix (and a
    counter's `_total`)."""

    name: str
    kind: MetricKind
    label: str | None = None
    """For a {name: count} figure: the label its names become, one series each."""


def counter(name: str, label: str | None = None) -> Metric:
    return Metric(name, "counter", label)


def gauge(name: str) -> Metric:
    return Metric(name, "gauge")


@dataclass(frozen=True)
class Figure:
    """Where one field of `ListenerFigures` goes besides Redis: its report key and its metric."""

    help: str
    """What it is: the field's documentation and its metric's help text."""
    section: Section = "listener"
    key: str = ""
    """Its name in the report's section when that is not the field's name (a public name)."""
    metric: Metric | None = None
    unmetered: str = ""
    """Why it has no metric: every figure has a metric or says why not."""
    in_every_document: bool = False
    """Written by every listener version: a document without it is not a listener's."""
    rounded: bool = False
    """Shown to the millisecond in the report (a measured duration)."""

    def __post_init__(self) -> None:
        if (self.metric is None) == (not self.unmetered):
            raise ValueError(f"{self.help!r}: give a figure either a metric or why it has none")


def figure(help: str, **where: Any) -> dict[str, Figure]:
    """A field's metadata: `field(default=…, metadata=figure("what it is", metric=…))`."""
    return {"figure": Figure(help, **where)}


@dataclass(slots=True, kw_only=True)
class ListenerFigures:
    """What one listener process reported about itself at `reported_at` (its clock).

    Defaults are what a listener that has just started reports. Mutable only so that the live
    figures (listener/health/stats.py) can be one: a record read or snapshotted is not changed.
    """

    # --- its connection to HA: the report's `connection` section --------------------------
    connection_state: str = field(
        default="starting",
        metadata=figure(
            "starting, connecting, authenticating, authenticated, subscribed, backing_off, "
            "auth_invalid or stopped",
            section="connection",
            key="state",
            unmetered="a text: ha_subscribed and the health checks say what it means",
            in_every_document=True,
        ),
    )
    ha_version: str = field(
        default="",
        metadata=figure(
            "HA's version, as HA announced it",
            section="connection",
            unmetered="a text",
            in_every_document=True,
        ),
    )
    connect_attempts: int = field(
        default=0,
        metadata=figure(
            "Connection attempts to HA",
            section="connection",
            key="attempts",
            metric=counter("ha_connection_attempts"),
            in_every_document=True,
        ),
    )
    connects_ok: int = field(
        default=0,
        metadata=figure(
            "Connections to HA that authenticated",
            section="connection",
            key="successful",
            metric=counter("ha_connections_successful"),
            in_every_document=True,
        ),
    )
    connects_failed: int = field(
        default=0,
        metadata=figure(
            "Connection attempts that never authenticated",
            section="connection",
            key="failed",
            metric=counter("ha_connections_failed"),
            in_every_document=True,
        ),
    )
    reconnects: int = field(
        default=0,
        metadata=figure(
            "Reconnects to HA since start",
            section="connection",
            metric=counter("ha_reconnects"),
            in_every_document=True,
        ),
    )
    last_error: str = field(
        default="",
        metadata=figure(
            'Text of the last connection error, "" if none (secrets scrubbed)',
            section="connection",
            unmetered="a free text: a series per message would say nothing",
            in_every_document=True,
        ),
    )

    # --- its subscription: the report's `subscription` section ----------------------------
    subscriptions: dict[str, int] = field(
        default_factory=dict,
        metadata=figure(
            "Subscribed event type → the id of its subscription (as in a frame trace)",
            section="subscription",
            key="subscription_ids",
            unmetered="its count is ha_active_subscriptions",
            in_every_document=True,
        ),
    )
    events_received: int = field(
        default=0,
        metadata=figure(
            "Live events received from HA since start",
            section="subscription",
            key="total_events_received",
            unmetered="the sum of events_received_total by event type",
            in_every_document=True,
        ),
    )
    events_by_type: Counter[str] = field(
        default_factory=Counter,
        metadata=figure(
            "Live events received from HA, by event type",
            section="subscription",
            metric=counter("events_received", label="event_type"),
            in_every_document=True,
        ),
    )
    last_event_at: float | None = field(
        default=None,
        metadata=figure(
            "Unix time of the last event",
            section="subscription",
            key="last_event_time",
            metric=gauge("last_event_timestamp_seconds"),
            in_every_document=True,
        ),
    )

    # --- the listener itself: the report's `listener` section -----------------------------
    started_at: float = field(
        metadata=figure(
            "Unix time the listener started",
            metric=gauge("listener_start_time_seconds"),
            in_every_document=True,
        )
    )
    reported_at: float = field(
        metadata=figure(
            "Unix time of this report, by the listener's clock",
            unmetered="/metrics serves the live figures: they are always as of the scrape",
            in_every_document=True,
        )
    )
    instance: str | None = field(
        default=None,
        metadata=figure(
            "The home this listener reports for (HA_INSTANCE, or its name kept in DATA_DIR; "
            "`unnamed-<host>-<pid>` before its first login names it): its Redis keys are that "
            "home's",
            unmetered="a name: every series of the listener's /metrics carries it as the "
            "`instance` label",
        ),
    )
    events_enqueued: int = field(
        default=0,
        metadata=figure(
            "Events published to the broker",
            metric=counter("listener_events_enqueued"),
            in_every_document=True,
        ),
    )
    events_spooled: int = field(
        default=0,
        metadata=figure(
            "Events written to the local spool",
            metric=counter("listener_events_spooled"),
            in_every_document=True,
        ),
    )
    events_drained: int = field(
        default=0,
        metadata=figure(
            "Events moved from the spool to the broker",
            metric=counter("listener_events_drained"),
            in_every_document=True,
        ),
    )
    publish_errors: int = field(
        default=0,
        metadata=figure(
            "Failed publish attempts",
            metric=counter("listener_publish_errors"),
            in_every_document=True,
        ),
    )
    malformed_frames: int = field(
        default=0,
        metadata=figure(
            "Frames from HA that could not be read",
            metric=counter("listener_malformed_frames"),
            in_every_document=True,
        ),
    )
    broker_up: bool = field(
        default=True,
        metadata=figure(
            "1 when the listener can publish",
            metric=gauge("listener_broker_up"),
            in_every_document=True,
        ),
    )
    spool_depth: int = field(
        default=0,
        metadata=figure(
            "Events waiting in the local spool",
            metric=gauge("listener_spool_depth"),
            in_every_document=True,
        ),
    )
    memory_queue_depth: int = field(
        default=0,
        metadata=figure(
            "Events waiting in memory to be published",
            metric=gauge("listener_memory_queue_depth"),
            in_every_document=True,
        ),
    )
    snapshot_states: int = field(
        default=0,
        metadata=figure(
            "States of HA's snapshot enqueued at the first connection",
            metric=counter("listener_snapshot_states"),
            in_every_document=True,
        ),
    )
    backfilled_states: int = field(
        default=0,
        metadata=figure(
            "States filled in from HA's history after a reconnect",
            metric=counter("listener_backfilled_states"),
            in_every_document=True,
        ),
    )
    history_available: bool | None = field(
        default=None,
        metadata=figure(
            "1 when HA's history API answered, 0 when it did not; none until it was asked",
            metric=gauge("listener_history_available"),
            in_every_document=True,
        ),
    )
    skipped_messages: Counter[str] = field(
        default_factory=Counter,
        metadata=figure(
            "Frames or messages from HA skipped as unusable, by reason (too_deep, bad_id, ...)",
            metric=counter("listener_skipped_messages", label="reason"),
        ),
    )
    read_stall_max_s: float = field(
        default=0.0,
        metadata=figure(
            "The longest the reader spent on one frame: what reading waited on, at worst",
            metric=gauge("listener_read_stall_max_seconds"),
            rounded=True,
        ),
    )
    registry_refreshes: int = field(
        default=0,
        metadata=figure(
            "Times HA's registries (areas, devices, entities, floors, labels) were read",
            metric=counter("listener_registry_refreshes"),
        ),
    )
    renames_seen: int = field(
        default=0,
        metadata=figure(
            "Entity renames seen (announced by HA or found by comparing its entity registry) "
            "and handed to the workers (TRACK_RENAMES)",
            metric=counter("listener_renames_seen"),
        ),
    )
    publisher_restarts: int = field(
        default=0,
        metadata=figure(
            "Times the publisher thread died of an exception and was started again",
            metric=counter("listener_publisher_restarts"),
        ),
    )
    spool_quarantined: int = field(
        default=0,
        metadata=figure(
            "Spool rows that could not be read back, kept apart in the spool's quarantine table",
            metric=gauge("listener_spool_quarantined"),
        ),
    )
    auth_retry_at: float | None = field(
        default=None,
        metadata=figure(
            "After HA refused the token: unix time of the next login try (SIGHUP tries at once)",
            metric=gauge("listener_auth_retry_timestamp_seconds"),
        ),
    )
    spool_bytes: int = field(
        default=0,
        metadata=figure("Bytes the spool takes on disk", metric=gauge("listener_spool_bytes")),
    )
    spool_max_bytes: int | None = field(
        default=None,
        metadata=figure(
            "The spool's size limit (SPOOL_MAX_MB)", metric=gauge("listener_spool_max_bytes")
        ),
    )
    spool_disk_free_bytes: int | None = field(
        default=None,
        metadata=figure(
            "Free space of the spool's file system (what an unprivileged process may use)",
            metric=gauge("listener_spool_disk_free_bytes"),
        ),
    )
    broker_memory_used_bytes: int | None = field(
        default=None,
        metadata=figure(
            "The broker Redis's used_memory, as the listener reads it (none on other brokers)",
            metric=gauge("broker_memory_used_bytes"),
        ),
    )
    broker_memory_max_bytes: int | None = field(
        default=None,
        metadata=figure(
            "The broker Redis's maxmemory (0: no limit)", metric=gauge("broker_memory_max_bytes")
        ),
    )
    broker_full: bool = field(
        default=False,
        metadata=figure(
            "1 while the broker's memory is above BROKER_MEMORY_SPOOL_PERCENT (events spooled)",
            metric=gauge("listener_broker_full"),
        ),
    )
    spool_full: bool = field(
        default=False,
        metadata=figure(
            "1 while the spool refuses batches (SPOOL_MAX_MB or its disk): reading from HA pauses",
            metric=gauge("listener_spool_full"),
        ),
    )

    state_heartbeats: int = field(
        default=0,
        metadata=figure(
            "Quiet entities' last states sent again as heartbeats (STATE_HEARTBEAT_INTERVAL)",
            metric=counter("listener_state_heartbeats"),
        ),
    )
    state_heartbeat_entities: int = field(
        default=0,
        metadata=figure(
            "Entities the state heartbeat watches: chosen, and in a state other than "
            "unavailable or unknown",
            metric=gauge("listener_state_heartbeat_entities"),
        ),
    )

    def to_document(self) -> dict[str, Any]:
        """The JSON-ready document: one key per field, named like it, maps as plain dicts."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    def to_json(self) -> str:
        """The document as compact JSON text, as the listener writes it to Redis."""
        return json_codec.dumps(self.to_document()).decode()

    @classmethod
    def from_document(cls, data: Any) -> ListenerFigures | None:
        """The figures `to_document` wrote; None when `data` is not such a document."""
        if not isinstance(data, dict):
            return None
        values: dict[str, Any] = {}
        try:
            for described in DESCRIBED:
                if described.name in data:
                    values[described.name] = described.read(data[described.name])
                elif described.figure.in_every_document:
                    return None
        except TypeError:
            return None
        return cls(**values)

    @classmethod
    def from_json(cls, raw: str | bytes | None) -> ListenerFigures | None:
        """The figures `to_json` wrote; None when the text is absent or not such a document."""
        if not raw:
            return None
        try:
            return cls.from_document(json_codec.loads(raw))
        except (ValueError, UnicodeDecodeError):
            return None


class Described(NamedTuple):
    """One field of `ListenerFigures` with what is derived from it."""

    name: str
    figure: Figure
    key: str
    """Its key in the report's section."""
    read: Callable[[Any], Any]
    """Its value from the JSON document, type-checked (TypeError when it is not one)."""
    default: Any
    """A just-started listener's value (MISSING when the listener must give one)."""


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TypeError(f"not a number: {value!r}")
    return float(value)


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"not a count: {value!r}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"not a string: {value!r}")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"not a boolean: {value!r}")
    return value


def _counts(value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        raise TypeError(f"not an object: {value!r}")
    return {_text(key): _count(n) for key, n in value.items()}


def _tally(value: Any) -> Counter[str]:
    return Counter(_counts(value))


def _plain(value: Any) -> Any:
    """A field's value in the document: a map as a plain dict of its own, as JSON reads back."""
    return dict(value) if isinstance(value, dict) else value


def _optional(read: Callable[[Any], T]) -> Callable[[Any], T | None]:
    return lambda value: None if value is None else read(value)


_READERS: dict[Any, Callable[[Any], Any]] = {float: _number, int: _count, str: _text, bool: _flag}


def _reader(name: str, annotation: Any) -> Callable[[Any], Any]:
    """The reader of a field's JSON value, chosen from its type."""
    args = get_args(annotation)
    if isinstance(annotation, UnionType) and len(args) == 2 and NoneType in args:
        return _optional(_reader(name, next(a for a in args if a is not NoneType)))
    if get_origin(annotation) is dict and args == (str, int):
        return _counts
    if get_origin(annotation) is Counter and args == (str,):
        return _tally
    if annotation in _READERS:
        return _READERS[annotation]
    raise TypeError(
        f"ListenerFigures.{name}: no JSON reader for {annotation!r} — use one of float, int, "
        "str, bool, dict[str, int], Counter[str] (or one of them | None), or add a reader in "
        "core/listener_figures.py"
    )


def _describe(f: Field[Any], annotation: Any) -> Described:
    about: Figure = f.metadata["figure"]
    default = f.default if f.default_factory is MISSING else f.default_factory()
    return Described(f.name, about, about.key or f.name, _reader(f.name, annotation), default)


def _described() -> Iterator[Described]:
    hints = get_type_hints(ListenerFigures)
    for f in fields(ListenerFigures):
        yield _describe(f, hints[f.name])


DESCRIBED: tuple[Described, ...] = tuple(_described())
"""Every field of `ListenerFigures`, in order, with its figure, report key and reader."""


def section_keys(section: Section) -> tuple[str, ...]:
    """The report keys the listener's fields fill in one section, in field order."""
    return tuple(d.key for d in DESCRIBED if d.figure.section == section)
