"""Rules: HA's `influxdb:` options parsed and validated, HA's entity filter and config merge."""

from __future__ import annotations

from typing import Any

import pytest

from core.rules import (
    DEFAULT_IGNORE_STATES,
    IGNORED_OPTIONS,
    EntityConfig,
    EntityFilter,
    EntityRules,
    Rules,
    RulesError,
)


def problems_of(data: Any) -> tuple[str, ...]:
    with pytest.raises(RulesError) as info:
        Rules.from_mapping(data)
    return info.value.problems


# --- defaults and parsing ------------------------------------------------------------------


@pytest.mark.parametrize("data", [None, {}])
def test_no_configuration_gives_ha_defaults(data: Any) -> None:
    rules = Rules.from_mapping(data)
    assert rules == Rules()
    assert rules.measurement_attr == "unit_of_measurement"
    assert rules.precision == "ns"
    assert rules.ignore_states == frozenset({"unknown", "unavailable", ""})
    assert rules.ignore_states == frozenset(DEFAULT_IGNORE_STATES)
    assert rules.entity_filter.case == 1
    assert rules.tags == ()
    assert rules.default_measurement is None
    assert rules.override_measurement is None


def test_every_option_is_read_with_ha_names() -> None:
    rules = Rules.from_mapping(
        {
            "include": {
                "domains": ["sensor"],
                "entities": ["light.kitchen"],
                "entity_globs": ["binary_sensor.*"],
            },
            "exclude": {
                "domains": ["switch"],
                "entities": ["sensor.noisy"],
                "entity_globs": ["sensor.*_debug"],
            },
            "tags": {"instance": "prod", "source": "ha"},
            "tags_attributes": ["friendly_name"],
            "ignore_attributes": ["icon"],
            "default_measurement": "state",
            "override_measurement": "everything",
            "measurement_attr": "entity_id",
            "component_config": {"sensor.a": {"override_measurement": "a"}},
            "component_config_domain": {"sensor": {"ignore_attributes": ["x"]}},
            "component_config_glob": {"sensor.*_t": {"override_measurement": "t"}},
            "precision": "ms",
            "ignore_states": ["unavailable"],
        }
    )
    f = rules.entity_filter
    assert f.include_domains == {"sensor"}
    assert f.include_entities == {"light.kitchen"}
    assert f.include_entity_globs == {"binary_sensor.*"}
    assert f.exclude_domains == {"switch"}
    assert f.exclude_entities == {"sensor.noisy"}
    assert f.exclude_entity_globs == {"sensor.*_debug"}
    assert rules.tags == (("instance", "prod"), ("source", "ha"))
    assert rules.static_tags == {"instance": "prod", "source": "ha"}
    assert rules.tags_attributes == {"friendly_name"}
    assert rules.ignore_attributes == {"icon"}
    assert rules.default_measurement == "state"
    assert rules.override_measurement == "everything"
    assert rules.measurement_attr == "entity_id"
    assert rules.component_config == (("sensor.a", EntityConfig(override_measurement="a")),)
    assert rules.component_config_domain == (
        ("sensor", EntityConfig(ignore_attributes=frozenset({"x"}))),
    )
    assert rules.component_config_glob == (("sensor.*_t", EntityConfig(override_measurement="t")),)
    assert rules.precision == "ms"
    assert rules.ignore_states == {"unavailable"}


@pytest.mark.parametrize("attr", ["unit_of_measurement", "domain__device_class", "entity_id"])
def test_each_measurement_attr_is_accepted(attr: str) -> None:
    assert Rules.from_mapping({"measurement_attr": attr}).measurement_attr == attr


@pytest.mark.parametrize("precision", ["ns", "us", "ms", "s"])
def test_each_precision_is_accepted(precision: str) -> None:
    assert Rules.from_mapping({"precision": precision}).precision == precision


def test_ignore_states_can_be_emptied_to_record_everything() -> None:
    assert Rules.from_mapping({"ignore_states": []}).ignore_states == frozenset()


