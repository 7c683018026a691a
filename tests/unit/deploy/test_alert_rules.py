"""deploy/prometheus: the alert rules hold up, and each alert is a health reason.

promtool (Debian's `prometheus` package, installed by `make test`) checks the rules and the
Prometheus configuration and runs the rules' unit tests (deploy/prometheus/alerts_test.yml).
That the metrics the rules name exist, and that each condition fires for real, is
tests/e2e/test_alerts.py's part.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
WITHOUT_ALERT = {
    "listener_stale": "a listener that stopped reporting cannot serve /metrics either: "
    "Prometheus sees it as `up == 0`, the listener_down alert",
}
"""Health reasons with no alert of their own, and why."""


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail(
            "promtool is not installed: run `apt-get install prometheus` (`make test` does it)",
            pytrace=False,
        )
    return subprocess.run(
        [binary, *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def health_codes() -> set[str]:
    """Every `Check("code", …)` the health rules can produce (as test_docs_reference reads it)."""
    codes: set[str] = set()
    for package in ("core", "config", "listener", "workers"):
        for path in (REPO / package).rglob("*.py"):
            codes |= set(re.findall(r'Check\(\s*"([a-z_]+)"', path.read_text(encoding="utf-8")))
    return codes


def test_promtool_finds_the_rules_and_the_configuration_valid() -> None:
    rules = promtool("check", "rules", "alerts.yml")
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in rules.stdout
    config = promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr
    assert "SUCCESS: 1 rule files found" in config.stdout


def test_the_rules_unit_tests_pass() -> None:
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_a_health_reason_and_fires_on_it() -> None:
    codes = health_codes()
    assert codes, "no health codes found: has core/health_rules.py moved?"
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names)), "an alert is defined twice"
    assert set(names) <= codes, f"alerts that are no health reason: {set(names) - codes}"
    missing = codes - set(names) - set(WITHOUT_ALERT)
    assert not missing, f"health reasons without an alert: {sorted(missing)} (or WITHOUT_ALERT)"
    for rule in alert_rules():
        name, expr = rule["alert"], rule["expr"]
        if name == "listener_down":
            assert expr == 'up{job="ha-ingestor-listener"} == 0'
            assert rule["labels"] == {"code": "listener_down", "severity": "unhealthy"}
        elif name == "home_silent":  # from beat's fleet view: one alert per home, its name
            assert "max by (home) (ha_ingestor_home_silent)" in expr
            assert rule["labels"] == {"code": "home_silent", "severity": "unhealthy"}
        else:
            # The health check itself: its `code` and `severity` labels become the alert's.
            assert expr == f'ha_ingestor_health_check{{code="{name}"}} == 1', name
            assert "labels" not in rule, name
        assert rule["annotations"]["summary"], name
        assert rule["annotations"]["description"], name


def test_every_alert_has_a_unit_test() -> None:
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text(encoding="utf-8"))
    tested = {
        case["alertname"]
        for test in tests["tests"]
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert tested == {rule["alert"] for rule in alert_rules()}


def test_the_scrape_jobs_are_the_ones_the_rules_select() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"ha-ingestor-listener", "ha-ingestor-flower"}
    assert jobs["ha-ingestor-listener"]["static_configs"][0]["targets"] == ["listener:8001"]
    assert jobs["ha-ingestor-listener"]["honor_labels"] is True, "instance: each listener's home"
    assert jobs["ha-ingestor-flower"]["static_configs"][0]["targets"] == ["flower:5555"]
    assert config["rule_files"] == ["alerts.yml"]
