"""docs/configuration.md is generated from the code and must not drift from it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import Field

from config.main_command import main as cli_main
from config.rules_file import load_rules
from config.setting_groups import SettingGroup, group_of, set_first
from config.settings import Settings
from core import rules
from devtools import docs_reference

REPO = Path(__file__).resolve().parents[3]


VARIABLE_CELL = r"^\| `([A-Z0-9_]+)`(?: \(or [^|]*\))? \|"
"""A table row's variable: its current name, its former names in parentheses after it."""


def _variable_of(line: str) -> str | None:
    match = re.match(VARIABLE_CELL, line)
    return match.group(1) if match else None


def test_configuration_md_is_the_generated_reference() -> None:
    committed = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == docs_reference.render(), (
        "docs/configuration.md differs from the settings model and the rules: run "
        "`ha-ingestor docs-reference --write` and commit docs/configuration.md"
    )


def test_every_setting_is_documented_with_its_default() -> None:
    text = docs_reference.render()
    settings = Settings()
    for name, field in Settings.model_fields.items():
        row = next(
            (line for line in text.splitlines() if _variable_of(line) == name.upper()),
            None,
        )
        assert row is not None, f"{name.upper()} is missing from the reference"
        assert field.description is not None
        assert " ".join(field.description.split()).replace("|", "\\|") in row
        if getattr(settings, name) is None:
            assert "*unset*" in row


def test_a_setting_without_description_stops_the_generator() -> None:
    class Undocumented(Settings):
        mystery_knob: int = Field(default=3)

    with pytest.raises(ValueError, match="mystery_knob has no description"):
        docs_reference.environment_rows(Undocumented)


def test_every_yaml_option_has_a_meaning_and_no_stale_ones() -> None:
    assert set(docs_reference.YAML_MEANINGS) == set(rules.OPTIONS)
    assert set(docs_reference.HA_CONNECTION_OPTIONS) == set(rules.IGNORED_OPTIONS)
    documented = {row[0].strip("`") for row in docs_reference.yaml_rows()}
    assert documented == set(rules.OPTIONS)


def test_ha_connection_options_point_at_real_variables() -> None:
    variables = {name.upper() for name in Settings.model_fields} | {"SSL_CERT_FILE"}
    for option, target in docs_reference.HA_CONNECTION_OPTIONS.items():
        for named in re.findall(r"`([A-Z][A-Z0-9_]+)`", target):
            assert named in variables, f"{option} maps to {named}, which is no setting"


def test_yaml_example_in_the_reference_loads(tmp_path: Path) -> None:
    block = re.search(r"```yaml\n(.*?)```", docs_reference.render(), re.S)
    assert block is not None
    path = tmp_path / "rules.yaml"
    path.write_text(block.group(1), encoding="utf-8")
    loaded = load_rules(path)
    assert loaded.entity_filter("sensor.kitchen_temperature")
    assert not loaded.entity_filter("sensor.plug_linkquality")
    assert not loaded.entity_filter("light.kitchen")
    assert dict(loaded.tags) == {"instance": "home"}
    assert yaml.safe_load(block.group(1))["tags_attributes"] == ["friendly_name"]


def test_check_and_write_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "configuration.md"
    path.write_text("# stale\n", encoding="utf-8")
    assert cli_main(["docs-reference", "--check", "--path", str(path)]) == 1
    assert "docs-reference --write" in capsys.readouterr().err
    assert cli_main(["docs-reference", "--write", "--path", str(path)]) == 0
    assert path.read_text(encoding="utf-8") == docs_reference.render()
    assert cli_main(["docs-reference", "--check", "--path", str(path)]) == 0


def test_module_entry_point_prints_the_reference() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "devtools.docs_reference"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == docs_reference.render()


def _health_codes_in_code() -> set[str]:
    """Every `Check("code", …)` the health rules can produce."""
    codes: set[str] = set()
    for package in ("core", "config", "listener", "workers"):
        for path in (REPO / package).rglob("*.py"):
            codes |= set(re.findall(r'Check\(\s*"([a-z_]+)"', path.read_text(encoding="utf-8")))
    return codes


