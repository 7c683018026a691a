"""The shadow decision: given the types a store holds, which values move where."""

from __future__ import annotations

from typing import Any

import pytest

from core.field_types import (
    Conflict,
    column_conflict,
    conflicts_in,
    shadow,
    shadow_name,
    type_of,
)
from core.rules import Rules
from core.transform import Point, event_to_point

V1_TEXT = (
    'partial write: field type conflict: input field "value" on measurement "°C" is type '
    "float, already exists as type integer dropped=1"
)


def point(**fields: float | str) -> Point:
    return Point("°C", (("entity_id", "x"),), tuple(sorted(fields.items())), 1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (V1_TEXT, [Conflict("°C", "value", "float", "integer")]),
        (
            # A raw JSON body quotes the names with escaped quotes.
            '{"error":"partial write: field type conflict: input field \\"state\\" on '
            'measurement \\"sensor.x\\" is type string, already exists as type float dropped=2"}',
            [Conflict("sensor.x", "state", "string", "float")],
        ),
        (
            "failure writing points to database: partial write: field type conflict: input "
            'field "battery_str" on measurement "%" is type string, already exists as type '
            "boolean dropped=1",
            [Conflict("%", "battery_str", "string", "boolean")],
        ),
        ("unable to parse 'm,a=b': missing fields", []),
        ("partial write: points beyond retention policy dropped=1", []),
        (
            'input field "v" on measurement "m" is type float, already exists as type bogus',
            [],
        ),
    ],
)
def test_conflicts_are_read_from_the_stores_text(text: str, expected: list[Conflict]) -> None:
    assert conflicts_in(text) == expected


IOX = (
    "invalid column type for column '{field}', expected iox::column_type::field::{held}, "
    "got iox::column_type::field::{given}"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            IOX.format(field="temp", held="float", given="string"),
            Conflict("m", "temp", "string", "float"),
        ),
        (
            IOX.format(field="value", held="integer", given="float"),
            Conflict("m", "value", "float", "integer"),
        ),
        (
            IOX.format(field="n", held="uinteger", given="float"),
            Conflict("m", "n", "float", "unsigned"),
        ),
        (
            IOX.format(field="on", held="boolean", given="string"),
            Conflict("m", "on", "string", "boolean"),
        ),
        (IOX.format(field="x", held="tag", given="float"), None),
        ("line protocol parse error: missing fields", None),
    ],
)
def test_influxdb3_conflicts_are_read_with_the_lines_measurement(
    text: str, expected: Conflict | None
) -> None:
    assert column_conflict("m", text) == expected


def test_an_influxdb3_conflict_moves_the_value_to_its_shadow() -> None:
    conflict = column_conflict("°C", IOX.format(field="value", held="integer", given="float"))
    assert conflict is not None
    moved = shadow(point(value=1.5), {conflict.field: conflict.held})
    assert moved.moved == (("value", "value_float"),)


@pytest.mark.parametrize(
    ("fields", "held", "expected", "moved"),
    [
        # Nothing known, or nothing clashing: the point as it is.
        ({"value": 1.5}, {}, {"value": 1.5}, ()),
        ({"value": 1.5, "state": "on"}, {"value": "float", "state": "string"}, None, ()),
        ({"value": 1.5}, {"other": "integer"}, None, ()),
        # A number meeting an integer, text, boolean or unsigned field: `<field>_float`.
        ({"value": 1.5}, {"value": "integer"}, {"value_float": 1.5}, (("value", "value_float"),)),
        ({"value": 2.0}, {"value": "string"}, {"value_float": 2.0}, (("value", "value_float"),)),
        ({"battery": 3.0}, {"battery": "boolean"}, {"battery_float": 3.0}, None),
        ({"battery": 3.0}, {"battery": "unsigned"}, {"battery_float": 3.0}, None),
        # Text meeting a number or boolean: HA's `<field>_str`.
        ({"state": "on"}, {"state": "float"}, {"state_str": "on"}, (("state", "state_str"),)),
        ({"mode_str": "eco"}, {"mode_str": "integer"}, {"mode_str_str": "eco"}, None),
        # A shadow name the point already uses gets HA's `_` suffix.
        (
            {"value": 1.0, "value_float": 2.0},
            {"value": "integer"},
            {"value_float_": 1.0, "value_float": 2.0},
            (("value", "value_float_"),),
        ),
        # The shadow itself clashes: no move, InfluxDB will refuse the point.
        ({"value": 1.0}, {"value": "integer", "value_float": "string"}, None, ()),
        # Only the clashing values move.
        (
            {"state": "heat", "value": 1.0, "temperature": 20.5},
            {"state": "integer", "temperature": "integer"},
            {"state_str": "heat", "value": 1.0, "temperature_float": 20.5},
            (("state", "state_str"), ("temperature", "temperature_float")),
        ),
    ],
)
def test_shadow(
    fields: dict[str, Any],
    held: dict[str, str],
    expected: dict[str, Any] | None,
    moved: tuple[tuple[str, str], ...] | None,
) -> None:
    original = point(**fields)
    result = shadow(original, held)
    if expected is None:  # unchanged
        assert result.point is original
        assert result.moved == ()
        return
    assert dict(result.point.fields) == expected
    assert [k for k, _ in result.point.fields] == sorted(expected)
    assert result.point.tags == original.tags
    assert result.point.time_ns == original.time_ns
    if moved is not None:
        assert result.moved == moved


def test_shadow_names_never_take_a_name_of_the_other_type() -> None:
    """Every field name of ours has one type (core/transform.py): a shadow keeps to that rule,
    so shadows never clash among our own points."""
    event = {
        "event_type": "state_changed",
        "data": {
            "entity_id": "climate.hall",
            "new_state": {
                "entity_id": "climate.hall",
                "state": "heat",
                "attributes": {"value_float": 1.0, "state": "x", "value_str": 2.0, "time": 3},
                "last_updated": "2026-11-26T22:23:23+00:00",
            },
        },
    }
    result = event_to_point(event, Rules())
    assert isinstance(result, Point)
    for key, value in result.fields:
        name = shadow_name(key, value)
        ends_as_text = name == "state" or name.endswith("_str")
        assert ends_as_text == (type_of(value) == "string"), (key, name)
