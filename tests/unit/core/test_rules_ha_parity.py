"""Each option of HA's `influxdb:` block, checked against HA's own tests.

Every test here mirrors one `test_event_listener_*` (or `test_precision`) of HA's
`tests/components/influxdb/test_init.py`: the same configuration, the same state, the same
expected body (measurement, tags, fields). The configuration goes through the YAML path
(`Rules.from_mapping`, as the rules file is read) and the state arrives as HA sends it over the
WebSocket (JSON: a datetime attribute is an ISO string). The only deliberate differences,
written down in core/transform.py, are named where a case meets one.
"""

from __future__ import annotations

from typing import Any

import pytest

from core.line_protocol import encode_point
from core.rules import Rules
from core.transform import Point, Skipped, event_to_point

T0 = "2026-11-26T22:23:23.441045+00:00"
T0_NS = 1_795_731_803_441_045_000


def async_set(entity_id: str, state: Any, attributes: dict[str, Any] | None = None) -> Any:
    """The event HA fires for `hass.states.async_set(entity_id, state, attributes)`."""
    new_state = {
        "entity_id": entity_id,
        "state": str(state),  # HA stores every state as text
        "attributes": attributes or {},
        "last_changed": T0,
        "last_updated": T0,
    }
    return {
        "event_type": "state_changed",
        "data": {"entity_id": entity_id, "old_state": None, "new_state": new_state},
        "origin": "LOCAL",
        "time_fired": T0,
    }