def test_operations_explains_every_health_code() -> None:
    text = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z_]+)` \| (?:degraded|unhealthy) \|", text, re.M))
    code = _health_codes_in_code()
    assert code, "no health codes found: has core/health_rules.py moved?"
    assert documented == code, (
        f"docs/operations.md's health table is out of date: missing {sorted(code - documented)}, "
        f"gone from the code {sorted(documented - code)}"
    )


def test_relative_links_in_the_docs_resolve() -> None:
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_the_reference_starts_with_what_a_user_sets_first_then_every_group() -> None:
    text = docs_reference.render()
    headings = re.findall(r"^### (.+)$", text, re.M)
    groups = [group.title for group in SettingGroup]
    assert headings[0] == "Start here"
    assert headings[1 : 1 + len(groups)] == groups
    start = text.split("### Start here", 1)[1].split("\n### ", 1)[0]
    variables = re.findall(VARIABLE_CELL, start, re.M)
    assert variables[:4] == ["HA_URL", "HA_TOKEN", "HA_TOKEN_FILE", "CELERY_BROKER_URL"]
    assert variables == _first_variables()


def test_each_setting_is_listed_under_its_own_group() -> None:
    text = docs_reference.render()
    for group in SettingGroup:
        section = text.split(f"### {group.title}\n", 1)[1].split("\n### ", 1)[0]
        listed = re.findall(VARIABLE_CELL, section, re.M)
        expected = [
            name.upper()
            for name, field in Settings.model_fields.items()
            if group_of(name, field) is group
        ]
        assert listed == expected, group


def _first_variables() -> list[str]:
    return [name.upper() for name, field in Settings.model_fields.items() if set_first(field)]


def test_the_readme_at_a_glance_lists_what_a_user_sets_first() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Main settings at a glance", 1)[1].split("\n## ", 1)[0]
    named: list[str] = []
    for row in re.findall(r"^\| (.+?) \| ", table, re.M):
        named += [n for n in re.findall(r"`([A-Z0-9_]+)`", row) if n not in named]
    assert named == _first_variables()


def test_every_destination_key_is_documented_and_the_example_loads(tmp_path: Path) -> None:
    from config.destinations import CONNECTION_KEYS, destinations_from
    from config.settings import load_settings

    assert {row[0].strip("`") for row in docs_reference.destination_rows()} == CONNECTION_KEYS
    blocks = re.findall(r"```yaml\n(.*?)```", docs_reference.render(), re.S)
    [example] = [b for b in blocks if "destinations:" in b]
    token = tmp_path / "token"
    token.write_text("t\n", encoding="utf-8")
    data = yaml.safe_load(example.replace("/run/secrets/influx2_token", str(token)))
    default, archive = destinations_from(data, load_settings()).all
    assert (default.name, archive.name, archive.api_version, archive.bucket) == (
        "default", "archive", 2, "long_term",
    )  # fmt: skip
    assert default.rules.entity_filter("binary_sensor.door")
    assert archive.rules.entity_filter("sensor.heat_pump_energy")
    assert not archive.rules.entity_filter("sensor.power")


def test_the_destination_examples_of_the_deployment_guide_load(tmp_path: Path) -> None:
    from config.destinations import destinations_from
    from config.settings import load_settings

    token = tmp_path / "token"
    token.write_text("t\n", encoding="utf-8")
    text = (REPO / "docs" / "deployment.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "name: " in b]
    assert len(blocks) == 3
    for block in blocks:
        block = re.sub(r"/etc/ha-ingestor/\S+\.token", str(token), block)
        if block.startswith("  - name"):  # an entry shown alone
            block = "destinations:\n  - name: default\n" + block
        found = destinations_from(yaml.safe_load(block), load_settings())
        assert found.names()[0] == "default"
        assert found.several
