"""The listener's live figures, as its threads update them; `snapshot` makes them a record.

`ListenerStats` is a `ListenerFigures` (core/listener_figures.py), the one list of names, with
what only the live process keeps beside it: adding a figure there adds it here, and mypy checks
every counter's name and type (a {name: count} figure is a `Counter`, so `+= 1` on a new name
counts from zero). Each figure is written by one thread only (reader or publisher), so no locks
are needed; `snapshot` copies them into the separate record that /health, /metrics and the Redis
state get. The attributes are slots, so a misspelt counter also fails at run time, at once.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import fields
from typing import Any

from core.ha_event import entity_id_of
from core.listener_figures import ListenerFigures


class ListenerStats(ListenerFigures):
    """The figures of one listener process, live; `reported_at` only matters in a snapshot."""

    __slots__ = ("events_by_entity",)

    events_by_entity: Counter[str]
    """Live events per entity_id ("" for events without one); the state reporter turns the
    increments into per-minute buckets by entity and domain (not a figure of the record)."""

    def __init__(self, started_at: float | None = None) -> None:
        started_at = time.time() if started_at is None else started_at
        super().__init__(started_at=started_at, reported_at=started_at)
        self.events_by_entity = Counter()

    def skip(self, reason: str) -> None:
        """Count a frame or message from HA that cannot be used (also in malformed_frames)."""
        self.skipped_messages[reason] += 1
        self.malformed_frames += 1

    def count_entity(self, event: dict[str, Any]) -> None:
        """Count a live event under its entity: one dict increment on the event loop."""
        self.events_by_entity[entity_id_of(event) or ""] += 1

    def snapshot(self, now: float) -> ListenerFigures:
        """The figures as of `now`, for /health and the Redis state (no secrets are ever here).

        Copying a dict of str keys is a single step for the interpreter, so each copy is
        consistent while the event loop keeps counting.
        """
        values = {f.name: _copy(getattr(self, f.name)) for f in fields(ListenerFigures)}
        return ListenerFigures(**(values | {"reported_at": now}))


def _copy(value: Any) -> Any:
    """A figure's value apart from the live one: a map copied (a Counter stays a Counter)."""
    return value.copy() if isinstance(value, dict) else value
