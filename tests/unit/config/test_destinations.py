"""The `destinations:` list of HA_INGESTOR_CONFIG: parsing, inheritance, secrets, and errors that
name every problem with its fix and never a secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from config.destinations import (
    DEFAULT_NAME,
    Destination,
    Destinations,
    DestinationsError,
    destinations_from,
    load_destinations,
)
from config.settings import Settings, load_settings
from core.rules import RulesError

SECRETS = ("s3cr3t-token-value", "hunter2-password", "url-pa55word")


def load(data: Any, settings: Settings | None = None) -> Destinations:
    return destinations_from(data, settings or load_settings())


def refusal(data: Any) -> str:
    with pytest.raises(RulesError) as caught:
        load(data)
    return str(caught.value)


def test_without_a_list_the_one_destination_is_influxdb_from_the_environment() -> None:
    settings = load_settings(
        influxdb_url="http://influx.lan:8086", influxdb_database="ha", influxdb_timeout=3
    )
    found = load({"include": {"domains": ["sensor"]}}, settings)
    [only] = found.all
    assert (only.name, only.kind, only.url, only.database, only.timeout) == (
        DEFAULT_NAME, "influxdb", "http://influx.lan:8086", "ha", 3.0,
    )  # fmt: skip
    assert not found.several
    assert only.rules.entity_filter("sensor.power")
    assert not only.rules.entity_filter("light.kitchen")
    assert load(None, settings).all == found.all, "no file at all: the same destination"


def test_an_entry_named_default_without_url_is_the_influxdb_variables() -> None:
    settings = load_settings(influxdb_url="http://old:8086", influxdb_database="homeassistant")
    found = load(
        {"destinations": [{"name": "default"}, {"name": "vm", "kind": "victoriametrics",
                                                 "url": "http://vm:8428/"}]},
        settings,
    )  # fmt: skip
    assert found.names() == ("default", "vm")
    assert found.several
    default, vm = found.all
    assert default == Destination.from_settings(settings, default.rules)
    assert (vm.kind, vm.url) == ("victoriametrics", "http://vm:8428"), "trailing / dropped"
    assert found.pick(None) is default
    assert found.pick("vm") is vm


def test_pick_without_default_takes_the_first_and_an_unknown_name_lists_the_names() -> None:
    found = load(
        {"destinations": [{"name": "old", "url": "http://a:8086"},
                          {"name": "new", "url": "http://b:8086"}]}
    )  # fmt: skip
    assert found.pick(None).name == "old"
    with pytest.raises(DestinationsError, match="no destination named 'nope'") as caught:
        found.pick("nope")
    assert "the configured ones are old, new" in str(caught.value)


def test_entries_inherit_top_level_options_and_replace_those_they_set() -> None:
    found = load(
        {
            "include": {"domains": ["sensor", "binary_sensor"]},
            "tags": {"home": "main"},
            "precision": "s",
            "destinations": [
                {"name": "default"},
                {
                    "name": "energy",
                    "url": "http://vm:8428",
                    "kind": "victoriametrics",
                    "include": {"entity_globs": ["sensor.*_energy"]},
                    "tags": {"store": "archive"},
                },
            ],
        }
    )
    default, energy = found.all
    assert default.rules.entity_filter("binary_sensor.door")
    assert default.rules.entity_filter("sensor.power")
    assert default.rules.static_tags == {"home": "main"}
    # `include` and `tags` are replaced as a whole, not merged; `precision` is inherited.
    assert energy.rules.entity_filter("sensor.kitchen_energy")
    assert not energy.rules.entity_filter("sensor.power")
    assert not energy.rules.entity_filter("binary_sensor.door")
    assert energy.rules.static_tags == {"store": "archive"}
    assert (default.rules.precision, energy.rules.precision) == ("s", "s")


def test_every_connection_key_and_the_defaults_of_those_left_out() -> None:
    [v2, v3, plain] = load(
        {
            "destinations": [
                {"name": "v2", "url": "https://cloud:8086", "api_version": 2, "token": "t",
                 "organization": "home", "bucket": "long", "timeout": 2.5},
                {"name": "v3", "kind": "influxdb3", "url": "http://v3:8181", "token": "t",
                 "database": "ha"},
                {"name": "plain", "url": "http://v1:8086", "username": "u", "password": "p",
                 "retention_policy": "year"},
            ]
        }
    ).all  # fmt: skip
    assert (v2.api_version, v2.org, v2.bucket, v2.timeout) == (2, "home", "long", 2.5)
    assert (v3.kind, v3.database) == ("influxdb3", "ha")
    assert (plain.kind, plain.api_version, plain.database, plain.timeout) == (
        "influxdb", 1, "home_assistant", 10.0,
    )  # fmt: skip
    assert (plain.username, plain.retention_policy) == ("u", "year")
    assert plain.password is not None
    assert plain.password.get_secret_value() == "p"
    assert plain.describe() == "plain: InfluxDB v1 http://v1:8086 database home_assistant"
    assert v2.describe() == "v2: InfluxDB v2 https://cloud:8086 org home bucket long"


def test_secrets_come_from_files_stripped_of_their_newline(tmp_path: Path) -> None:
    token, password = tmp_path / "token", tmp_path / "password"
    token.write_text("file-token\n", encoding="utf-8")
    password.write_text("file-password\n", encoding="utf-8")
    [v2, v1] = load(
        {"destinations": [
            {"name": "v2", "url": "http://a:8086", "api_version": 2, "org": "o",
             "token_file": str(token)},
            {"name": "v1", "url": "http://b:8086", "username": "u", "password_file": str(password)},
        ]}
    ).all  # fmt: skip
    assert v2.token is not None
    assert v2.token.get_secret_value() == "file-token"
    assert v1.password is not None
    assert v1.password.get_secret_value() == "file-password"
    assert "file-token" not in repr(v2)
    assert "file-password" not in v1.describe()


def test_a_secret_file_that_cannot_be_read_or_given_twice_is_explained(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    text = refusal(
        {"destinations": [
            {"name": "a", "url": "http://a:8086", "api_version": 2, "org": "o",
             "token_file": str(missing)},
            {"name": "b", "url": "http://b:8086", "password": "p", "password_file": str(missing)},
        ]}
    )  # fmt: skip
    assert f"destination 1 (a): token_file: cannot read {missing}" in text
    assert "make it readable by ha-ingestor" in text
    assert "destination 2 (b): password and password_file: set only one of them" in text


def test_ha_secret_tags_are_refused_with_the_file_fix(tmp_path: Path) -> None:
    path = tmp_path / "ha-ingestor.yaml"
    path.write_text(
        "destinations:\n"
        "  - name: cloud\n"
        "    url: https://cloud:8086\n"
        "    api_version: 2\n"
        "    org: home\n"
        "    token: !secret influx_token\n",
        encoding="utf-8",
    )
    with pytest.raises(RulesError) as caught:
        load_destinations(load_settings(ha_ingestor_config=path))
    text = str(caught.value)
    assert str(path) in text
    assert "destination 1 (cloud): token: HA's !secret and !env_var are not read here" in text
    assert "`token_file: /path/to/file`" in text
    assert "influx_token" not in text


def test_ha_host_and_port_keys_ask_for_one_url() -> None:
    text = refusal({"destinations": [{"name": "ha", "host": "influx", "port": 8086, "ssl": True}]})
    assert "host, port, ssl: give the whole address as `url: http://host:8086`" in text


@pytest.mark.parametrize("name", ["Archive", "has space", "-dash-first", "x" * 41, "", 7, None])
def test_bad_names_are_refused_with_what_a_name_may_hold(name: object) -> None:
    text = refusal({"destinations": [{"name": name, "url": "http://a:8086"}]})
    assert f"name {name!r}: give a short name of lower-case letters, digits, - and _" in text


def test_a_name_used_twice_is_refused() -> None:
    text = refusal(
        {"destinations": [{"name": "a", "url": "http://a:8086"},
                          {"name": "a", "url": "http://b:8086"}]}
    )  # fmt: skip
    assert "destination name 'a' is used twice: give each a name of its own" in text


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "v2", "url": "http://a:8086", "api_version": 2, "org": "o"},
        {"name": "v3", "kind": "influxdb3", "url": "http://a:8181"},
    ],
)
def test_v2_and_influxdb3_need_a_token(entry: dict[str, Any]) -> None:
    text = refusal({"destinations": [entry]})
    assert "token (or token_file): required by the v2 API and by InfluxDB 3" in text


@pytest.mark.parametrize(
    ("destinations", "expected"),
    [
        ([], "`destinations:` must be a list of destinations, each with at least a name"),
        ({"name": "a"}, "`destinations:` must be a list"),
        (["a"], "destination 1 (unnamed): each destination is a mapping"),
        ([{"name": "x", "url": "ftp://x"}], "url: must look like http://127.0.0.1:8086"),
        ([{"name": "x", "url": "http://x", "kind": "prom"}],
         "kind: Input should be 'influxdb', 'influxdb3' or 'victoriametrics'"),
        ([{"name": "x", "url": "http://x", "timeout": 0}], "timeout: Input should be greater"),
        ([{"name": "x", "url": "http://x", "tokn": "t"}],
         "tokn: not a destination key; did you mean token?"),
        ([{"name": "x", "url": "http://x", "measurement_attr": "unit"}],
         "measurement_attr: 'unit' is not one of"),
        ([{"name": "default", "token": "t"}],
         "the `default` destination without a url is INFLUXDB_*: set its connection there"),
    ],
)  # fmt: skip
def test_each_mistake_is_named_with_its_fix(destinations: Any, expected: str) -> None:
    assert expected in refusal({"destinations": destinations})


def test_every_problem_is_listed_at_once_and_no_secret_is_in_the_text() -> None:
    token, password, url_password = SECRETS
    text = refusal(
        {
            "destinations": [
                {"name": "a", "url": f"http://u:{url_password}@a:8086", "kind": "nope",
                 "password": password},
                {"name": "b", "url": "http://b:8086", "api_version": 2, "token": token},
                {"name": "c", "url": "not a url", "token": token, "api_version": 2, "org": "o"},
                {"name": "d", "url": "http://d:8086", "passwrd": password},
                {"name": "E", "url": "http://e:8086", "token": token},
            ]
        }
    )  # fmt: skip
    lines = text.splitlines()
    assert lines[0] == "HA_INGESTOR_CONFIG:"
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        f"destination {n} ({name})" for n, name in enumerate("abcdE", start=1)
    ]
    assert "org: required with api_version 2" in lines[2]
    assert "passwrd: not a destination key; did you mean password?" in lines[4]
    for secret in SECRETS:
        assert secret not in text


@pytest.mark.parametrize("key", ["verify_ssl", "ssl_ca_cert", "max_retries"])
def test_has_connection_options_a_destination_cannot_honour_are_refused(key: str) -> None:
    """A user must not believe `verify_ssl: false` applies: it is refused with what happens."""
    entry = {"name": "archive", "url": "https://127.0.0.1:8086", key: "x"}
    with pytest.raises(RulesError) as info:
        destinations_from({"destinations": [entry]}, load_settings())
    assert f"{key}: not an option here" in str(info.value)
    assert "remove it" in str(info.value)


def test_a_sinks_fix_names_the_destinations_own_key_not_the_influxdb_variable() -> None:
    """The sinks word their fixes for INFLUXDB_*; for another destination they name its key."""
    settings = load_settings()
    entry = {"name": "archive", "url": "http://127.0.0.1:8086"}
    archive = destinations_from({"destinations": [entry]}, settings).get("archive")
    fix = "set INFLUXDB_TOKEN to a token of this server, or correct INFLUXDB_URL"
    assert archive.in_own_words(fix) == (
        "set `token` of destination 'archive' to a token of this server, or correct `url` of "
        "destination 'archive'"
    )
    default = destinations_from(None, settings).get("default")
    assert default.in_own_words(fix) == fix