@pytest.mark.parametrize(
    ("option", "given", "expected"),
    [
        ("tags_attributes", "friendly_name", {"friendly_name"}),
        ("tags_attributes", ["a", "b"], {"a", "b"}),
        ("ignore_attributes", "icon", {"icon"}),
        ("ignore_states", "unknown", {"unknown"}),
    ],
)
def test_a_single_string_stands_for_a_list_as_in_ha(option: str, given: Any, expected: Any) -> None:
    assert getattr(Rules.from_mapping({option: given}), option) == expected


def test_filter_lists_accept_one_string_and_entities_accept_csv_like_ha() -> None:
    rules = Rules.from_mapping(
        {
            "include": {"domains": "sensor", "entity_globs": "light.*"},
            "exclude": {"entities": "sensor.a, sensor.b"},
        }
    )
    assert rules.entity_filter.include_domains == {"sensor"}
    assert rules.entity_filter.include_entity_globs == {"light.*"}
    assert rules.entity_filter.exclude_entities == {"sensor.a", "sensor.b"}


def test_entity_ids_are_lowercased_like_ha() -> None:
    rules = Rules.from_mapping(
        {
            "include": {"entities": ["Sensor.Kitchen"]},
            "component_config": {"Sensor.Kitchen": {"override_measurement": "k"}},
        }
    )
    assert rules.entity_filter.include_entities == {"sensor.kitchen"}
    assert rules.component_config[0][0] == "sensor.kitchen"


def test_scalars_become_strings_like_ha_cv_string() -> None:
    rules = Rules.from_mapping(
        {"tags": {"floor": 1, "ratio": 0.5, "on": True}, "default_measurement": 42}
    )
    assert rules.static_tags == {"floor": "1", "ratio": "0.5", "on": "True"}
    assert rules.default_measurement == "42"


def test_empty_sections_mean_nothing_configured() -> None:
    rules = Rules.from_mapping(
        {
            "include": None,
            "exclude": {"domains": None},
            "tags": None,
            "component_config": {"sensor.a": None},
        }
    )
    assert rules.entity_filter.case == 1
    assert rules.component_config == (("sensor.a", EntityConfig()),)


# --- HA connection options are accepted and ignored -----------------------------------------


def test_a_pasted_ha_block_with_connection_options_is_accepted() -> None:
    pasted = {
        "api_version": 2,
        "ssl": False,
        "host": "10.0.0.2",
        "port": 8086,
        "path": "/influx",
        "verify_ssl": True,
        "ssl_ca_cert": "/ssl/ca.pem",
        "token": "abc",
        "organization": "home",
        "bucket": "ha",
        "database": "home_assistant",
        "username": "u",
        "password": "p",
        "max_retries": 3,
        "precision": "s",
        "tags": {"source": "ha"},
        "exclude": {"domains": ["automation"]},
    }
    rules = Rules.from_mapping(pasted)
    assert rules.precision == "s"
    assert rules.static_tags == {"source": "ha"}
    assert rules.entity_filter.exclude_domains == {"automation"}


@pytest.mark.parametrize("option", sorted(IGNORED_OPTIONS))
def test_each_connection_option_is_ignored(option: str) -> None:
    assert Rules.from_mapping({option: object()}) == Rules()


# --- every problem is reported, each naming the option and what would be valid ---------------


def test_measurement_attr_error_names_the_valid_choices() -> None:
    assert problems_of({"measurement_attr": "foo"}) == (
        "measurement_attr: 'foo' is not one of unit_of_measurement, domain__device_class, "
        "entity_id",
    )


