"""The image and docker-compose.yml run as Home Assistant users deploy them, faults included.

A dockerd of the test's own (engine.py) runs the repository's compose file with a test-only
override (compose.test.yml: servers built from Debian's packages, InfluxDB 1.x in place of
2.x, healthchecks every 2 s) next to the HA simulator as Home Assistant. The tests run in
order on one stack. Throughout, the simulator records every event it sends; after each fault
InfluxDB must hold exactly the points of those events and of the first snapshot: each once,
none missing, nothing else. Figures (image size, time to healthy, fault runs, memory per
container) are printed at the end for docs/deployment.md.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.docker.stack import APP_SERVICES, FLOWER_AUTH, SERVICES, TOKEN, Stack, get
from tests.expectations import SeriesKey, expected_points, ha_states, state_events
from tests.helpers import InfluxDatabase, InfluxQL, wait_until

# The first test also builds the images: about 2.5 min without the base cache, on a busy machine.
pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

INFLUX = InfluxDatabase(
    "http://127.0.0.1:8086", "home_assistant", InfluxQL("http://127.0.0.1:8086")
)
HEALTH = "http://127.0.0.1:8001/health"
FLOWER = "http://127.0.0.1:5555"
PROMETHEUS = "http://127.0.0.1:9090"
UID = 10001
PUBLISHED = (8001, 5555, 8086, 9090)  # docker-compose.yml's, on 127.0.0.1
LIMITS = Path(__file__).resolve().parents[2] / "deploy" / "docker-compose.limits.yml"
SIZE_TARGET_MB = 250
FLOW_EVENTS = 200  # before and after each fault (4 s at 50/s)


class Ledger:
    """What Home Assistant said (first snapshot + recorded events) against what InfluxDB holds."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.initial: list[dict[str, Any]] = []

    def expected(self) -> dict[SeriesKey, Any]:
        return expected_points(state_events(self.initial) + self.stack.sent())

    def rows(self) -> list[dict[str, Any]]:
        try:
            return INFLUX.query("SELECT * FROM /.*/ GROUP BY *")
        except AssertionError:  # the database is created by the first worker
            return []

    def assert_exactly_once(self, timeout: float = 120) -> tuple[int, int]:
        """Waits until every expected point landed; (events sent, rows found)."""

        def landed() -> bool:
            rows = self.rows()
            found = {(r["domain"], r["entity_id"], int(r["time"])) for r in rows}
            return bool(rows) and self.expected().keys() <= found

        wait_until(landed, timeout, 0.5, message="every event HA sent in InfluxDB")
        rows, expected = self.rows(), self.expected()
        found = {(r["domain"], r["entity_id"], int(r["time"])) for r in rows}
        assert len(rows) == len(found), "one row per (entity, time): no second series for a point"
        assert found == expected.keys(), (
            f"missing {len(expected.keys() - found)}, unexpected {len(found - expected.keys())}"
        )
        return len(self.stack.sent()), len(rows)


@pytest.fixture(scope="module")
def ledger(stack: Stack) -> Ledger:
    return Ledger(stack)


def _health() -> dict[str, Any]:
    got = get(HEALTH)
    return json.loads(got[1]) if got else {}


def _enqueued() -> int:
    return int((_health().get("listener") or {}).get("events_enqueued") or 0)


def _flow(stack: Stack, ledger: Ledger, fault: Callable[[], None], name: str,
          figures: dict[str, object]) -> tuple[int, int]:  # fmt: skip
    """Events flowing before, during and after `fault`, then every one landed exactly once:
    (events HA sent while the fault lasted, points expected and found)."""
    stack.signal_ha("USR1")
    try:
        _more_events(stack, FLOW_EVENTS)
        before = len(stack.sent())
        fault()
        during = len(stack.sent()) - before
        _more_events(stack, FLOW_EVENTS)
    finally:
        stack.signal_ha("USR2")
    start = time.monotonic()
    sent, rows = ledger.assert_exactly_once()
    figures[f"fault {name}"] = (
        f"events sent so far {sent} ({during} during the fault) + snapshot "
        f"{len(ledger.initial)}, points expected {len(ledger.expected())}, found {rows} "
        f"({time.monotonic() - start:.1f} s after the events stopped)"
    )
    return during, rows


def _more_events(stack: Stack, count: int) -> None:
    target = len(stack.sent()) + count
    wait_until(lambda: len(stack.sent()) >= target, 60, 0.2, message=f"HA sending {count} events")


def _crash(stack: Stack, service: str) -> None:
    """The service's process dies by SIGKILL (as by the OOM killer); compose's `restart:
    unless-stopped` brings the container back. (`docker kill` would not do: Docker counts it as
    a manual stop, which no restart policy undoes.)"""
    state = stack.inspect(service)["State"]
    before, pid = stack.inspect(service)["RestartCount"], state["Pid"]
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    os.kill(int(children[0]) if children else pid, signal.SIGKILL)  # behind `init: true`'s tini
    wait_until(lambda: stack.inspect(service)["RestartCount"] > before
               and stack.inspect(service)["State"]["Running"], 60, 0.5,
               message=f"{service} restarted by its restart policy")  # fmt: skip


