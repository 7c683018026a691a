"""The listener's state as it reaches Redis: one typed JSON document, read back as written.

The listener writes it every 2 s under the listener-state key (config/redis_keys.py; its TTL
makes a missing key mean a dead listener); beat and `ha-ingestor status` read it back.
`from_json` checks the type of every field and gives None for a missing or garbled document,
so no reader needs a special case. Fields it does not know are ignored (a newer listener may
write more).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class ListenerState:
    """What one listener process reported about itself at `reported_at` (its clock)."""

    started_at: float
    reported_at: float
    connection_state: str
    """starting, connecting, authenticating, authenticated, subscribed, backing_off,
    auth_invalid or stopped."""
    ha_version: str
    connect_attempts: int
    connects_ok: int
    connects_failed: int
    reconnects: int
    last_error: str
    subscriptions: Mapping[str, int]
    """Subscribed event type → the id of its subscription."""
    events_received: int
    events_by_type: Mapping[str, int]
    last_event_at: float | None
    malformed_frames: int
    events_enqueued: int
    events_spooled: int
    events_drained: int
    publish_errors: int
    broker_up: bool
    spool_depth: int
    memory_queue_depth: int
    snapshot_states: int
    backfilled_states: int
    history_available: bool | None
    """Whether HA's history API answered; None until it was asked."""
    skipped_messages: Mapping[str, int] = field(default_factory=dict)
    """Frames or messages from HA skipped as unusable, by reason (too_deep, bad_id, ...)."""
    read_stall_max_s: float = 0.0
    """The longest the reader spent on one frame: what reading waited on, at worst."""
    registry_refreshes: int = 0
    publisher_restarts: int = 0
    """Times the publisher thread died of an exception and was started again."""
    spool_quarantined: int = 0
    """Spool rows that could not be read back, kept apart in the spool's quarantine table."""
    auth_retry_at: float | None = None
    """After HA refused the token: unix time of the next login try (SIGHUP tries at once)."""
    spool_bytes: int = 0
    """Bytes the spool's rows take on disk."""
    spool_max_bytes: int | None = None
    """SPOOL_MAX_MB in bytes."""
    spool_disk_free_bytes: int | None = None
    """Free space of the spool's file system (what an unprivileged process may use)."""
    broker_memory_used_bytes: int | None = None
    """The broker Redis's used_memory; None on other brokers or before the first reading."""
    broker_memory_max_bytes: int | None = None
    """The broker Redis's maxmemory; 0 when it has no limit."""
    broker_full: bool = False
    """The broker's memory is above BROKER_MEMORY_SPOOL_PERCENT: new events go to the spool."""
    spool_full: bool = False
    """The spool refused the last batch (SPOOL_MAX_MB or its disk): reading from HA pauses."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes | None) -> ListenerState | None:
        """The state `to_json` wrote; None when the document is absent or not one."""
        if not raw:
            return None
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(data, dict):
            return None
        try:
            return cls(
                started_at=_number(data["started_at"]),
                reported_at=_number(data["reported_at"]),
                connection_state=_text(data["connection_state"]),
                ha_version=_text(data["ha_version"]),
                connect_attempts=_count(data["connect_attempts"]),
                connects_ok=_count(data["connects_ok"]),
                connects_failed=_count(data["connects_failed"]),
                reconnects=_count(data["reconnects"]),
                last_error=_text(data["last_error"]),
                subscriptions=_counts(data["subscriptions"]),
                events_received=_count(data["events_received"]),
                events_by_type=_counts(data["events_by_type"]),
                last_event_at=_optional(_number, data["last_event_at"]),
                malformed_frames=_count(data["malformed_frames"]),
                events_enqueued=_count(data["events_enqueued"]),
                events_spooled=_count(data["events_spooled"]),
                events_drained=_count(data["events_drained"]),
                publish_errors=_count(data["publish_errors"]),
                broker_up=_flag(data["broker_up"]),
                spool_depth=_count(data["spool_depth"]),
                memory_queue_depth=_count(data["memory_queue_depth"]),
                snapshot_states=_count(data["snapshot_states"]),
                backfilled_states=_count(data["backfilled_states"]),
                history_available=_optional(_flag, data["history_available"]),
                # Added later: a listener from before them leaves them out.
                skipped_messages=_counts(data.get("skipped_messages", {})),
                read_stall_max_s=_number(data.get("read_stall_max_s", 0.0)),
                registry_refreshes=_count(data.get("registry_refreshes", 0)),
                publisher_restarts=_count(data.get("publisher_restarts", 0)),
                spool_quarantined=_count(data.get("spool_quarantined", 0)),
                auth_retry_at=_optional(_number, data.get("auth_retry_at")),
                spool_bytes=_count(data.get("spool_bytes", 0)),
                spool_max_bytes=_optional(_count, data.get("spool_max_bytes")),
                spool_disk_free_bytes=_optional(_count, data.get("spool_disk_free_bytes")),
                broker_memory_used_bytes=_optional(_count, data.get("broker_memory_used_bytes")),
                broker_memory_max_bytes=_optional(_count, data.get("broker_memory_max_bytes")),
                broker_full=_flag(data.get("broker_full", False)),
                spool_full=_flag(data.get("spool_full", False)),
            )
        except (KeyError, TypeError):
            return None


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


def _optional(parse: Callable[[Any], T], value: Any) -> T | None:
    return None if value is None else parse(value)


def _counts(value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        raise TypeError(f"not an object: {value!r}")
    return {_text(key): _count(n) for key, n in value.items()}