def test_precision_error_names_the_valid_choices() -> None:
    assert problems_of({"precision": "h"}) == ("precision: 'h' is not one of ns, us, ms, s",)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"tag": {}}, "tag: unknown option; did you mean tags?"),
        ({"foo": 1}, "foo: unknown option; valid options are include, exclude"),
        (
            {"component_config": {"sensor.a": {"override": "m"}}},
            "component_config[sensor.a].override: unknown option; valid options are "
            "override_measurement, ignore_attributes",
        ),
        ({"include": {"domain": "x"}}, "include.domain: unknown option; did you mean domains?"),
        ({"include": ["sensor"]}, "include: expected a mapping, got list"),
        ({"exclude": "sensor"}, "exclude: expected a mapping, got str"),
        ({"include": {"domains": {"a": 1}}}, "include.domains: expected a string or a list"),
        ({"include": {"domains": [None]}}, "include.domains[0]: expected a string, got NoneType"),
        ({"include": {"entities": ["Not an id"]}}, "include.entities: 'Not an id' is not a valid"),
        (
            {"exclude": {"entities": "sensor"}},
            "exclude.entities: 'sensor' is not a valid entity_id",
        ),
        ({"tags": ["a"]}, "tags: expected a mapping of tag: value, got list"),
        ({"tags": {"a": None}}, "tags.a: expected a string, got NoneType None"),
        ({"tags": {"a": [1]}}, "tags.a: expected a string, got list [1]"),
        ({"tags": {"a": ""}}, "tags.a: InfluxDB refuses empty tag keys and values"),
        ({"tags_attributes": {"a": 1}}, "tags_attributes: expected a string or a list"),
        ({"ignore_attributes": [["x"]]}, "ignore_attributes[0]: expected a string, got list"),
        ({"default_measurement": ["m"]}, "default_measurement: expected a string, got list"),
        ({"override_measurement": {"m": 1}}, "override_measurement: expected a string, got dict"),
        ({"measurement_attr": ["entity_id"]}, "measurement_attr: expected a string, got list"),
        ({"component_config": []}, "component_config: expected a mapping, got list"),
        ({"component_config": {"bad id": {}}}, "component_config: 'bad id' is not a valid"),
        (
            {"component_config": {"sensor.a": "m"}},
            "component_config[sensor.a]: expected a mapping with override_measurement or "
            "ignore_attributes, got str 'm'",
        ),
        (
            {"component_config_domain": {"sensor": {"override_measurment": "m"}}},
            "component_config_domain[sensor].override_measurment: unknown option; did you mean "
            "override_measurement?",
        ),
        (
            {"component_config_glob": {"sensor.*": {"ignore_attributes": {"a": 1}}}},
            "component_config_glob[sensor.*].ignore_attributes: expected a string or a list",
        ),
        (
            {"component_config_glob": {"sensor.*": {"override_measurement": [1]}}},
            "component_config_glob[sensor.*].override_measurement: expected a string, got list",
        ),
        ({"ignore_states": {"unknown": 1}}, "ignore_states: expected a string or a list"),
    ],
)
def test_each_wrong_option_is_named_with_what_would_be_valid(data: Any, expected: str) -> None:
    problems = problems_of(data)
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected), problems[0]


def test_every_problem_is_listed_at_once() -> None:
    problems = problems_of(
        {
            "measurment_attr": "entity_id",
            "measurement_attr": "foo",
            "precision": "h",
            "tags": {"a": None},
            "include": {"entities": ["Bad Id"]},
            "component_config": {"sensor.a": {"foo": 1}},
        }
    )
    assert len(problems) == 6
    with pytest.raises(RulesError, match=r"^2 problems in the rules:\n  - a: unknown option"):
        Rules.from_mapping({"a": 1, "b": 2})


def test_rules_error_is_a_value_error_with_a_readable_message() -> None:
    error = RulesError("HA_INGESTOR_CONFIG: cannot read x")
    assert isinstance(error, ValueError)
    assert str(error) == "HA_INGESTOR_CONFIG: cannot read x"
    assert error.problems == ("HA_INGESTOR_CONFIG: cannot read x",)


@pytest.mark.parametrize("data", [["include"], "include: {}", 3])
def test_rules_must_be_a_mapping(data: Any) -> None:
    (problem,) = problems_of(data)
    assert problem.startswith("the rules must be a mapping of HA's influxdb options, got")


def test_rules_built_directly_validate_themselves() -> None:
    with pytest.raises(RulesError, match="measurement_attr: 'x' is not one of"):
        Rules(measurement_attr="x")
    with pytest.raises(RulesError, match="precision: 'n' is not one of ns, us, ms, s"):
        Rules(precision="n")


# --- the entity filter: HA's cases 1..6 --------------------------------------------------------


