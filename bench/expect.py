"""What InfluxDB must hold for the events sent, computed with the workers' pure core."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from core.rules import Rules
from core.task_message import Undecodable, decode_stored
from core.transform import Point, event_to_point

SeriesKey = tuple[str, str, int]

_RULES = Rules.from_mapping(None)


@dataclass(frozen=True)
class Expected:
    """The points some events must become, and the two field counts that track progress."""

    keys: frozenset[SeriesKey]
    with_value: int
    with_state: int
    time_fired_ns: dict[SeriesKey, int]

    def __len__(self) -> int:
        return len(self.keys)


def expected_points(events: Iterable[dict[str, Any]]) -> Expected:
    keys: set[SeriesKey] = set()
    fired: dict[SeriesKey, int] = {}
    with_value = with_state = 0
    for event in events:
        point = event_to_point(event, _RULES)
        if not isinstance(point, Point):
            continue
        tags = dict(point.tags)
        key = (tags["domain"], tags["entity_id"], point.time_ns)
        if key in keys:
            continue
        keys.add(key)
        fired[key] = point.time_ns
        names = {name for name, _ in point.fields}
        with_value += "value" in names
        with_state += "state" in names
    return Expected(frozenset(keys), with_value, with_state, fired)


def recorded_events(path: Path) -> list[dict[str, Any]]:
    """The events the simulator emitted (its record file, one JSON object a line)."""
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def task_messages(client: redis.Redis, queue: str, chunk: int = 5_000) -> Iterator[dict[str, Any]]:
    """Decode every task message waiting in a Redis queue, oldest first (its argument)."""
    length = int(client.llen(queue))
    for stop in range(length, 0, -chunk):
        start = max(0, stop - chunk)
        for raw in reversed(client.lrange(queue, start, stop - 1)):
            arg = decode_stored(raw)
            if isinstance(arg, Undecodable):
                raise ValueError(f"the queue holds a message no worker can read: {arg.reason}")
            yield arg
