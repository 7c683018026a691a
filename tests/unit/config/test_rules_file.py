"""The rules file: HA's YAML, pasted as is, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.rules_file import load_rules
from core.rules import RulesError


def test_a_pasted_influxdb_block_with_secrets_loads(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "influxdb:\n"
        "  host: 192.168.1.10\n"
        "  token: !secret influx_token\n"
        "  tags:\n"
        "    source: ha\n"
        "  exclude:\n"
        "    domains: [automation]\n",
        encoding="utf-8",
    )
    rules = load_rules(path)
    assert dict(rules.static_tags) == {"source": "ha"}
    assert rules.for_entity("automation.lights") is None
    assert rules.for_entity("sensor.x") is not None


def test_errors_name_the_file_and_the_option(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("measurement_attr: colour\n", encoding="utf-8")
    with pytest.raises(RulesError, match=r"rules\.yaml.*measurement_attr"):
        load_rules(path)


def test_no_file_means_ha_defaults() -> None:
    rules = load_rules(None)
    assert rules.measurement_attr == "unit_of_measurement"
    assert rules.precision == "ns"
