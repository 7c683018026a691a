"""The listener's live figures, as its threads update them; `snapshot` makes them a record.

One attribute per field of core.listener_figures.ListenerFigures — that record is the one list
of names, so adding a figure there adds it here. Each figure is written by one thread only
(reader or publisher), so no locks are needed; `snapshot` copies them into the frozen record
that /health, /metrics and the Redis state get. A name that is not a figure raises
AttributeError (the attributes are slots), so a misspelt counter fails at once.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import MISSING
from typing import TYPE_CHECKING, Any

from core.ha_event import entity_id_of
from core.listener_figures import DESCRIBED, ListenerFigures

_LIVE = tuple(d for d in DESCRIBED if d.name != "reported_at")
"""Every figure but the time of the report, which `snapshot` sets."""


class ListenerStats:
    """The figures of one listener process, live: one attribute per ListenerFigures field."""

    __slots__ = (*(d.name for d in _LIVE), "events_by_entity")

    events_by_entity: Counter[str]
    """Live events per entity_id ("" for events without one); the state reporter turns the
    increments into per-minute buckets by entity and domain (not a figure of the record)."""

    if TYPE_CHECKING:
        # The figures' attributes come from ListenerFigures' fields, not from a second list.
        def __getattr__(self, name: str) -> Any: ...
        def __setattr__(self, name: str, value: Any) -> None: ...

    def __init__(self, started_at: float | None = None) -> None:
        for described in _LIVE:
            setattr(self, described.name, _initial(described.default))
        self.started_at = time.time() if started_at is None else started_at
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
        values = {d.name: _copy(getattr(self, d.name)) for d in _LIVE}
        return ListenerFigures(reported_at=now, **values)


def _initial(default: Any) -> Any:
    """A figure's value at start: its default; a {name: count} figure counts (a Counter)."""
    if default is MISSING:
        return None  # started_at: set by __init__
    return Counter(default) if isinstance(default, Mapping) else default


def _copy(value: Any) -> Any:
    return dict(value) if isinstance(value, Mapping) else value