# --- up -----------------------------------------------------------------------------------------


def test_every_service_becomes_healthy(
    stack: Stack, ledger: Ledger, figures: dict[str, object]
) -> None:
    figures["image builds s"] = {k: round(v, 1) for k, v in stack.images.seconds.items()}
    for port in PUBLISHED:
        with socket.socket() as probe:
            taken = probe.connect_ex(("127.0.0.1", port)) == 0
        assert not taken, (
            f"127.0.0.1:{port} is taken: docker-compose.yml publishes it; stop "
            "what listens there (another stack?) and run the test again"
        )
    stack.ha("up", "-d")
    ha_port = stack.ha_port()
    ledger.initial = ha_states(f"ws://127.0.0.1:{ha_port}/api/websocket", TOKEN)
    start = time.monotonic()
    stack.compose("up", "-d")  # returns once redis and influxdb are healthy (depends_on)
    figures["seconds to healthy (2 s checks)"] = {
        s: round(t, 1) for s, t in stack.wait_healthy(SERVICES, 180, since=start).items()
    }
    wait_until(lambda: _enqueued() >= len(ledger.initial), 60, 0.5,
               message="the listener's first snapshot enqueued")  # fmt: skip


def test_the_image_runs_unprivileged_without_devtools(
    stack: Stack, figures: dict[str, object]
) -> None:
    listener = stack.inspect("listener")
    assert listener["Config"]["User"] == f"{UID}:{UID}"
    top = stack.engine.docker("top", stack.container("listener"), "-o", "pid,uid,args").stdout
    assert all(line.split()[1] == str(UID) for line in top.splitlines()[1:]), top
    probe = stack.engine.docker(
        "run", "--rm", stack.images.product, "python", "-c",
        "import importlib.util as u, os, sys; print(os.getuid(), u.find_spec('devtools'), "
        "u.find_spec('tests'), u.find_spec('pytest'), sys.version_info[:2])",
    ).stdout.split(" ", 1)  # fmt: skip
    assert probe[0] == str(UID)
    assert probe[1].startswith("None None None"), probe
    size = json.loads(stack.engine.docker("image", "inspect", stack.images.product).stdout)[0]
    base = json.loads(stack.engine.docker("image", "inspect", stack.images.base).stdout)[0]
    venv = stack.engine.docker(
        "run", "--rm", "--entrypoint", "du", stack.images.product, "-sm", "/opt/ha-ingestor"
    ).stdout.split()[0]  # fmt: skip
    biggest = stack.engine.docker(
        "run", "--rm", "--entrypoint", "sh", stack.images.product, "-c",
        "du -sm /opt/ha-ingestor/lib/python3*/site-packages/* | sort -rn | head -8",
    ).stdout.split("\n")  # fmt: skip
    image_mb, base_mb = size["Size"] / 1e6, base["Size"] / 1e6
    figures["image MB"] = (
        f"{image_mb:.0f} on the debootstrap base ({base_mb:.0f}); ours on top "
        f"{image_mb - base_mb:.0f}, of which the venv {venv} MiB; largest: "
        + ", ".join(" ".join(line.split()[::-1]).rsplit("/", 1)[-1] for line in biggest if line)
    )
    # python:3.11-slim-bookworm is ~130 MB: ours on top of it must stay under the target.
    assert image_mb - base_mb + 130 <= SIZE_TARGET_MB


def test_health_and_flower_answer_on_their_published_ports(stack: Stack) -> None:
    health = _health()
    assert health["status"] in ("healthy", "degraded"), health
    assert get(f"{FLOWER}/healthcheck") == (200, b"OK")
    assert (get(f"{FLOWER}/api/workers") or (0,))[0] == 401, "Flower without a password"
    workers = wait_until(
        lambda: json.loads((get(f"{FLOWER}/api/workers?refresh=1", FLOWER_AUTH) or (0, b"{}"))[1]),
        30, 1, message="Flower listing the worker",
    )  # fmt: skip
    assert len(workers) == 1, workers
    for port in (8001, 5555, 8086):
        binding = stack.engine.docker("ps", "--format", "{{.Ports}}").stdout
        assert f"127.0.0.1:{port}->" in binding
        assert f"0.0.0.0:{port}" not in binding


def test_simulator_events_land_in_influxdb(
    stack: Stack, ledger: Ledger, figures: dict[str, object]
) -> None:
    _, rows = _flow(stack, ledger, lambda: None, "none (events only)", figures)
    assert rows >= 2 * FLOW_EVENTS


# --- faults, events flowing ----------------------------------------------------------------------


@pytest.mark.parametrize("service", ["worker", "listener", "redis"])
def test_a_killed_process_is_restarted_by_the_restart_policy_and_loses_nothing(
    stack: Stack, ledger: Ledger, figures: dict[str, object], service: str
) -> None:
    during, _ = _flow(stack, ledger, lambda: _crash(stack, service), f"SIGKILL of {service}",
                      figures)  # fmt: skip
    assert during > 0, "HA sent events while it was down"
    stack.wait_healthy(SERVICES, 120)


