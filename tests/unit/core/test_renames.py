"""Renames (core/renames.py) and the stable-id tag (core/enrichment.py), against the frames in
tests/fixtures/registry_renames.jsonl (shaped from HA's source) and the captured registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.enrichment import Registries, enrich, registry_id_tag
from core.line_protocol import encode_point
from core.renames import (
    RENAMES_MEASUREMENT,
    Announced,
    Rename,
    announced_rename,
    rename_event,
    rename_to_point,
    renames_seen,
)
from core.rules import Rules
from core.transform import FILTERED, InvalidEvent, Point

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
RID = "716dbca6853db4332008f4b950441dc0"
NOW = 1_800_000_000.0


def _lines(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIXTURES / name).read_text("utf-8").splitlines()]


def _captured_entities() -> list[dict[str, Any]]:
    for exchange in _lines("protocol_exchanges.jsonl"):
        if exchange["note"] == "entity registry":
            entities: list[dict[str, Any]] = exchange["recv"]["result"]
            return entities
    raise AssertionError("capture missing")


SHAPED = _lines("registry_renames.jsonl")
RENAMED_EVENT = SHAPED[0]["recv"]["event"]
AFTER_2024_3 = SHAPED[3]["recv"]["result"]
AFTER_NEWER = SHAPED[4]["recv"]["result"]


def test_the_event_ha_fires_announces_the_rename_at_its_time() -> None:
    announced = announced_rename(RENAMED_EVENT, NOW)
    assert announced == Announced(
        "input_number.temperature",
        "input_number.temperature_setpoint",
        "2026-11-26T22:31:05.112233+00:00",
    )


@pytest.mark.parametrize(
    "data",
    [
        {"action": "update", "entity_id": "sensor.a", "changes": {"name": None}},
        {"action": "create", "entity_id": "sensor.a"},
        {"action": "remove", "entity_id": "sensor.a", "old_entity_id": "sensor.b"},
        {"action": "update", "entity_id": "sensor.a", "old_entity_id": "sensor.a"},
        {"action": "update", "entity_id": None, "old_entity_id": "sensor.b"},
        "not an object",
    ],
)
def test_other_registry_changes_announce_nothing(data: Any) -> None:
    event = {"event_type": "entity_registry_updated", "data": data}
    assert announced_rename(event, NOW) is None


def test_an_event_without_its_time_is_dated_when_it_was_read() -> None:
    event = {**RENAMED_EVENT, "time_fired": None}
    announced = announced_rename(event, NOW)
    assert announced is not None
    assert announced.time == NOW


def test_an_announced_rename_is_tied_to_the_registry_id_the_fetch_shows() -> None:
    announced = announced_rename(RENAMED_EVENT, NOW)
    assert announced is not None
    found = renames_seen(_captured_entities(), AFTER_2024_3, [announced], NOW)
    assert found == [
        Rename(
            RID,
            "input_number.temperature",
            "input_number.temperature_setpoint",
            "2026-11-26T22:31:05.112233+00:00",
            "event",
        )
    ]


def test_a_rename_while_away_is_found_by_comparing_registries() -> None:
    assert renames_seen(_captured_entities(), AFTER_2024_3, [], NOW) == [
        Rename(RID, "input_number.temperature", "input_number.temperature_setpoint", NOW,
               "registry")
    ]  # fmt: skip
    newer = renames_seen(_captured_entities(), AFTER_NEWER, [], NOW)
    assert [r.time for r in newer] == [1795732265.112233]  # the entry's modified_at


@pytest.mark.parametrize("before", [None, [], "garbage", [{"id": RID}]])
def test_nothing_to_compare_with_finds_nothing(before: Any) -> None:
    assert renames_seen(before, AFTER_2024_3, [], NOW) == []


def test_the_same_registry_twice_has_no_rename() -> None:
    entities = _captured_entities()
    assert renames_seen(entities, entities, [], NOW) == []


def test_two_renames_in_one_burst_are_both_kept_from_their_events() -> None:
    before = [{"id": "r1", "entity_id": "sensor.a"}]
    after = [{"id": "r1", "entity_id": "sensor.c"}]
    announced = [Announced("sensor.a", "sensor.b", 1.0), Announced("sensor.b", "sensor.c", 2.0)]
    found = renames_seen(before, after, announced, NOW)
    assert [(r.old_entity_id, r.new_entity_id, r.registry_id) for r in found] == [
        ("sensor.a", "sensor.b", "r1"),
        ("sensor.b", "sensor.c", "r1"),
    ]


def test_a_rename_of_an_entity_gone_since_is_dropped() -> None:
    found = renames_seen([], [], [Announced("sensor.a", "sensor.b", 1.0)], NOW)
    assert found == []


def test_the_rename_point_is_the_documented_one() -> None:
    rename = Rename(RID, "input_number.temperature", "input_number.temperature_setpoint",
                    "2026-11-26T22:31:05.112233+00:00", "event")  # fmt: skip
    point = rename_to_point(rename_event(rename), Rules.from_mapping({"tags": {"home": "main"}}))
    assert isinstance(point, Point)
    assert encode_point(point, "ns") == (
        f"{RENAMES_MEASUREMENT},domain=input_number,entity_registry_id={RID},home=main "
        'found_by="event",new_entity_id="temperature_setpoint",old_entity_id="temperature" '
        "1795732265112233000"
    )


def test_a_rename_of_entities_the_rules_leave_out_is_filtered() -> None:
    rules = Rules.from_mapping({"exclude": {"domains": ["input_number"]}})
    rename = Rename(RID, "input_number.a", "input_number.b", NOW, "registry")
    assert rename_to_point(rename_event(rename), rules) == FILTERED


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"registry_id": None}, "registry_id"),
        ({"old_entity_id": "nodomain"}, "old_entity_id"),
        ({"new_entity_id": 3}, "new_entity_id"),
        ({"found_by": "guess"}, "found_by"),
        ({"time": "yesterday"}, "time"),
    ],
)
def test_a_broken_rename_message_says_what_is_wrong(change: dict[str, Any], says: str) -> None:
    event = rename_event(Rename(RID, "sensor.a", "sensor.b", NOW, "event"))
    event["data"].update(change)
    with pytest.raises(InvalidEvent, match=says):
        rename_to_point(event, Rules.from_mapping(None))


def test_the_stable_id_tag_is_the_registry_entry_id_before_and_after() -> None:
    before = Registries.from_lists(entities=_captured_entities())
    after = Registries.from_lists(entities=AFTER_2024_3)
    assert registry_id_tag("input_number.temperature", before) == {"entity_registry_id": RID}
    assert registry_id_tag("input_number.temperature_setpoint", after) == {
        "entity_registry_id": RID
    }
    assert registry_id_tag("sensor.not_registered", after) == {}
    assert enrich("input_number.temperature_setpoint", after, [registry_id_tag]) == {
        "entity_registry_id": RID
    }