def body(
    config: dict[str, Any], entity_id: str, state: Any, attributes: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """HA's write body for one state under one `influxdb:` configuration; None if not written."""
    result = event_to_point(async_set(entity_id, state, attributes), Rules.from_mapping(config))
    if isinstance(result, Skipped):
        return None
    assert isinstance(result, Point)
    return {
        "measurement": result.measurement,
        "tags": dict(result.tags),
        "fields": dict(result.fields),
    }


# --- test_event_listener: state → state/value, attributes → fields ----------------------------

HA_ATTRS = {
    "unit_of_measurement": "foobars",
    "longitude": "1.1",
    "latitude": "2.2",
    "battery_level": "99%",
    "temperature": "20c",
    "last_seen": "Last seen 23 minutes ago",
    "updated_at": "2017-01-01T00:00:00",  # datetime(2017, 1, 1) as JSON
    "multi_periods": "0.120.240.2023873",
}
HA_FIELDS = {
    "longitude": 1.1,
    "latitude": 2.2,
    "battery_level_str": "99%",
    "battery_level": 99.0,
    "temperature_str": "20c",
    "temperature": 20.0,
    "last_seen_str": "Last seen 23 minutes ago",
    "last_seen": 23.0,
    "updated_at_str": "2017-01-01T00:00:00",
    "updated_at": 20170101000000.0,
    "multi_periods_str": "0.120.240.2023873",
}


@pytest.mark.parametrize(
    ("state", "state_field", "value_field"),
    [
        ("1", None, 1.0),
        ("1.0", None, 1.0),
        ("on", "on", 1.0),
        ("off", "off", 0.0),
        ("standby", "standby", None),
        ("foo", "foo", None),
    ],
)
def test_event_listener(state: str, state_field: str | None, value_field: float | None) -> None:
    expected_fields: dict[str, Any] = dict(HA_FIELDS)
    if state_field is not None:
        expected_fields["state"] = state_field
    if value_field is not None:
        expected_fields["value"] = value_field
    assert body({}, "fake.entity_id", state, HA_ATTRS) == {
        "measurement": "foobars",
        "tags": {"domain": "fake", "entity_id": "entity_id"},
        "fields": expected_fields,
    }


def test_event_listener_no_units() -> None:
    assert body({}, "fake.entity_id", 1, {}) == {
        "measurement": "fake.entity_id",
        "tags": {"domain": "fake", "entity_id": "entity_id"},
        "fields": {"value": 1.0},
    }


def test_event_listener_inf() -> None:
    attrs = {"bignumstring": "9" * 999, "nonumstring": "nan"}
    assert body({}, "fake.entity_id", 8, attrs) == {
        "measurement": "fake.entity_id",
        "tags": {"domain": "fake", "entity_id": "entity_id"},
        "fields": {"value": 8.0},
    }


@pytest.mark.parametrize(("state", "is_written"), [(1, True), ("unknown", False), ("", False),
                                                   ("unavailable", False)])  # fmt: skip
def test_event_listener_states(state: Any, is_written: bool) -> None:
    assert (body({}, "fake.entity_id", state) is not None) is is_written


def test_event_listener_invalid_type() -> None:
    """HA writes a list attribute as Python's repr; we write JSON (a documented difference)."""
    attrs = {"unit_of_measurement": "foobars", "longitude": "1.1", "latitude": "2.2",
             "invalid_attribute": ["value1", "value2"]}  # fmt: skip
    assert body({}, "fake.entity_id", "foo", attrs) == {
        "measurement": "foobars",
        "tags": {"domain": "fake", "entity_id": "entity_id"},
        "fields": {
            "state": "foo",
            "longitude": 1.1,
            "latitude": 2.2,
            "invalid_attribute_str": '["value1", "value2"]',
        },
    }


def test_event_listener_attribute_name_conflict() -> None:
    assert body({}, "fake.something", 1, {"value": "value_str"}) == {
        "measurement": "fake.something",
        "tags": {"domain": "fake", "entity_id": "something"},
        "fields": {"value": 1.0, "value__str": "value_str"},
    }


# --- include / exclude: domains, entities, entity_globs ---------------------------------------


@pytest.mark.parametrize(
    ("config", "cases"),
    [
        pytest.param(
            {"exclude": {"entities": ["fake.denylisted"], "entity_globs": [], "domains": []}},
            {"fake.ok": True, "fake.denylisted": False},
            id="denylist",
        ),
        pytest.param(
            {"exclude": {"domains": ["another_fake"], "entities": [], "entity_globs": []}},
            {"fake.ok": True, "another_fake.denylisted": False},
            id="denylist_domain",
        ),
        pytest.param(
            {"exclude": {"entity_globs": ["*.excluded_*"], "entities": [], "domains": []}},
            {"fake.ok": True, "fake.excluded_entity": False},
            id="denylist_glob",
        ),
        pytest.param(
            {"include": {"entities": ["fake.included"], "entity_globs": [], "domains": []}},
            {"fake.included": True, "fake.excluded": False},
            id="allowlist",
        ),
        pytest.param(
            {"include": {"domains": ["fake"], "entities": [], "entity_globs": []}},
            {"fake.ok": True, "another_fake.excluded": False},
            id="allowlist_domain",
        ),
        pytest.param(
            {"include": {"entity_globs": ["*.included_*"], "entities": [], "domains": []}},
            {"fake.included_entity": True, "fake.denied": False},
            id="allowlist_glob",
        ),
        pytest.param(
            {
                "include": {
                    "domains": ["fake"],
                    "entities": ["another_fake.included"],
                    "entity_globs": ["*.included_*"],
                },
                "exclude": {
                    "entities": ["fake.excluded"],
                    "domains": ["another_fake"],
                    "entity_globs": ["*.excluded_*"],
                },
            },
            {
                "fake.ok": True,
                "another_fake.included": True,
                "test.included_entity": True,
                "fake.excluded": False,
                "another_fake.denied": False,
                "fake.excluded_entity": False,
                "another_fake.included_entity": True,
            },
            id="filtered_allowlist",
        ),
        pytest.param(
            {
                "include": {
                    "entities": ["another_fake.included", "fake.excluded_pass"],
                    "entity_globs": [],
                    "domains": [],
                },
                "exclude": {
                    "domains": ["another_fake"],
                    "entity_globs": ["*.excluded_*"],
                    "entities": [],
                },
            },
            {
                "fake.ok": True,
                "another_fake.included": True,
                "fake.excluded_pass": True,
                "another_fake.denied": False,
                "fake.excluded_entity": False,
            },
            id="filtered_denylist",
        ),
    ],
)
def test_event_listener_filters(config: dict[str, Any], cases: dict[str, bool]) -> None:
    for entity_id, should_pass in cases.items():
        expected = {
            "measurement": entity_id,
            "tags": dict(zip(("domain", "entity_id"), entity_id.split("."), strict=True)),
            "fields": {"value": 1.0},
        }
        assert body(config, entity_id, 1) == (expected if should_pass else None), entity_id


def test_a_filtered_event_is_skipped_by_the_filtered_rule() -> None:
    config = Rules.from_mapping({"exclude": {"domains": ["fake"]}})
    assert event_to_point(async_set("fake.x", 1), config) == Skipped("filtered")


# --- measurements: default_measurement, override_measurement, measurement_attr ----------------


def test_event_listener_default_measurement() -> None:
    assert body({"default_measurement": "state"}, "fake.ok", 1) == {
        "measurement": "state",
        "tags": {"domain": "fake", "entity_id": "ok"},
        "fields": {"value": 1.0},
    }


def test_event_listener_unit_of_measurement_field() -> None:
    """With the measurement overridden, the unit stays a field (`unit_of_measurement_str`)."""
    attrs = {"unit_of_measurement": "foobars"}
    assert body({"override_measurement": "state"}, "fake.entity_id", "foo", attrs) == {
        "measurement": "state",
        "tags": {"domain": "fake", "entity_id": "entity_id"},
        "fields": {"state": "foo", "unit_of_measurement_str": "foobars"},
    }


COMPONENT_CONFIG = {
    "component_config": {"sensor.fake_humidity": {"override_measurement": "humidity"}},
    "component_config_glob": {"binary_sensor.*motion": {"override_measurement": "motion"}},
    "component_config_domain": {"climate": {"override_measurement": "hvac"}},
}


@pytest.mark.parametrize(
    ("entity_id", "measurement"),
    [
        ("sensor.fake_humidity", "humidity"),
        ("binary_sensor.fake_motion", "motion"),
        ("climate.fake_thermostat", "hvac"),
        ("other.just_fake", "other.just_fake"),
    ],
)
def test_event_listener_component_override_measurement(entity_id: str, measurement: str) -> None:
    domain, object_id = entity_id.split(".")
    assert body(COMPONENT_CONFIG, entity_id, 1) == {
        "measurement": measurement,
        "tags": {"domain": domain, "entity_id": object_id},
        "fields": {"value": 1.0},
    }


@pytest.mark.parametrize(
    ("entity_id", "attrs", "measurement"),
    [
        ("sensor.fake_temperature", {"device_class": "humidity"}, "sensor__humidity"),
        ("sensor.fake_humidity", {}, "humidity"),
        ("binary_sensor.fake_motion", {}, "motion"),
        ("climate.fake_thermostat", {}, "hvac"),
        ("other.just_fake", {}, "other"),
    ],
)
def test_event_listener_component_measurement_attr(
    entity_id: str, attrs: dict[str, Any], measurement: str
) -> None:
    config = {"measurement_attr": "domain__device_class", **COMPONENT_CONFIG}
    domain, object_id = entity_id.split(".")
    assert body(config, entity_id, 1, attrs) == {
        "measurement": measurement,
        "tags": {"domain": domain, "entity_id": object_id},
        "fields": {"value": 1.0},  # the device class made the measurement, so no field
    }


def test_measurement_attr_entity_id_names_the_measurement_after_the_entity() -> None:
    """HA's third choice: the full entity_id; the unit then stays a field."""
    result = body({"measurement_attr": "entity_id"}, "sensor.x", 1, {"unit_of_measurement": "W"})
    assert result == {
        "measurement": "sensor.x",
        "tags": {"domain": "sensor", "entity_id": "x"},
        "fields": {"value": 1.0, "unit_of_measurement_str": "W"},
    }


# --- tags, tags_attributes, ignore_attributes --------------------------------------------------


def test_event_listener_tags_attributes() -> None:
    attrs = {"friendly_fake": "tag_str", "field_fake": "field_str"}
    assert body({"tags_attributes": ["friendly_fake"]}, "fake.something", 1, attrs) == {
        "measurement": "fake.something",
        "tags": {"domain": "fake", "entity_id": "something", "friendly_fake": "tag_str"},
        "fields": {"value": 1.0, "field_fake_str": "field_str"},
    }


def test_static_tags_are_added_to_every_point() -> None:
    """HA's `tags` option: `json_body[tags].update(tags)` on every point."""
    assert body({"tags": {"instance": "prod", "source": "ha"}}, "fake.x", 1) == {
        "measurement": "fake.x",
        "tags": {"domain": "fake", "entity_id": "x", "instance": "prod", "source": "ha"},
        "fields": {"value": 1.0},
    }


IGNORE_CONFIG = {
    "ignore_attributes": ["ignore"],
    "component_config": {"sensor.fake_humidity": {"ignore_attributes": ["id_ignore"]}},
    "component_config_glob": {"binary_sensor.*motion": {"ignore_attributes": ["glob_ignore"]}},
    "component_config_domain": {"climate": {"ignore_attributes": ["domain_ignore"]}},
}


@pytest.mark.parametrize(
    ("entity_id", "kept"),
    [
        ("sensor.fake_humidity", {"glob_ignore": 1.0, "domain_ignore": 1.0}),
        ("binary_sensor.fake_motion", {"id_ignore": 1.0, "domain_ignore": 1.0}),
        ("climate.fake_thermostat", {"id_ignore": 1.0, "glob_ignore": 1.0}),
    ],
)
def test_event_listener_ignore_attributes(entity_id: str, kept: dict[str, float]) -> None:
    attrs = {"ignore": 1, "id_ignore": 1, "glob_ignore": 1, "domain_ignore": 1}
    domain, object_id = entity_id.split(".")
    assert body(IGNORE_CONFIG, entity_id, 1, attrs) == {
        "measurement": entity_id,
        "tags": {"domain": domain, "entity_id": object_id},
        "fields": {"value": 1.0, **kept},
    }


def test_event_listener_ignore_attributes_overlapping_entities() -> None:
    config = {
        "component_config": {"sensor.fake": {"override_measurement": "units"}},
        "component_config_domain": {"sensor": {"ignore_attributes": ["ignore"]}},
    }
    assert body(config, "sensor.fake", 1, {"ignore": 1}) == {
        "measurement": "units",
        "tags": {"domain": "sensor", "entity_id": "fake"},
        "fields": {"value": 1.0},
    }


# --- precision ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("precision", "timestamp"),
    [
        ("ns", T0_NS),
        ("us", T0_NS // 1_000),
        ("ms", T0_NS // 1_000_000),
        ("s", T0_NS // 1_000_000_000),
    ],
)
def test_precision(precision: str, timestamp: int) -> None:
    """HA hands its precision to the client; the line carries the time in that unit."""
    rules = Rules.from_mapping({"precision": precision})
    event = async_set("fake.entity_id", "1.9", {"unit_of_measurement": "foobars"})
    point = event_to_point(event, rules)
    assert isinstance(point, Point)
    assert (
        encode_point(point, rules.precision)
        == f"foobars,domain=fake,entity_id=entity_id value=1.9 {timestamp}"
    )


def test_every_ha_option_has_a_parity_test_here() -> None:
    """A new option in the rules must come with its HA mirror in this file."""
    covered = {
        "include", "exclude", "tags", "tags_attributes", "ignore_attributes",
        "default_measurement", "override_measurement", "measurement_attr", "component_config",
        "component_config_domain", "component_config_glob", "precision", "ignore_states",
    }  # fmt: skip
    from core.rules import OPTIONS

    assert set(OPTIONS) == covered
