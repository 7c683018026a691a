"""The task message contract between the listener and the workers (DESIGN.md §3.1).

Both sides import this module, so the shape is written down exactly once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

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
