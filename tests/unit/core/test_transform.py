"""event_to_point: every rule of DESIGN §3.2, HA's `event_to_json` case by case."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from core.rules import Rules
from core.transform import (
    MAX_ATTRIBUTES,
    MAX_STRING_BYTES,
    InvalidEvent,
    Point,
    Skipped,
    event_to_point,
)

FIXTURES = Path(__file__).parents[2] / "fixtures"
T0 = "2026-11-26T22:23:23.441045+00:00"
T0_NS = 1_795_731_803_441_045_000
DEFAULT = Rules()

MISSING: Any = object()


def state_event(
    entity_id: str = "sensor.room_temperature",
    state: Any = "21.5",
    attributes: Any = None,
    last_updated: Any = T0,
    event_type: str = "state_changed",
) -> dict[str, Any]:
    """A `state_changed` event shaped as HA sends it."""
    new_state: dict[str, Any] = {"entity_id": entity_id, "attributes": attributes or {}}
    if state is not MISSING:
        new_state["state"] = state
    if last_updated is not MISSING:
        new_state["last_updated"] = last_updated
        new_state["last_changed"] = last_updated
    return {
        "event_type": event_type,
        "data": {"entity_id": entity_id, "old_state": None, "new_state": new_state},
        "origin": "LOCAL",
        "time_fired": "2030-01-01T00:00:00+00:00",
        "context": {"id": "01", "parent_id": None, "user_id": None},
    }


def point(event: dict[str, Any], rules: Rules = DEFAULT, **kwargs: Any) -> Point:
    result = event_to_point(event, rules, **kwargs)
    assert isinstance(result, Point), result
    return result


def fields(*args: Any, **kwargs: Any) -> dict[str, float | str]:
    return dict(point(*args, **kwargs).fields)


def tags(*args: Any, **kwargs: Any) -> dict[str, str]:
    return dict(point(*args, **kwargs).tags)


def rules(**options: Any) -> Rules:
    return Rules.from_mapping(options)


def load_frames(name: str) -> list[Any]:
    path = FIXTURES / name
    if not path.is_file():
        pytest.fail(f"fixture {path} is missing: the HA captures belong in {FIXTURES}")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


# --- the real captures ------------------------------------------------------------------------


def test_real_ha_events_become_the_points_ha_would_write() -> None:
    results = [
        event_to_point(frame["event"], DEFAULT) for frame in load_frames("sample_events.jsonl")
    ]
    skipped = [r.rule for r in results if isinstance(r, Skipped)]
    points = [r for r in results if isinstance(r, Point)]
    assert skipped == ["ignored_state", "ignored_state", "no_new_state"]
    assert len(points) == 17
    first = points[0]
    assert first == Point(
        measurement="°C",
        tags=(("domain", "input_number"), ("entity_id", "temperature")),
        fields=(
            ("editable", 0.0),
            ("friendly_name_str", "Temperature setpoint"),
            ("initial_str", "None"),
            ("max", 50.0),
            ("min", -20.0),
            ("mode_str", "box"),
            ("step", 0.1),
            ("value", 21.5),
        ),
        time_ns=T0_NS,
    )
    by_entity = {(p.tags[0][1], p.tags[1][1]): p for p in points}
    heater = by_entity[("input_boolean", "heater")]
    assert heater.measurement == "input_boolean.heater"
    assert dict(heater.fields) == {
        "editable": 0.0,
        "friendly_name_str": "Heater",
        "state": "on",
        "value": 1.0,
    }
    text = by_entity[("sensor", "status_text")]
    assert dict(text.fields) == {"friendly_name_str": "Status Text", "state": "héllo ✓ 222323"}
    pulses = by_entity[("counter", "pulses")]
    assert dict(pulses.fields)["value"] == 1.0
    assert all(p.capped == 0 for p in points)


def test_coalesced_frames_hold_the_same_kind_of_events() -> None:
    for frame in load_frames("sample_coalesced.jsonl"):
        for message in frame:
            assert isinstance(event_to_point(message["event"], DEFAULT), Point | Skipped)


# --- skips ------------------------------------------------------------------------------------


def test_an_entity_removed_has_no_new_state() -> None:
    event = state_event()
    event["data"]["new_state"] = None
    assert event_to_point(event, DEFAULT) == Skipped("no_new_state")
    del event["data"]["new_state"]
    assert event_to_point(event, DEFAULT) == Skipped("no_new_state")


@pytest.mark.parametrize("state", ["unknown", "unavailable", "", None])
def test_ha_skips_unknown_unavailable_and_empty_states(state: Any) -> None:
    assert event_to_point(state_event(state=state), DEFAULT) == Skipped("ignored_state")


def test_ignored_states_are_configurable() -> None:
    custom = rules(ignore_states=["away"])
    assert event_to_point(state_event(state="away"), custom) == Skipped("ignored_state")
    assert dict(point(state_event(state="unknown"), custom).fields) == {"state": "unknown"}
    assert event_to_point(state_event(state=None), custom) == Skipped("ignored_state")


def test_unknown_is_not_recorded_as_zero_when_ignore_states_lets_it_through() -> None:
    assert fields(state_event(state="unknown"), rules(ignore_states=[])) == {"state": "unknown"}


@pytest.mark.parametrize("event_type", ["call_service", "automation_triggered", "STATE_CHANGED"])
def test_other_event_types_are_not_state_events(event_type: str) -> None:
    event = state_event(event_type=event_type)
    assert event_to_point(event, DEFAULT) == Skipped("not_a_state_event")


def test_filtered_entities_are_skipped() -> None:
    only_lights = rules(include={"domains": ["light"]})
    assert event_to_point(state_event(), only_lights) == Skipped("filtered")
    assert isinstance(event_to_point(state_event("light.kitchen", "on"), only_lights), Point)


def test_the_filter_uses_ha_semantics_through_event_to_point() -> None:
    case_4b = rules(include={"entities": ["sensor.keep"]}, exclude={"domains": ["sensor"]})
    assert event_to_point(state_event("sensor.other"), case_4b) == Skipped("filtered")
    assert isinstance(event_to_point(state_event("sensor.keep"), case_4b), Point)
    assert isinstance(event_to_point(state_event("light.x", "on"), case_4b), Point)


# --- events that cannot be understood -----------------------------------------------------------


def mutate(change: Any) -> dict[str, Any]:
    event = state_event()
    change(event)
    return event


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (["not", "an", "event"], "the event is a list, not an object"),
        (mutate(lambda e: e.pop("event_type")), "event_type is missing"),
        (mutate(lambda e: e.update(event_type=3)), "event_type is a int, not a string"),
        (mutate(lambda e: e.pop("data")), "data is missing"),
        (mutate(lambda e: e.update(data="x")), "data is not an object"),
        (mutate(lambda e: e["data"].update(new_state="on")), "new_state is not an object"),
        (
            mutate(lambda e: (e["data"]["new_state"].pop("entity_id"), e["data"].pop("entity_id"))),
            "new_state.entity_id is missing",
        ),
        (state_event(entity_id="foo"), "entity_id 'foo' has no domain"),
        (state_event(entity_id=".foo"), "entity_id '.foo' has no domain"),
        (state_event(entity_id="foo."), "entity_id 'foo.' has no object id"),
        (state_event(state=MISSING), "new_state.state is missing"),
        (state_event(state=["on"]), "new_state.state is a list, not a string"),
        (state_event(state=True), "new_state.state is a bool, not a string"),
        (state_event(attributes=["x"]), "new_state.attributes is not an object"),
        (state_event(last_updated=MISSING), "new_state.last_updated is missing"),
        (state_event(last_updated=None), "new_state.last_updated is missing"),
        (state_event(last_updated="yesterday"), "new_state.last_updated 'yesterday' is not an ISO"),
        (state_event(last_updated=True), "new_state.last_updated is a bool, not an ISO 8601"),
        (state_event(last_updated=math.nan), "new_state.last_updated is a float, not an ISO"),
        (state_event(last_updated=[1]), "new_state.last_updated is a list, not an ISO"),
        (state_event(last_updated=1e12), "is outside InfluxDB's time range"),
        (state_event(last_updated="0001-01-01T00:00:00"), "is outside InfluxDB's time range"),
    ],
)
def test_events_that_cannot_be_understood_say_why(event: Any, message: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        event_to_point(event, DEFAULT)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_entity_id_may_come_from_data_when_the_state_lacks_it() -> None:
    event = state_event()
    del event["data"]["new_state"]["entity_id"]
    assert tags(event)["entity_id"] == "room_temperature"


def test_missing_attributes_mean_none() -> None:
    event = state_event()
    del event["data"]["new_state"]["attributes"]
    assert fields(event) == {"value": 21.5}


# --- state and value --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("21.5", {"value": 21.5}),
        ("-3", {"value": -3.0}),
        ("1e3", {"value": 1000.0}),
        (" 7 ", {"value": 7.0}),
        (21, {"value": 21.0}),
        (21.5, {"value": 21.5}),
        ("on", {"state": "on", "value": 1.0}),
        ("locked", {"state": "locked", "value": 1.0}),
        ("above_horizon", {"state": "above_horizon", "value": 1.0}),
        ("open", {"state": "open", "value": 1.0}),
        ("home", {"state": "home", "value": 1.0}),
        ("off", {"state": "off", "value": 0.0}),
        ("unlocked", {"state": "unlocked", "value": 0.0}),
        ("below_horizon", {"state": "below_horizon", "value": 0.0}),
        ("closed", {"state": "closed", "value": 0.0}),
        ("not_home", {"state": "not_home", "value": 0.0}),
        ("On", {"state": "On"}),
        ("away", {"state": "away"}),
        ("heat", {"state": "heat"}),
        ("nan", {"state": "nan"}),
        ("inf", {"state": "inf"}),
        ("-Infinity", {"state": "-Infinity"}),
        ("1e400", {"state": "1e400"}),
    ],
)
def test_state_becomes_value_state_or_both_as_in_ha(state: Any, expected: dict[str, Any]) -> None:
    got = fields(state_event(state=state))
    assert got == expected
    assert all(type(v) is float for k, v in got.items() if k == "value")


# --- measurement ------------------------------------------------------------------------------

UOM = {"unit_of_measurement": "°C", "device_class": "temperature", "friendly_name": "T"}


@pytest.mark.parametrize(
    ("options", "attributes", "expected"),
    [
        # 1. per-entity override beats everything
        (
            {
                "component_config": {"sensor.room_temperature": {"override_measurement": "ent"}},
                "component_config_domain": {"sensor": {"override_measurement": "dom"}},
                "override_measurement": "global",
                "default_measurement": "default",
            },
            UOM,
            "ent",
        ),
        ({"component_config_domain": {"sensor": {"override_measurement": "dom"}}}, UOM, "dom"),
        (
            {"component_config_glob": {"sensor.room_*": {"override_measurement": "glob"}}},
            UOM,
            "glob",
        ),
        # 2. then the global override
        ({"override_measurement": "global", "default_measurement": "default"}, UOM, "global"),
        # an empty entity override counts as none (HA: `measurement in (None, "")`)
        (
            {
                "component_config_domain": {"sensor": {"override_measurement": "dom"}},
                "component_config": {"sensor.room_temperature": {"override_measurement": ""}},
                "override_measurement": "global",
            },
            UOM,
            "global",
        ),
        # 3. then measurement_attr
        ({}, UOM, "°C"),
        ({"default_measurement": "default"}, UOM, "°C"),
        ({"measurement_attr": "entity_id"}, UOM, "sensor.room_temperature"),
        ({"measurement_attr": "domain__device_class"}, UOM, "sensor__temperature"),
        ({"measurement_attr": "domain__device_class"}, {"unit_of_measurement": "°C"}, "sensor"),
        ({"measurement_attr": "domain__device_class"}, {"device_class": ""}, "sensor__"),
        # 4. then default_measurement, 5. then the entity_id
        ({"default_measurement": "default"}, {"friendly_name": "T"}, "default"),
        ({"default_measurement": "default"}, {"unit_of_measurement": ""}, "default"),
        ({"default_measurement": "default"}, {"unit_of_measurement": None}, "default"),
        ({}, {"friendly_name": "T"}, "sensor.room_temperature"),
        ({"default_measurement": ""}, {}, "sensor.room_temperature"),
        # a measurement attribute that is not a string becomes one
        ({}, {"unit_of_measurement": 5}, "5"),
        ({}, {"unit_of_measurement": ["a", "b"]}, '["a", "b"]'),
        ({"measurement_attr": "domain__device_class"}, {"device_class": 3}, "sensor__3"),
    ],
)
def test_measurement_is_the_first_that_applies(
    options: dict[str, Any], attributes: dict[str, Any], expected: str
) -> None:
    assert point(state_event(attributes=attributes), rules(**options)).measurement == expected


def test_unit_used_as_measurement_is_not_also_a_field() -> None:
    assert "unit_of_measurement_str" not in fields(state_event(attributes=UOM))
    assert "unit_of_measurement_str" not in fields(
        state_event(attributes=UOM), rules(default_measurement="d")
    )


@pytest.mark.parametrize(
    "options",
    [
        {"override_measurement": "m"},
        {"component_config": {"sensor.room_temperature": {"override_measurement": "m"}}},
        {"measurement_attr": "entity_id"},
        {"measurement_attr": "domain__device_class"},
    ],
)
def test_unit_is_kept_as_a_field_when_it_is_not_the_measurement(options: dict[str, Any]) -> None:
    assert fields(state_event(attributes=UOM), rules(**options))["unit_of_measurement_str"] == "°C"


def test_domain_device_class_measurement_drops_the_device_class_field() -> None:
    got = fields(state_event(attributes=UOM), rules(measurement_attr="domain__device_class"))
    assert "device_class_str" not in got
    no_class = fields(
        state_event(attributes={"unit_of_measurement": "W"}),
        rules(measurement_attr="domain__device_class"),
    )
    assert no_class["unit_of_measurement_str"] == "W"


def test_device_class_is_kept_when_another_measurement_applies() -> None:
    got = fields(
        state_event(attributes=UOM),
        rules(measurement_attr="domain__device_class", override_measurement="m"),
    )
    assert got["device_class_str"] == "temperature"


# --- tags -------------------------------------------------------------------------------------


def test_tags_are_domain_and_object_id_as_ha_writes_them() -> None:
    assert point(state_event("binary_sensor.front.door", "on")).tags == (
        ("domain", "binary_sensor"),
        ("entity_id", "front.door"),
    )


def test_tags_attributes_become_tags_not_fields() -> None:
    attributes = {"friendly_name": "Room", "floor": 2, "zones": ["a", "b"], "icon": None}
    got = point(
        state_event(attributes=attributes),
        rules(tags_attributes=["friendly_name", "floor", "zones", "icon", "absent"]),
    )
    assert dict(got.tags) == {
        "domain": "sensor",
        "entity_id": "room_temperature",
        "friendly_name": "Room",
        "floor": "2",
        "zones": '["a", "b"]',
    }
    assert dict(got.fields) == {"value": 21.5}


def test_a_tag_attribute_can_replace_ha_tags_as_in_ha() -> None:
    got = tags(state_event(attributes={"domain": "climate"}), rules(tags_attributes=["domain"]))
    assert got["domain"] == "climate"


def test_static_tags_win_over_tag_attributes_and_enrichment() -> None:
    got = tags(
        state_event(attributes={"area": "attic"}),
        rules(tags={"area": "static", "site": "home"}, tags_attributes=["area"]),
        extra_tags={"area": "kitchen", "device": "thermostat"},
    )
    assert got == {
        "area": "static",
        "device": "thermostat",
        "domain": "sensor",
        "entity_id": "room_temperature",
        "site": "home",
    }


def test_enrichment_tags_are_added_but_cannot_replace_ha_tags() -> None:
    got = tags(
        state_event(attributes={"friendly_name": "Room"}),
        rules(tags_attributes=["friendly_name"]),
        extra_tags={"area": "Living room", "domain": "x", "entity_id": "y", "friendly_name": "z"},
    )
    assert got == {
        "area": "Living room",
        "domain": "sensor",
        "entity_id": "room_temperature",
        "friendly_name": "Room",
    }


def test_empty_enrichment_tags_are_left_out() -> None:
    got = tags(state_event(), extra_tags={"area": "", "": "x"})
    assert got == {"domain": "sensor", "entity_id": "room_temperature"}


def test_tags_and_fields_are_sorted_by_key() -> None:
    got = point(
        state_event(attributes={"z": 1, "a": 2, "m": "x"}),
        rules(tags={"zz": "1", "aa": "2"}),
        extra_tags={"mm": "3"},
    )
    assert [k for k, _ in got.tags] == sorted(k for k, _ in got.tags)
    assert [k for k, _ in got.fields] == ["a", "m_str", "value", "z"]


# --- ignore_attributes ------------------------------------------------------------------------

ATTRS = {"icon": "mdi:x", "friendly_name": "T", "battery": 80, "rssi": -60}


@pytest.mark.parametrize(
    ("options", "kept"),
    [
        ({}, {"icon_str", "friendly_name_str", "battery", "rssi", "value"}),
        ({"ignore_attributes": ["icon", "rssi"]}, {"friendly_name_str", "battery", "value"}),
        (
            {"component_config": {"sensor.room_temperature": {"ignore_attributes": ["battery"]}}},
            {"icon_str", "friendly_name_str", "rssi", "value"},
        ),
        (
            {
                "ignore_attributes": ["icon"],
                "component_config_domain": {"sensor": {"ignore_attributes": ["rssi"]}},
            },
            {"friendly_name_str", "battery", "value"},
        ),
        (
            {"component_config_glob": {"sensor.*": {"ignore_attributes": "friendly_name"}}},
            {"icon_str", "battery", "rssi", "value"},
        ),
        (
            {"component_config_glob": {"light.*": {"ignore_attributes": "friendly_name"}}},
            {"icon_str", "friendly_name_str", "battery", "rssi", "value"},
        ),
    ],
)
def test_ignore_attributes_global_and_per_entity(options: dict[str, Any], kept: set[str]) -> None:
    assert set(fields(state_event(attributes=ATTRS), rules(**options))) == kept


def test_an_ignored_unit_is_still_the_measurement_as_in_ha() -> None:
    got = point(state_event(attributes=UOM), rules(ignore_attributes=["unit_of_measurement"]))
    assert got.measurement == "°C"


# --- attribute fields -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"level": 3}, {"level": 3.0}),
        ({"level": 2.5}, {"level": 2.5}),
        ({"level": "2.5"}, {"level": 2.5}),
        ({"on": True, "off": False}, {"on": 1.0, "off": 0.0}),
        ({"mode": "eco"}, {"mode_str": "eco"}),
        ({"initial": None}, {"initial_str": "None"}),
        ({"firmware": "v1.2"}, {"firmware_str": "v1.2", "firmware": 1.2}),
        ({"level": "Level 12"}, {"level_str": "Level 12", "level": 12.0}),
        ({"power": "1,234 W"}, {"power_str": "1,234 W", "power": 1234.0}),
        ({"version": "1.2.3"}, {"version_str": "1.2.3"}),
        ({"x": "x5"}, {"x_str": "x5"}),
        ({"x": "ab" * 200 + "12"}, {"x_str": "ab" * 200 + "12"}),
        ({"zones": ["a", "b"]}, {"zones_str": '["a", "b"]'}),
        ({"ids": [12]}, {"ids_str": "[12]", "ids": 12.0}),
        ({"cfg": {"b": 1, "a": "é"}}, {"cfg_str": '{"a": "é", "b": 1}'}),
        ({"big": 10**400}, {"big_str": "1" + "0" * 400}),
    ],
)
def test_attributes_become_float_or_str_fields_as_in_ha(
    attributes: dict[str, Any], expected: dict[str, Any]
) -> None:
    got = fields(state_event(state="x", attributes=attributes))
    del got["state"]
    assert got == expected
    assert all(type(v) is float for k, v in got.items() if not k.endswith("_str"))


@pytest.mark.parametrize(
    "value", [math.nan, math.inf, -math.inf, "nan", "inf", "-Infinity", "1e400", "9" * 400]
)
def test_nan_and_infinity_are_never_fields(value: Any) -> None:
    got = fields(state_event(attributes={"x": value}))
    assert "x" not in got
    assert all(math.isfinite(v) for v in got.values() if isinstance(v, float))


@pytest.mark.parametrize(
    ("state", "attributes", "expected"),
    [
        # HA's own clash rule: a key already among the fields gets "_"
        ("on", {"state": "idle"}, {"state": "on", "value": 1.0, "state__str": "idle"}),
        ("21", {"value": 3}, {"value": 21.0, "value_": 3.0}),
        ("21", {"value": "high"}, {"value": 21.0, "value__str": "high"}),
        # generalised so a name never changes type: numbers never named state/value/*_str/time
        ("21", {"state": 3}, {"value": 21.0, "state_": 3.0}),
        ("away", {"value": 3}, {"state": "away", "value_": 3.0}),
        ("21", {"reading_str": 4}, {"value": 21.0, "reading_str_": 4.0}),
        ("21", {"time": 1700000000}, {"value": 21.0, "time_": 1700000000.0}),
        ("21", {"time": "12:30"}, {"value": 21.0, "time_str": "12:30", "time_": 1230.0}),
        # strings keep HA's names; the number taken from them follows the float rule
        ("21", {"state": "s12"}, {"value": 21.0, "state_str": "s12", "state_": 12.0}),
        ("21", {"a_str": "v12"}, {"value": 21.0, "a_str_str": "v12", "a_str_": 12.0}),
        # derived names clash with real attributes as in HA
        ("21", {"x": "v12", "x_str": 5}, {"value": 21.0, "x_str": "v12", "x": 12.0, "x_str_": 5.0}),
    ],
)
def test_clashing_names_get_a_suffix(
    state: str, attributes: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert fields(state_event(state=state, attributes=attributes)) == expected


# --- time -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "last_updated",
    [
        T0,
        "2026-11-26T22:23:23.441045Z",
        "2026-11-26T23:23:23.441045+01:00",
        "2026-11-26T17:23:23.441045-05:00",
        "2026-11-26T22:23:23.441045",
        "2026-11-26 22:23:23.441045",
        1_795_731_803.441045,
    ],
)
def test_time_is_last_updated_in_nanoseconds(last_updated: Any) -> None:
    assert point(state_event(last_updated=last_updated)).time_ns == T0_NS


@pytest.mark.parametrize(
    ("last_updated", "expected"),
    [
        ("2026-11-26T22:23:23+00:00", 1_795_731_803_000_000_000),
        ("2026-11-26T22:23:23.5+00:00", 1_795_731_803_500_000_000),
        (1_795_731_803, 1_795_731_803_000_000_000),
        (0.000001, 1_000),
        (-1.5, -1_500_000_000),
        ("1969-12-31T23:59:59+00:00", -1_000_000_000),
    ],
)
def test_time_formats(last_updated: Any, expected: int) -> None:
    assert point(state_event(last_updated=last_updated)).time_ns == expected


def test_time_fired_is_not_used() -> None:
    event = state_event()
    event["time_fired"] = "2000-01-01T00:00:00+00:00"
    assert point(event).time_ns == T0_NS


# --- limits -----------------------------------------------------------------------------------


def test_at_most_200_attributes_and_the_rest_are_counted() -> None:
    attributes = {f"a{n:03}": n for n in range(MAX_ATTRIBUTES + 50)}
    got = point(state_event(attributes=attributes))
    assert got.capped == 50
    assert len(got.fields) == MAX_ATTRIBUTES + 1
    assert dict(got.fields)["a199"] == 199.0
    assert "a200" not in dict(got.fields)


def test_ignored_and_tag_attributes_do_not_count_toward_the_limit() -> None:
    attributes = {"icon": "x", "room": "r", **{f"a{n:03}": n for n in range(MAX_ATTRIBUTES)}}
    got = point(
        state_event(attributes=attributes),
        rules(ignore_attributes=["icon"], tags_attributes="room"),
    )
    assert got.capped == 0


def test_long_strings_are_cut_at_64_kib_of_utf8_without_splitting_a_character() -> None:
    got = point(
        state_event(attributes={"ascii": "a" * (MAX_STRING_BYTES + 10), "wide": "é" * 40_000})
    )
    values = dict(got.fields)
    assert values["ascii_str"] == "a" * MAX_STRING_BYTES
    wide = values["wide_str"]
    assert isinstance(wide, str)
    assert len(wide.encode()) <= MAX_STRING_BYTES
    assert wide == "é" * (MAX_STRING_BYTES // 2)
    assert got.capped == 2


def test_strings_just_under_the_limit_are_whole() -> None:
    text = "€" * (MAX_STRING_BYTES // 3)
    got = point(state_event(attributes={"t": text}))
    assert dict(got.fields)["t_str"] == text
    assert got.capped == 0


def test_a_huge_state_is_cut_too() -> None:
    got = point(state_event(state="x" * (MAX_STRING_BYTES + 1)))
    assert dict(got.fields)["state"] == "x" * MAX_STRING_BYTES
    assert got.capped == 1


def test_lone_surrogates_are_replaced_so_the_point_can_be_encoded() -> None:
    got = point(
        state_event(
            state="a\ud800",
            attributes={"k\udc00": "v\ud83d", "unit_of_measurement": "\udfff"},
        )
    )
    assert got.measurement == "\ufffd"
    assert dict(got.fields) == {"state": "a\ufffd", "k\ufffd_str": "v\ufffd"}
    for text in [got.measurement, *(k for k, _ in got.fields), *(str(v) for _, v in got.fields)]:
        text.encode()


def test_non_ascii_is_kept() -> None:
    got = point(
        state_event("sensor.température", "ok ✓", {"unit_of_measurement": "m³", "nom": "été"})
    )
    assert got.measurement == "m³"
    assert dict(got.tags)["entity_id"] == "température"
    assert dict(got.fields) == {"nom_str": "été", "state": "ok ✓"}


def test_results_are_immutable_values() -> None:
    a, b = point(state_event()), point(state_event())
    assert a == b
    assert hash(a) == hash(b)
    assert a.capped == 0
    with pytest.raises(AttributeError):
        a.measurement = "x"  # type: ignore[misc]
    assert Skipped("filtered") == Skipped("filtered")
