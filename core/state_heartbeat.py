"""The quiet-sensor heartbeat, pure: which entities, when each one is due, and its point.

HA writes a point only when a state changes, so a thermostat set once a day leaves a "last
value in the last hour" panel blank. With STATE_HEARTBEAT_INTERVAL set, the listener sends
the last state of each chosen entity (STATE_HEARTBEAT_DOMAINS, STATE_HEARTBEAT_ENTITY_GLOBS)
that made no point for that long again, as a task message of source `heartbeat`; the worker
writes it as the same point at the heartbeat's time, tagged `heartbeat=true`.

- A tag, not a field: a tag is a column of every row, so InfluxQL (`WHERE "heartbeat" != 'true'`,
  true for points without the tag) and Flux (`filter(fn: (r) => not exists r.heartbeat)`) drop
  heartbeats in one condition; a field exists only on its own points, which InfluxQL cannot
  test for absence and Flux only after a pivot. The cost is one more series per heartbeated
  entity (the tag has one value), and a "last value" panel over the entity (grouped by
  `entity_id`, as HA's dashboards are) takes the newer of the two, which is the point of it.
- The clock of an entity starts at its newest point: a live change restarts it, the snapshot
  at connect sets it to the state's `last_updated` (the time of the point the snapshot
  writes). So a listener restart neither forgets a quiet entity nor treats a fresh one as
  overdue.
- `unavailable` and `unknown` are never sent again: a heartbeat says "this value still holds",
  and neither is a value (HA's integration skips both by default, too). An entity in such a
  state, or removed (its `state_changed` carries no new state, or it is missing from a
  reconnect's snapshot), leaves the clock until a real state comes back.

Everything here is given its time (`now`, epoch seconds): no clock, no I/O.
"""

from __future__ import annotations

import fnmatch
import heapq
import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from core.ha_event import domain_of, epoch_ns, parse_ha_time
from core.rules import Rules
from core.transform import InvalidEvent, Point, Skipped, event_to_point

HEARTBEAT_TAG: Final = ("heartbeat", "true")
"""The marker of a heartbeat point; no other point carries the `heartbeat` tag."""
NEVER_REPEATED: Final = frozenset({"unavailable", "unknown"})
"""States a heartbeat never writes again."""
_MAX_CACHED_ENTITIES: Final = 16_384