def make_filter(include: dict[str, list[str]], exclude: dict[str, list[str]]) -> EntityFilter:
    return Rules.from_mapping({"include": include, "exclude": exclude}).entity_filter


FILTER_CASES: list[tuple[int, dict[str, list[str]], dict[str, list[str]], dict[str, bool]]] = [
    (
        1,
        {},
        {},
        {"sensor.a": True, "light.b": True, "anything.at_all": True},
    ),
    (
        2,
        {
            "domains": ["light"],
            "entities": ["switch.kitchen"],
            "entity_globs": ["binary_sensor.*_window"],
        },
        {},
        {
            "light.any": True,
            "switch.kitchen": True,
            "switch.hall": False,
            "binary_sensor.front_window": True,
            "binary_sensor.front_door": False,
            "sensor.x": False,
        },
    ),
    (
        3,
        {},
        {
            "domains": ["light"],
            "entities": ["switch.kitchen"],
            "entity_globs": ["binary_sensor.*_window"],
        },
        {
            "light.any": False,
            "switch.kitchen": False,
            "switch.hall": True,
            "binary_sensor.front_window": False,
            "binary_sensor.front_door": True,
            "sensor.x": True,
        },
    ),
    (
        4,
        {
            "domains": ["light", "sensor"],
            "entities": ["switch.keep", "light.keep"],
            "entity_globs": ["binary_sensor.*_window", "sensor.*_temp"],
        },
        {
            "domains": ["binary_sensor", "light"],
            "entities": ["light.bad", "light.keep", "binary_sensor.bad_window"],
            "entity_globs": ["light.*_strip", "sensor.outside_*"],
        },
        {
            # an included entity passes, even when also excluded
            "light.keep": True,
            "switch.keep": True,
            # an excluded entity fails, even in an included domain or glob
            "light.bad": False,
            "binary_sensor.bad_window": False,
            # an included glob passes, even when its domain or another glob is excluded
            "binary_sensor.front_window": True,
            "sensor.outside_temp": True,
            # an included domain passes unless a glob excludes it; excluded domains are ignored
            "light.kitchen": True,
            "light.kitchen_strip": False,
            "sensor.outside_humidity": False,
            "sensor.power": True,
            # anything else fails
            "switch.other": False,
            "binary_sensor.door": False,
        },
    ),
    (
        4,
        {"entity_globs": ["sensor.*"]},
        {"entities": ["sensor.noisy"]},
        {"sensor.a": True, "sensor.noisy": False, "light.a": False},
    ),
    (
        5,
        {"entities": ["binary_sensor.keep", "sensor.keep_debug"]},
        {
            "domains": ["binary_sensor"],
            "entities": ["light.bad"],
            "entity_globs": ["sensor.*_debug"],
        },
        {
            "binary_sensor.keep": True,
            "binary_sensor.other": False,
            "sensor.keep_debug": True,
            "sensor.x_debug": False,
            "sensor.x": True,
            "light.bad": False,
            "light.good": True,
        },
    ),
    (
        5,
        {"entities": ["sensor.keep_debug"]},
        {"entity_globs": ["sensor.*_debug"]},
        {"sensor.keep_debug": True, "sensor.x_debug": False, "light.x": True},
    ),
    (
        6,
        {"entities": ["sensor.a"]},
        {"entities": ["sensor.b"]},
        {"sensor.a": True, "sensor.b": False, "sensor.c": False, "light.a": False},
    ),
]


@pytest.mark.parametrize(
    ("case", "include", "exclude", "expected"),
    FILTER_CASES,
    ids=[f"case{c[0]}-{i}" for i, c in enumerate(FILTER_CASES)],
)
def test_entity_filter_follows_ha_case_by_case(
    case: int,
    include: dict[str, list[str]],
    exclude: dict[str, list[str]],
    expected: dict[str, bool],
) -> None:
    entity_filter = make_filter(include, exclude)
    assert entity_filter.case == case
    assert {entity_id: entity_filter(entity_id) for entity_id in expected} == expected


