"""The listener's figures (core.listener_figures): typed JSON there and back, nothing else read
as one, and the live counters' snapshot is that record."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import fields, replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.listener_figures import DESCRIBED, ListenerFigures
from listener.health.stats import ListenerStats

NOW = 1_800_000_000.0

counts = st.integers(min_value=0, max_value=2**63)
numbers = st.floats(allow_nan=False, allow_infinity=False)
BY_TYPE: dict[str, st.SearchStrategy[Any]] = {
    "float": numbers,
    "float | None": st.none() | numbers,
    "int": counts,
    "int | None": st.none() | counts,
    "str": st.text(),
    "str | None": st.none() | st.text(),
    "bool": st.booleans(),
    "bool | None": st.none() | st.booleans(),
    "dict[str, int]": st.dictionaries(st.text(), counts),
    "Counter[str]": st.dictionaries(st.text(), counts).map(Counter),
}
states = st.fixed_dictionaries({f.name: BY_TYPE[str(f.type)] for f in fields(ListenerFigures)}).map(
    lambda values: ListenerFigures(**values)
)


def busy_stats() -> ListenerStats:
    stats = ListenerStats(started_at=NOW - 600)
    stats.connection_state = "subscribed"
    stats.ha_version = "2024.3.3"
    stats.connect_attempts = stats.connects_ok = 1
    stats.subscriptions = {"state_changed": 2}
    stats.events_received = 10
    stats.events_by_type["state_changed"] = 10
    stats.count_entity({"data": {"entity_id": "sensor.a"}})
    stats.last_event_at = NOW - 1.25
    stats.broker_up = False
    stats.spool_depth = 7
    stats.history_available = False
    return stats


@given(states)
def test_every_state_round_trips(state: ListenerFigures) -> None:
    assert ListenerFigures.from_json(state.to_json()) == state
    assert ListenerFigures.from_json(state.to_json().encode()) == state


def test_the_listener_s_snapshot_is_typed_json() -> None:
    state = busy_stats().snapshot(NOW)
    data = json.loads(state.to_json())
    assert set(data) == {f.name for f in fields(ListenerFigures)}
    # Real JSON types, not the strings of Python values.
    assert data["broker_up"] is False
    assert data["history_available"] is False
    assert data["last_event_at"] == NOW - 1.25
    assert data["reported_at"] == NOW
    assert data["subscriptions"] == {"state_changed": 2}
    assert ListenerFigures.from_json(state.to_json()) == state
    fresh = ListenerStats(started_at=NOW).snapshot(NOW)
    assert json.loads(fresh.to_json())["last_event_at"] is None
    assert ListenerFigures.from_json(fresh.to_json()) == fresh


def test_fields_it_does_not_know_are_ignored() -> None:
    state = busy_stats().snapshot(NOW)
    newer = json.dumps(json.loads(state.to_json()) | {"added_later": [1, 2]})
    assert ListenerFigures.from_json(newer) == state


def garbled(**changes: Any) -> str:
    data = json.loads(busy_stats().snapshot(NOW).to_json())
    data.update(changes)
    return json.dumps(data)


def without(name: str) -> str:
    data = json.loads(busy_stats().snapshot(NOW).to_json())
    del data[name]
    return json.dumps(data)


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        b"",
        "not json",
        b"\xff\xfe",
        "[]",
        "3",
        "{}",
        without("reported_at"),
        without("history_available"),
        garbled(broker_up="True"),  # what the old hash held
        garbled(last_event_at="None"),
        garbled(reported_at="1700000000.25"),
        garbled(reported_at=float("nan")),
        garbled(started_at=True),
        garbled(events_received=-1),
        garbled(events_received=1.5),
        garbled(events_received=True),
        garbled(connection_state=None),
        garbled(subscriptions=["state_changed"]),
        garbled(events_by_type={"state_changed": "10"}),
        garbled(history_available=0),
    ],
)
def test_anything_else_is_none(raw: str | bytes | None) -> None:
    assert ListenerFigures.from_json(raw) is None


def test_the_snapshot_copies_what_keeps_counting() -> None:
    stats = busy_stats()
    state = stats.snapshot(NOW)
    stats.events_by_type["state_changed"] += 1
    stats.subscriptions["call_service"] = 3
    assert state.events_by_type == {"state_changed": 10}
    assert state.subscriptions == {"state_changed": 2}


def test_a_figure_added_later_may_be_missing_from_an_older_listener_s_document() -> None:
    stats = busy_stats()
    stats.spool_quarantined = 4
    data = json.loads(stats.snapshot(NOW).to_json())
    added_later = [d for d in DESCRIBED if not d.figure.in_every_document]
    assert "spool_quarantined" in [d.name for d in added_later]
    for described in added_later:
        del data[described.name]
    older = ListenerFigures.from_json(json.dumps(data))
    assert older is not None
    assert older.spool_quarantined == 0
    assert older == replace(stats.snapshot(NOW), **{d.name: d.default for d in added_later})


def test_the_document_is_a_dict_and_its_json_the_text() -> None:
    state = busy_stats().snapshot(NOW)
    assert isinstance(state.to_document(), dict)
    assert ListenerFigures.from_document(state.to_document()) == state
    assert json.loads(state.to_json()) == state.to_document()
    assert ListenerFigures.from_document(state.to_json()) is None, "text is from_json's"