@dataclass(frozen=True, slots=True)
class HeartbeatPolicy:
    """Which entities get a heartbeat, and after how long without a point."""

    interval_s: float
    domains: frozenset[str] = frozenset()
    entity_globs: frozenset[str] = frozenset()
    _pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _cache: dict[str, bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.interval_s > 0:
            raise ValueError(f"the heartbeat interval must be > 0 s, got {self.interval_s!r}")
        if not self.domains and not self.entity_globs:
            raise ValueError("a heartbeat needs domains or entity globs to choose entities by")
        globs = sorted(self.entity_globs)
        pattern = re.compile("|".join(fnmatch.translate(g) for g in globs)) if globs else None
        object.__setattr__(self, "_pattern", pattern)
        object.__setattr__(self, "_cache", {})

    def covers(self, entity_id: str) -> bool:
        """Whether the entity gets a heartbeat; cached, since every live event asks."""
        try:
            return self._cache[entity_id]
        except KeyError:
            pass
        chosen = domain_of(entity_id) in self.domains or bool(
            self._pattern is not None and self._pattern.match(entity_id)
        )
        if len(self._cache) >= _MAX_CACHED_ENTITIES:
            self._cache.clear()
        self._cache[entity_id] = chosen
        return chosen


@dataclass(slots=True)
class _Watched:
    """One entity on the clock: its last state and when a point of it was last written."""

    state: Mapping[str, Any]
    updated_at: float
    """The state's `last_updated`: of two states from two sources, the newer one is kept."""
    written_at: float
    token: int
    """Names its one live entry in the due heap; entries of a forgotten entity go stale."""


class QuietClock:
    """When each watched entity is next due, kept in a heap so a live event costs O(1).

    A live change only moves the entity's `written_at`; its heap entry is checked when it
    comes up and pushed back to the new due time, so nothing but the heap's top is ever looked
    at. Mutable, and still pure: its callers hand it every time it reads.
    """

    def __init__(self, policy: HeartbeatPolicy) -> None:
        self.policy = policy
        self._watched: dict[str, _Watched] = {}
        self._due: list[tuple[float, int, str]] = []
        self._tokens = itertools.count()

    def __len__(self) -> int:
        return len(self._watched)

    def __contains__(self, entity_id: object) -> bool:
        return entity_id in self._watched

    def written(self, state: Mapping[str, Any], now: float) -> bool:
        """A point of `state` was handed off at `now` (a live change): its clock restarts.

        Returns True when the entity was not watched before (the caller may need to wake up).
        """
        entity_id = state.get("entity_id")
        if not isinstance(entity_id, str) or not self.policy.covers(entity_id):
            return False
        return self._note(entity_id, state, _updated_at(state, now), now)

    def removed(self, entity_id: str) -> None:
        """The entity is gone from HA, or its state is no value: no heartbeat until it returns."""
        self._watched.pop(entity_id, None)

    def seed(self, states: Iterable[Mapping[str, Any]], now: float) -> None:
        """HA's states at connect: each entity's clock from its `last_updated` (never later
        than `now`); watched entities missing from them were removed meanwhile."""
        present: set[str] = set()
        for state in states:
            entity_id = state.get("entity_id")
            if not isinstance(entity_id, str):
                continue
            present.add(entity_id)
            if self.policy.covers(entity_id):
                updated_at = _updated_at(state, now)
                self._note(entity_id, state, updated_at, min(updated_at, now))
        for entity_id in self._watched.keys() - present:
            self.removed(entity_id)

    def take_due(self, now: float, slack: float = 0.0) -> list[Mapping[str, Any]]:
        """The states due by `now + slack`, oldest due first; their clocks restart at `now`.

        `slack` lets one wake-up take the entities due just after it too. Each entity is taken
        at most once: entries go back into the heap only after the scan.
        """
        interval, limit = self.policy.interval_s, now + slack
        taken: list[Mapping[str, Any]] = []
        later: list[tuple[float, int, str]] = []
        due = self._due
        while due and due[0][0] <= limit:
            _, token, entity_id = heapq.heappop(due)
            watched = self._watched.get(entity_id)
            if watched is None or watched.token != token:
                continue  # forgotten, or watched again under a new entry
            due_at = watched.written_at + interval
            if due_at > limit:  # written since this entry was pushed
                later.append((due_at, token, entity_id))
                continue
            taken.append(watched.state)
            watched.written_at = now
            later.append((now + interval, token, entity_id))
        for entry in later:
            heapq.heappush(due, entry)
        return taken

    def next_due(self) -> float | None:
        """When the next entity may be due (None: none is watched); stale entries dropped."""
        due = self._due
        while due:
            _, token, entity_id = due[0]
            watched = self._watched.get(entity_id)
            if watched is not None and watched.token == token:
                return due[0][0]
            heapq.heappop(due)
        return None

    def _note(
        self, entity_id: str, state: Mapping[str, Any], updated_at: float, written_at: float
    ) -> bool:
        """Keep the newer state and the later write; a state that is no value unwatches."""
        watched = self._watched.get(entity_id)
        if watched is not None and updated_at < watched.updated_at:
            watched.written_at = max(watched.written_at, written_at)  # an older copy: time only
            return False
        value = state.get("state")
        if not isinstance(value, str) or value in NEVER_REPEATED:  # no state: nothing to repeat
            self.removed(entity_id)
            return False
        if watched is None:
            token = next(self._tokens)
            self._watched[entity_id] = _Watched(state, updated_at, written_at, token)
            heapq.heappush(self._due, (written_at + self.policy.interval_s, token, entity_id))
            return True
        watched.state, watched.updated_at = state, updated_at
        watched.written_at = max(watched.written_at, written_at)
        return False


def _updated_at(state: Mapping[str, Any], default: float) -> float:
    """The state's `last_updated` in epoch seconds; `default` when it has none readable."""
    moment = parse_ha_time(state.get("last_updated"))
    return default if moment is None else moment.timestamp()


def state_heartbeat_event(state: Mapping[str, Any], at: float) -> dict[str, Any]:
    """The `state_changed` event a heartbeat sends: the state as HA gave it, fired `at`.

    The state keeps its own `last_updated`; `time_fired` carries the heartbeat's time, which
    the worker gives the point (`state_heartbeat_point`).
    """
    return {
        "event_type": "state_changed",
        "data": {"entity_id": state.get("entity_id"), "old_state": None, "new_state": state},
        "origin": "LOCAL",
        "time_fired": datetime.fromtimestamp(at, UTC).isoformat(),
        "context": None,
    }


def state_heartbeat_point(
    event: Mapping[str, Any], rules: Rules, extra_tags: Mapping[str, str] | None = None
) -> Point | Skipped:
    """The point of a heartbeat event: the state's point, at `time_fired`, tagged as one.

    The same rules apply as to the live point (a filtered entity or an ignored state makes
    none); the marker is set last, so no attribute or static tag can hide it.
    """
    point = event_to_point(event, rules, extra_tags)
    if isinstance(point, Skipped):
        return point
    moment = parse_ha_time(event.get("time_fired"))
    if moment is None:
        raise InvalidEvent("a heartbeat event needs its time in time_fired")
    time_ns = epoch_ns(moment)
    tags = dict(point.tags)
    tags[HEARTBEAT_TAG[0]] = HEARTBEAT_TAG[1]
    return Point.of(point.measurement, tags, dict(point.fields), time_ns, point.capped)