@pytest.mark.parametrize(
    ("glob", "entity_id", "matches"),
    [
        ("sensor.*", "sensor.a", True),
        ("sensor.*", "sensor_x.a", False),
        ("sensor.temp?", "sensor.temp1", True),
        ("sensor.temp?", "sensor.temp12", False),
        ("sensor.[ab]_x", "sensor.b_x", True),
        ("sensor.[ab]_x", "sensor.c_x", False),
        ("*.kitchen_*", "light.kitchen_main", True),
        ("sensor.a", "sensor.ab", False),
    ],
)
def test_globs_are_fnmatch_patterns_matched_whole(glob: str, entity_id: str, matches: bool) -> None:
    assert make_filter({"entity_globs": [glob]}, {})(entity_id) is matches


def test_an_entity_filter_can_be_built_directly() -> None:
    entity_filter = EntityFilter(include_domains=frozenset({"sensor"}))
    assert entity_filter.case == 2
    assert entity_filter("sensor.a")
    assert not entity_filter("light.a")


# --- component_config*: HA's EntityValues merge ---------------------------------------------


def test_entity_config_merges_domain_then_globs_then_entity() -> None:
    rules = Rules.from_mapping(
        {
            "ignore_attributes": ["icon"],
            "component_config_domain": {
                "sensor": {"override_measurement": "by_domain", "ignore_attributes": ["d"]}
            },
            "component_config_glob": {
                "sensor.*_temp": {"override_measurement": "by_glob"},
                "sensor.kitchen_*": {"ignore_attributes": ["g"]},
            },
            "component_config": {"sensor.kitchen_temp": {"override_measurement": "by_entity"}},
        }
    )
    assert rules.for_entity("sensor.kitchen_temp") == EntityRules(
        "by_entity", frozenset({"g", "icon"})
    )
    assert rules.for_entity("sensor.hall_temp") == EntityRules("by_glob", frozenset({"d", "icon"}))
    assert rules.for_entity("sensor.kitchen_power") == EntityRules(
        "by_domain", frozenset({"g", "icon"})
    )
    assert rules.for_entity("sensor.x") == EntityRules("by_domain", frozenset({"d", "icon"}))
    assert rules.for_entity("light.x") == EntityRules(None, frozenset({"icon"}))


def test_a_later_matching_glob_wins() -> None:
    rules = Rules.from_mapping(
        {
            "component_config_glob": {
                "sensor.*": {"override_measurement": "first"},
                "sensor.a*": {"override_measurement": "second"},
            }
        }
    )
    assert rules.for_entity("sensor.abc") == EntityRules("second", frozenset())
    assert rules.for_entity("sensor.xyz") == EntityRules("first", frozenset())


def test_a_level_replaces_ignore_attributes_rather_than_adding_as_ha_does() -> None:
    rules = Rules.from_mapping(
        {
            "component_config_domain": {"sensor": {"ignore_attributes": ["a", "b"]}},
            "component_config": {"sensor.x": {"ignore_attributes": ["c"]}},
        }
    )
    assert rules.for_entity("sensor.x") == EntityRules(None, frozenset({"c"}))


def test_an_empty_entity_override_still_replaces_the_domain_one_as_ha_does() -> None:
    rules = Rules.from_mapping(
        {
            "component_config_domain": {"sensor": {"override_measurement": "d"}},
            "component_config": {"sensor.x": {"override_measurement": ""}},
        }
    )
    assert rules.for_entity("sensor.x") == EntityRules("", frozenset())


def test_filtered_entities_have_no_rules_and_results_are_cached() -> None:
    rules = Rules.from_mapping({"include": {"domains": ["sensor"]}})
    assert rules.for_entity("light.x") is None
    first = rules.for_entity("sensor.x")
    assert first is not None
    assert rules.for_entity("sensor.x") is first


def test_the_per_entity_cache_is_bounded() -> None:
    rules = Rules()
    for n in range(20_000):
        rules.for_entity(f"sensor.e{n}")
    assert len(rules._cache) <= 16_384
    assert rules.for_entity("sensor.e1") == EntityRules(None, frozenset())


def test_rules_compare_by_options_not_by_cache() -> None:
    a, b = Rules.from_mapping({"tags": {"a": "b"}}), Rules.from_mapping({"tags": {"a": "b"}})
    a.for_entity("sensor.x")
    assert a == b
