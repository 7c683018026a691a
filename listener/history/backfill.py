"""Filling the gap after a reconnect from HA's history, sans I/O.

HA does not replay what a client missed. After a reconnect we ask the recorder for every state
change since the last event delivered (after a listener restart: since the newest event durably
handed off) and enqueue them; points are keyed by `last_updated`, so the overlap with what was
already written overwrites instead of duplicating.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

OVERLAP_S = 5.0
"""Ask from a little before the gap starts: clocks and in-flight events overlap."""


@dataclass(frozen=True)
class Window:
    """One bounded history request: a time range and the entities asked for."""

    start: datetime
    end: datetime
    entity_ids: tuple[str, ...]


def plan_windows(
    start: datetime,
    end: datetime,
    entity_ids: Sequence[str],
    *,
    window_s: float,
    entities_per_request: int,
) -> list[list[Window]]:
    """The requests that read [start, end): time windows in order, each split by entities.

    A reply stays bounded however long the gap (a night, a week) and however large the home,
    so it never passes the frame cap or the reply timeout. The cursor advances per time window,
    once all of its entity requests are enqueued.
    """
    if window_s <= 0 or entities_per_request < 1:
        raise ValueError("window_s must be > 0 and entities_per_request >= 1")
    ids = sorted(set(entity_ids))
    chunks = [
        tuple(ids[i : i + entities_per_request]) for i in range(0, len(ids), entities_per_request)
    ]
    step = timedelta(seconds=window_s)
    windows: list[list[Window]] = []
    begin = start
    while chunks and begin < end:
        stop = min(begin + step, end)
        windows.append([Window(begin, stop, chunk) for chunk in chunks])
        begin = stop
    return windows


def history_request(
    start: datetime, entity_ids: Sequence[str], end: datetime | None = None
) -> dict[str, Any]:
    """The fields of `history/history_during_period` for [start, end) (no end: until now).

    `include_start_time_state` is off: HA would stamp the state in effect at `start` with `start`
    itself, a point that never happened. Every change, not only significant ones, and with
    attributes, so the points equal the live ones.
    """
    fields: dict[str, Any] = {
        "start_time": start.astimezone(UTC).isoformat(),
        "entity_ids": list(entity_ids),
        "include_start_time_state": False,
        "significant_changes_only": False,
        "minimal_response": False,
        "no_attributes": False,
    }
    if end is not None:
        fields["end_time"] = end.astimezone(UTC).isoformat()
    return fields


def state_event(state: Mapping[str, Any]) -> dict[str, Any]:
    """A state_changed event for a state read from HA (snapshot, backfill or import): what the
    worker turns into the same point as the live event of that state."""
    return {
        "event_type": "state_changed",
        "data": {"entity_id": state.get("entity_id"), "old_state": None, "new_state": state},
        "origin": "LOCAL",
        "time_fired": state.get("last_updated"),
        "context": state.get("context"),
    }


def gap_start(last_seen: datetime, overlap_s: float = OVERLAP_S) -> datetime:
    return last_seen - timedelta(seconds=overlap_s)


def states_from_history(result: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """HA's compressed history rows (`s`, `a`, `lu`, `lc`) → full state objects.

    Attributes are sent only when they changed (`minimal_response` off still omits unchanged
    ones in newer HA), so the last known attributes carry over within an entity.
    """
    for entity_id, rows in result.items():
        if not isinstance(rows, list):
            continue
        attributes: dict[str, Any] = {}
        for row in rows:
            if not isinstance(row, Mapping) or "s" not in row or "lu" not in row:
                continue
            if isinstance(row.get("a"), Mapping):
                attributes = dict(row["a"])
            yield {
                "entity_id": entity_id,
                "state": row["s"],
                "attributes": attributes,
                "last_updated": row["lu"],
                "last_changed": row.get("lc", row["lu"]),
            }
