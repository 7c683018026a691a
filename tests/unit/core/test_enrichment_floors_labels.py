"""The floor and labels steps of enrichment, on registries shaped as HA 2024.4+ returns them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from core.enrichment import (
    REGISTRY_KINDS,
    Registries,
    area_tag,
    default_steps,
    encode_labels,
    enrich,
    entity_labels_tag,
    floor_label_steps,
    floor_tag,
    inherited_labels_tag,
)

KINDS = {
    "area registry": "areas",
    "device registry": "devices",
    "entity registry": "entities",
    "floor registry": "floors",
    "label registry": "labels",
}


def shaped(fixtures_dir: Path) -> dict[str, Any]:
    """The registries of floors_labels_2024_4.jsonl (shaped from HA's source), by kind."""
    lists: dict[str, Any] = {}
    for line in (fixtures_dir / "floors_labels_2024_4.jsonl").read_text("utf-8").splitlines():
        exchange = json.loads(line)
        kind = KINDS.get(exchange["note"])
        if kind:
            lists[kind] = exchange["recv"]["result"]
    return lists


@pytest.fixture(scope="module")
def registries(fixtures_dir: Path) -> Registries:
    lists = shaped(fixtures_dir)
    return Registries.from_lists(*(lists[kind] for kind in REGISTRY_KINDS))


@pytest.mark.parametrize(
    ("entity_id", "expected"),
    [
        ("climate.bedroom", {"floor": "First Floor"}),  # its device's area
        ("sensor.bedroom_thermostat_battery", {"floor": "Ground Floor"}),  # its own area wins
        ("input_boolean.shed_light", {}),  # an area on no floor
        ("sensor.not_registered", {}),
    ],
)
def test_floor_is_the_floor_of_the_area_the_area_tag_names(
    registries: Registries, entity_id: str, expected: dict[str, str]
) -> None:
    assert floor_tag(entity_id, registries) == expected
    if expected:
        area = area_tag(entity_id, registries)["area"]
        assert registries.areas[registries.area_id_of(entity_id) or ""] == area


@pytest.mark.parametrize(
    ("entity_id", "own", "inherited"),
    [
        # own "energy"; device "heating"; area Bedroom "night_quiet" (a comma in its name)
        ("climate.bedroom", ",Energy,", ",Energy,Heating,Night  quiet,"),
        # none of its own; its device's, but its own area (Living Room) has no labels
        ("sensor.bedroom_thermostat_battery", None, ",Heating,"),
        # a label id the label registry does not list is left out
        ("input_boolean.shed_light", ",Energy,", ",Energy,"),
        ("sensor.not_registered", None, None),
    ],
)
def test_labels_own_or_inherited_from_device_and_area(
    registries: Registries, entity_id: str, own: str | None, inherited: str | None
) -> None:
    assert entity_labels_tag(entity_id, registries) == ({"labels": own} if own else {})
    assert inherited_labels_tag(entity_id, registries) == (
        {"labels": inherited} if inherited else {}
    )


def test_the_labels_encoding_is_sorted_wrapped_and_a_regex_matches_one_label_exactly() -> None:
    encoded = encode_labels(["Kitchen", "Heating", "Kitchen lights", "Heating"])
    assert encoded == ",Heating,Kitchen,Kitchen lights,"
    assert re.search(",Kitchen,", encoded)
    assert not re.search(",Kitchen,", ",Kitchen lights,")
    assert encode_labels(["a,b"]) == ",a b,", "a separator inside a name never splits it"
    assert encode_labels([]) == ""
    assert encode_labels(["", ""]) == ""


def test_no_steps_unless_asked_for_schema_parity_with_ha() -> None:
    assert floor_label_steps(floor=False, labels="off") == ()
    assert floor_label_steps(floor=True, labels="entity") == (floor_tag, entity_labels_tag)
    assert floor_label_steps(floor=False, labels="inherited") == (inherited_labels_tag,)


def test_all_steps_together(registries: Registries) -> None:
    steps = default_steps(frozenset()) + floor_label_steps(floor=True, labels="inherited")
    assert enrich("climate.bedroom", registries, steps) == {
        "area": "Bedroom",
        "device": "Bedroom Thermostat",
        "floor": "First Floor",
        "labels": ",Energy,Heating,Night  quiet,",
    }


def test_an_ha_before_2024_4_gives_no_floor_or_labels(fixtures_dir: Path) -> None:
    """HA 2024.3's registries (captured): areas without floor_id, entities with `labels: []`,
    and no floor or label registry at all (stored empty by the listener, or absent)."""
    lists: dict[str, Any] = {}
    for line in (fixtures_dir / "protocol_exchanges.jsonl").read_text("utf-8").splitlines():
        exchange = json.loads(line)
        kind = KINDS.get(exchange["note"])
        if kind:
            lists[kind] = exchange["recv"]["result"]
    steps = floor_label_steps(floor=True, labels="inherited")
    none: list[object] = []
    for floors_and_labels in (None, none):
        registries = Registries.from_lists(
            lists["areas"], lists["devices"], lists["entities"], floors_and_labels, None
        )
        for entity in lists["entities"]:
            assert enrich(entity["entity_id"], registries, steps) == {}


def test_malformed_floors_and_labels_give_fewer_tags_never_an_error() -> None:
    registries = Registries.from_lists(
        [
            {"area_id": "a", "name": "A", "floor_id": 3, "labels": "heating"},
            {"area_id": "b", "name": "B", "floor_id": "f", "labels": [None, "l", 5]},
            {"area_id": "c", "name": "C", "floor_id": "nowhere"},
        ],
        [{"id": "d", "labels": {"l": 1}}],
        [
            {"entity_id": "sensor.a", "area_id": "a", "labels": ["l", ""]},
            {"entity_id": "sensor.b", "area_id": "b", "device_id": "d"},
            {"entity_id": "sensor.c", "area_id": "c", "labels": None},
        ],
        [None, {"floor_id": "f"}, {"floor_id": "f", "name": "F"}, {"name": "no id"}],
        "not a list",
    )
    steps = floor_label_steps(floor=True, labels="inherited")
    assert enrich("sensor.a", registries, steps) == {}, "no label registry: no names"
    assert enrich("sensor.b", registries, steps) == {"floor": "F"}
    assert enrich("sensor.c", registries, steps) == {}
    assert registries.area_labels == {"b": frozenset({"l"})}
