"""What InfluxDB should hold for the events HA sent, computed with the pure core."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

from core.rules import Rules
from core.transform import Point, event_to_point
from tests.helpers import InfluxDatabase

SeriesKey = tuple[str, str, int]
"""(domain, object id, time in ns): one point per entity and last_updated."""


def recorded_events(path: Path) -> list[dict[str, Any]]:
    """The events the simulator says it emitted (its record file)."""
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]


def state_events(states: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Current states as the state_changed events the listener's snapshot makes of them."""
    return [
        {
            "event_type": "state_changed",
            "data": {"entity_id": s["entity_id"], "old_state": None, "new_state": s},
            "time_fired": s["last_updated"],
        }
        for s in states
    ]


def expected_points(
    events: Iterable[dict[str, Any]], rules: Rules | None = None
) -> dict[SeriesKey, Point]:
    rules = rules or Rules.from_mapping(None)
    out: dict[SeriesKey, Point] = {}
    for event in events:
        result = event_to_point(event, rules)
        if isinstance(result, Point):
            tags = dict(result.tags)
            out[(tags["domain"], tags["entity_id"], result.time_ns)] = result
    return out


def points_in_influx(db: InfluxDatabase) -> dict[SeriesKey, dict[str, Any]]:
    rows = db.query("SELECT * FROM /.*/ GROUP BY *")
    return {(r["domain"], r["entity_id"], int(r["time"])): r for r in rows}


def ha_states(url: str, token: str) -> list[dict[str, Any]]:
    """get_states over a real WebSocket, as any HA client would ask."""
    with connect(url) as ws:
        assert json.loads(ws.recv())["type"] == "auth_required"
        ws.send(json.dumps({"type": "auth", "access_token": token}))
        assert json.loads(ws.recv())["type"] == "auth_ok"
        ws.send(json.dumps({"id": 1, "type": "get_states"}))
        reply = json.loads(ws.recv())
        assert reply["success"], reply
        states: list[dict[str, Any]] = reply["result"]
        return states
