"""Settings: defaults, derived values, one clear error per bad value, secrets kept secret."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import AliasChoices, Field

from config.destinations import Destination
from config.setting_groups import SettingGroup, group_of, in_group, set_first
from config.settings import (
    LISTENER_REPORT_INTERVAL_S,
    Settings,
    SettingsError,
    environment_names,
    get_settings,
    load_settings,
    read_env_file,
    setting_variables,
)
from workers.sinks.influx_sink import make_sink
from workers.sinks.influxdb3_sink import InfluxDB3Sink


def test_defaults_are_a_local_install() -> None:
    settings = load_settings()
    assert settings.celery_broker_url.get_secret_value() == "redis://127.0.0.1:6379/0"
    assert settings.state_redis_url() == "redis://127.0.0.1:6379/0"
    assert settings.health_port == 8001
    assert settings.influxdb_api_version == 1
    assert settings.ha_event_types == ("state_changed",)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://homeassistant.local:8123", "ws://homeassistant.local:8123/api/websocket"),
        ("https://ha.example.org/", "wss://ha.example.org/api/websocket"),
        ("ws://10.0.0.2:8123/api/websocket", "ws://10.0.0.2:8123/api/websocket"),
    ],
)
def test_ha_url_becomes_the_websocket_url(monkeypatch, given: str, expected: str) -> None:
    monkeypatch.setenv("HA_URL", given)
    assert load_settings().ha_url == expected


def test_event_types_are_a_comma_separated_list(monkeypatch) -> None:
    monkeypatch.setenv("HA_EVENT_TYPES", "state_changed, call_service")
    assert load_settings().ha_event_types == ("state_changed", "call_service")


def test_the_hold_timeout_keeps_its_former_name_and_the_new_one_wins(monkeypatch) -> None:
    """WORKER_HOLD_TIMEOUT was CELERY_VISIBILITY_TIMEOUT: a user's old `.env` keeps working."""
    assert load_settings().worker_hold_timeout == 3600
    monkeypatch.setenv("CELERY_VISIBILITY_TIMEOUT", "1800")
    assert load_settings().worker_hold_timeout == 1800
    monkeypatch.setenv("WORKER_HOLD_TIMEOUT", "900")
    assert load_settings().worker_hold_timeout == 900
    assert environment_names(
        "worker_hold_timeout", Settings.model_fields["worker_hold_timeout"]
    ) == (
        "WORKER_HOLD_TIMEOUT",
        "CELERY_VISIBILITY_TIMEOUT",
    )


def test_every_bad_value_is_named_with_what_would_be_valid(monkeypatch) -> None:
    monkeypatch.setenv("HA_URL", "ftp://nope")
    monkeypatch.setenv("INFLUXDB_API_VERSION", "3")
    monkeypatch.setenv("HEALTH_PORT", "99999")
    monkeypatch.setenv("CELERY_BROKER_URL", "mysql://x")
    with pytest.raises(SettingsError) as info:
        load_settings()
    text = str(info.value)
    for name in ("HA_URL", "INFLUXDB_API_VERSION", "HEALTH_PORT", "CELERY_BROKER_URL"):
        assert name in text
    assert "http://homeassistant.local:8123" in text


def test_cross_field_rules(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("INFLUXDB_API_VERSION", "2")
    monkeypatch.setenv("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
    with pytest.raises(SettingsError) as info:
        load_settings()
    text = str(info.value)
    assert "INFLUXDB_TOKEN" in text
    assert "INFLUXDB_ORG" in text
    assert "REDIS_URL" in text


def test_influxdb3_needs_a_token_and_makes_its_own_sink(monkeypatch) -> None:
    monkeypatch.setenv("INFLUXDB_KIND", "influxdb3")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "INFLUXDB_TOKEN: required with INFLUXDB_KIND=influxdb3" in str(info.value)

    monkeypatch.setenv("INFLUXDB_TOKEN", "apiv3_x")
    monkeypatch.setenv("INFLUXDB_DATABASE", "home")
    sink = make_sink(Destination.from_settings(load_settings()), "ms")
    assert isinstance(sink, InfluxDB3Sink)
    assert (sink.target, sink.precision) == ("database 'home'", "ms")
    sink.close()


def test_the_state_heartbeat_is_off_by_default_and_reads_its_lists(monkeypatch) -> None:
    assert load_settings().state_heartbeat_interval is None
    monkeypatch.setenv("STATE_HEARTBEAT_INTERVAL", "900")
    monkeypatch.setenv("STATE_HEARTBEAT_DOMAINS", "climate, input_number")
    monkeypatch.setenv("STATE_HEARTBEAT_ENTITY_GLOBS", "sensor.*_temperature")
    settings = load_settings()
    assert settings.state_heartbeat_interval == 900.0
    assert settings.state_heartbeat_domains == ("climate", "input_number")
    assert settings.state_heartbeat_entity_globs == ("sensor.*_temperature",)


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"STATE_HEARTBEAT_INTERVAL": "900"}, "set STATE_HEARTBEAT_DOMAINS"),
        ({"STATE_HEARTBEAT_DOMAINS": "climate"}, "set STATE_HEARTBEAT_INTERVAL"),
        ({"STATE_HEARTBEAT_INTERVAL": "0.5", "STATE_HEARTBEAT_DOMAINS": "climate"}, "1"),
    ],
)
def test_a_state_heartbeat_half_set_says_what_is_missing(
    monkeypatch, given: dict[str, str], named: str
) -> None:
    for name, value in given.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=named):
        load_settings()