def test_compose_stop_then_start_loses_nothing(
    stack: Stack, ledger: Ledger, figures: dict[str, object]
) -> None:
    def stop_start() -> None:
        stack.compose("stop")
        stack.compose("start")

    during, _ = _flow(stack, ledger, stop_start, "compose stop + start", figures)
    assert during > 0, "HA sent events while the stack was stopped"
    stack.wait_healthy(SERVICES, 120)


def test_down_then_up_keeps_the_volumes_and_loses_nothing(
    stack: Stack, ledger: Ledger, figures: dict[str, object]
) -> None:
    before = {s: stack.container(s) for s in SERVICES}
    volumes = set(stack.engine.docker("volume", "ls", "-q").stdout.split())

    def down_up() -> None:
        stack.compose("down")
        stack.compose("up", "-d")

    during, _ = _flow(stack, ledger, down_up, "compose down + up", figures)
    assert during > 0, "HA sent events while the stack was down"
    assert all(stack.container(s) != before[s] for s in SERVICES), "new containers"
    assert set(stack.engine.docker("volume", "ls", "-q").stdout.split()) == volumes
    stack.wait_healthy(SERVICES, 120)


# --- monitoring profile ------------------------------------------------------------------------


def _prometheus(path: str) -> Any:
    got = get(f"{PROMETHEUS}{path}")
    return json.loads(got[1])["data"] if got and got[0] == 200 else None


def test_monitoring_profile_scrapes_and_fires_an_alert(
    stack: Stack, figures: dict[str, object]
) -> None:
    stack.compose("--profile", "monitoring", "up", "-d")
    start = time.monotonic()
    stack.wait_healthy(("prometheus",), 120)

    def listener_up() -> bool:
        targets = (_prometheus("/api/v1/targets") or {}).get("activeTargets", [])
        return any(t["labels"]["job"] == "ha-ingestor-listener" and t["health"] == "up"
                   for t in targets)  # fmt: skip

    wait_until(listener_up, 60, 1, message="Prometheus scraping the listener")
    groups = (_prometheus("/api/v1/rules") or {}).get("groups", [])
    rules = {rule["name"] for group in groups for rule in group["rules"]}
    assert {"auth_invalid", "listener_down", "write_errors"} <= rules, rules
    # Provoked: HA comes back with another token (a user revoked it); the listener's next
    # login is refused: auth_invalid, an alert without `for`. (The home starts afresh, so the
    # tests after this one count no points.)
    stack.ha_token = "a-revoked-token-0123456789"
    stack.ha("up", "-d", "--force-recreate")

    def fired() -> bool:
        alerts = (_prometheus("/api/v1/alerts") or {}).get("alerts", [])
        return any(a["labels"]["alertname"] == "auth_invalid" and a["state"] == "firing"
                   for a in alerts)  # fmt: skip

    wait_until(fired, 90, 1, message="auth_invalid firing in Prometheus")
    figures["monitoring"] = (
        f"Prometheus healthy, listener scraped, {len(rules)} rules loaded; auth_invalid firing "
        f"{time.monotonic() - start:.0f} s after `--profile monitoring up -d`"
    )


def test_no_container_went_over_its_memory_limit(stack: Stack, figures: dict[str, object]) -> None:
    limits = yaml.safe_load(LIMITS.read_text(encoding="utf-8"))["services"]
    table = {}
    for service in APP_SERVICES:
        state = stack.inspect(service)
        limit_mib = state["HostConfig"]["Memory"] / 2**20
        assert limit_mib == int(limits[service]["mem_limit"].rstrip("m")), service
        assert not state["State"]["OOMKilled"], f"{service} was killed for memory"
        table[service] = f"{stack.peak_memory.get(service, 0):.0f} of {limit_mib:.0f}"
    others = {s: round(m) for s, m in stack.peak_memory.items() if s not in APP_SERVICES}
    figures["memory MiB, peak of limit (docker stats every ~2 s)"] = table | others
    assert all(stack.peak_memory.get(s, 0) > 0 for s in APP_SERVICES), stack.peak_memory


# --- docker stop --------------------------------------------------------------------------------


def test_docker_stop_of_each_container_exits_0_within_its_grace_period(
    stack: Stack, figures: dict[str, object]
) -> None:
    seconds = {}
    for service in APP_SERVICES:
        container = stack.container(service)
        grace = stack.inspect(service)["Config"].get("StopTimeout") or 10
        start = time.monotonic()
        stack.engine.docker("stop", container, timeout=grace + 30)  # its own grace period
        seconds[service] = round(time.monotonic() - start, 1)
        state = stack.inspect(service)["State"]
        assert state["ExitCode"] == 0, (service, state)
        assert seconds[service] < grace, (service, seconds[service], grace)
    figures["docker stop seconds (exit 0)"] = seconds