def test_token_from_a_file(monkeypatch, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("abc.def.ghi\n")
    monkeypatch.setenv("HA_TOKEN_FILE", str(token_file))
    assert load_settings().ha_token_value() == "abc.def.ghi"


def test_secrets_never_show_in_descriptions_or_errors(monkeypatch) -> None:
    monkeypatch.setenv("HA_TOKEN", "ha-secret-token-123")
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://:broker-pass-456@127.0.0.1:6379/0")
    monkeypatch.setenv("INFLUXDB_PASSWORD", "influx-pass-789")
    settings = load_settings()
    text = repr(settings) + str(settings) + str(settings.describe())
    for secret in ("ha-secret-token-123", "broker-pass-456", "influx-pass-789"):
        assert secret not in text
        assert secret in settings.secrets()
    monkeypatch.setenv("HEALTH_PORT", "nope")
    with pytest.raises(SettingsError) as info:
        load_settings()
    for secret in ("ha-secret-token-123", "broker-pass-456", "influx-pass-789"):
        assert secret not in str(info.value)


def test_each_problem_is_a_line_of_its_own(monkeypatch) -> None:
    monkeypatch.setenv("INFLUXDB_API_VERSION", "2")
    monkeypatch.setenv("BROKER_MEMORY_WARN_PERCENT", "95")
    with pytest.raises(SettingsError) as info:
        load_settings()
    lines = str(info.value).splitlines()[1:]
    assert len(lines) == 3, lines
    assert all(line.startswith("  ") for line in lines)
    assert {line.split()[0].rstrip(":") for line in lines} == {
        "INFLUXDB_TOKEN",
        "INFLUXDB_ORG",
        "BROKER_MEMORY_WARN_PERCENT",
    }


@pytest.mark.parametrize(
    ("given", "line"),
    [
        (
            {"BROKER_MEMORY_WARN_PERCENT": "90", "BROKER_MEMORY_SPOOL_PERCENT": "90"},
            "BROKER_MEMORY_WARN_PERCENT (90) must be below BROKER_MEMORY_SPOOL_PERCENT (90): "
            "health warns before the listener spools (the defaults are 80 and 90)",
        ),
        (
            {"BROKER_MEMORY_SPOOL_PERCENT": "70"},
            "BROKER_MEMORY_WARN_PERCENT (80) must be below BROKER_MEMORY_SPOOL_PERCENT (70)",
        ),
        (
            {"HA_RECONNECT_INITIAL_DELAY": "90"},
            "HA_RECONNECT_INITIAL_DELAY (90 s) must not exceed HA_RECONNECT_MAX_DELAY (60 s), the "
            "cap of the backoff it starts (the defaults are 1 and 60)",
        ),
        (
            {"HA_TOKEN": "abc", "HA_TOKEN_FILE": __file__},
            "HA_TOKEN and HA_TOKEN_FILE: set only one of them",
        ),
        (
            {"CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//"},
            "REDIS_URL: required when the broker is not Redis",
        ),
    ],
    ids=["warn-equals-spool", "spool-below-warn", "reconnect", "token", "redis-url"],
)
def test_each_cross_field_rule_names_both_and_what_is_valid(
    monkeypatch, given: dict[str, str], line: str
) -> None:
    for name, value in given.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    lines = str(info.value).splitlines()
    assert any(line in text for text in lines), lines
    assert len(lines) == 2, "one rule broken, one line"


@pytest.mark.parametrize(
    "given",
    [
        {"BROKER_MEMORY_WARN_PERCENT": "89", "BROKER_MEMORY_SPOOL_PERCENT": "90"},
        {"HA_RECONNECT_INITIAL_DELAY": "60", "HA_RECONNECT_MAX_DELAY": "60"},
    ],
)
def test_pairs_just_inside_their_rule_are_accepted(monkeypatch, given: dict[str, str]) -> None:
    for name, value in given.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    for name, value in given.items():
        assert getattr(settings, name.lower()) == float(value)


def test_listener_stale_below_three_report_intervals_is_refused(monkeypatch) -> None:
    """A threshold under the listener's report interval would never clear its alarm."""
    assert LISTENER_REPORT_INTERVAL_S == 2.0
    monkeypatch.setenv("HEALTH_LISTENER_STALE", "1")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert (
        "  HEALTH_LISTENER_STALE: must be at least 6 s (3 times the listener's 2 s report interval)"
        in str(info.value).splitlines()
    )
    monkeypatch.setenv("HEALTH_LISTENER_STALE", "5.9")
    with pytest.raises(SettingsError, match="HEALTH_LISTENER_STALE: must be at least 6 s"):
        load_settings()


@pytest.mark.parametrize(("given", "expected"), [(None, 15.0), ("6", 6.0), ("40", 40.0)])
def test_listener_stale_valid_values_are_kept(monkeypatch, given: str | None, expected) -> None:
    if given is not None:
        monkeypatch.setenv("HEALTH_LISTENER_STALE", given)
    assert load_settings().health_listener_stale == expected


def test_every_setting_has_a_group_and_the_class_lists_them_group_by_group() -> None:
    groups = [group_of(name, field) for name, field in Settings.model_fields.items()]
    order = list(SettingGroup)
    assert groups == sorted(groups, key=order.index), "fields out of their group's place"
    assert set(groups) == set(SettingGroup), "a group with no setting"


def test_a_field_without_a_group_is_named() -> None:
    class Ungrouped(Settings):
        mystery_knob: int = Field(default=3, description="?")

    with pytest.raises(ValueError, match=r"Settings.mystery_knob has no group: give its Field"):
        group_of("mystery_knob", Ungrouped.model_fields["mystery_knob"])


def test_the_settings_a_user_sets_first() -> None:
    first = [
        environment_names(name, field)[0]
        for name, field in Settings.model_fields.items()
        if set_first(field)
    ]
    assert first[:4] == ["HA_URL", "HA_TOKEN", "HA_TOKEN_FILE", "CELERY_BROKER_URL"]
    assert {"INFLUXDB_URL", "INFLUXDB_DATABASE", "INFLUXDB_TOKEN", "HA_INGESTOR_CONFIG"} <= set(
        first
    )


def test_variables_of_a_field_with_aliases(monkeypatch) -> None:
    """A renamed setting keeps its old name as an alias; both are variables of the model."""

    class Renamed(Settings):
        new_knob: int = Field(
            default=1,
            validation_alias=AliasChoices("new_knob", "old_knob"),
            description="?",
            json_schema_extra=in_group(SettingGroup.WORKERS),
        )

    assert environment_names("new_knob", Renamed.model_fields["new_knob"]) == (
        "NEW_KNOB",
        "OLD_KNOB",
    )
    variables = setting_variables(Renamed)
    assert {"NEW_KNOB", "OLD_KNOB", "NEW_KNOB_FILE", "OLD_KNOB_FILE"} <= variables
    assert {"HA_TOKEN", "HA_TOKEN_FILE", "HEALTH_PORT_FILE"} <= variables
    assert "HA_TOKEN_FILE_FILE" not in variables
    monkeypatch.setenv("OLD_KNOB", "7")
    assert Renamed().new_knob == 7


def test_an_env_file_is_read_below_the_environment(monkeypatch, tmp_path: Path) -> None:
    env_file = tmp_path / "stack.env"
    env_file.write_text("CELERY_BROKER_URL='redis://127.0.0.1:6390/0'\nHEALTH_PORT=8101\n")
    monkeypatch.setenv("HEALTH_PORT", "8102")
    read_env_file(env_file)
    settings = load_settings()
    assert settings.celery_broker_url.get_secret_value() == "redis://127.0.0.1:6390/0"
    assert settings.health_port == 8102, "the environment wins over the file"
    assert get_settings() == settings
    read_env_file(None)
    assert load_settings().celery_broker_url.get_secret_value() == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize(
    "given",
    [
        {"ENRICHMENT_ENABLED": "false", "ENRICHMENT_FLOOR": "true"},
        {"ENRICHMENT_ENABLED": "false", "ENRICHMENT_LABELS": "inherited"},
    ],
)
def test_floor_and_labels_need_enrichment(monkeypatch, given: dict[str, str]) -> None:
    for name, value in given.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "ENRICHMENT_FLOOR and ENRICHMENT_LABELS need ENRICHMENT_ENABLED=true" in str(info.value)


def test_floor_and_labels_are_off_by_default_and_labels_says_what_is_valid(monkeypatch) -> None:
    settings = load_settings()
    assert (settings.enrichment_floor, settings.enrichment_labels) == (False, "off")
    monkeypatch.setenv("ENRICHMENT_LABELS", "own")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "ENRICHMENT_LABELS" in str(info.value)
    assert "'entity'" in str(info.value)


def test_a_home_name_is_key_safe_or_refused_with_what_would_be_valid(monkeypatch) -> None:
    assert load_settings().ha_instance is None
    assert load_settings().instance_tag is False
    monkeypatch.setenv("HA_INSTANCE", "holiday-home")
    monkeypatch.setenv("INSTANCE_TAG", "true")
    assert load_settings().ha_instance == "holiday-home"
    assert load_settings().instance_tag is True
    monkeypatch.setenv("HA_INSTANCE", "Holiday Home")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    text = str(caught.value)
    assert "HA_INSTANCE: 'Holiday Home' is not a valid home name" in text
    assert "lower-case letters, digits, - and _" in text
    assert "'holiday_home'" in text
