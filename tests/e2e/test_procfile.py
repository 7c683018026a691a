"""The Procfile under honcho: all four processes run, and SIGTERM stops each one cleanly.

"Cleanly" means what an operator (or systemd, or `docker stop`) needs: every process exits 0
by itself within honcho's 5 s grace (no SIGKILL), the worker's warm shutdown gives back what
it had prefetched (nothing stranded in Redis until the visibility timeout), and no event the
listener received is lost — a fresh worker afterwards writes every one of them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from devtools.local_servers import free_port
from tests.expectations import (
    expected_points,
    ha_states,
    points_in_influx,
    recorded_events,
    state_events,
)
from tests.helpers import InfluxDatabase, wait_until
from tests.processes import BIN, AppProcess, app_env, worker_argv
from tests.sim_thread import SimulatorThread
from tests.unit.deploy.test_deployment_files import dashboard_metric_names

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
TOKEN = "procfile-token-0123456789"
EVENTS = 3000
PROCESSES = ("listener", "worker", "beat", "flower")
HONCHO_SIGTERM_RC = 143
"""honcho's own exit code after it was sent SIGTERM (128 + 15), whatever its children did."""


def _get(url: str) -> tuple[int, bytes] | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return None


def _health(port: int) -> dict[str, Any] | None:
    got = _get(f"http://127.0.0.1:{port}/health")
    return json.loads(got[1]) if got else None


def _running(honcho: subprocess.Popen[bytes], log: Path) -> bool:
    """True while honcho runs; fails at once with its output when a process brought it down."""
    if honcho.poll() is not None:
        text = log.read_text(encoding="utf-8", errors="replace")
        raise AssertionError(f"honcho stopped early (rc={honcho.returncode}):\n{text[-4000:]}")
    return True


def _enqueued(port: int) -> int:
    return int(((_health(port) or {}).get("listener") or {}).get("events_enqueued") or 0)


def _compose_healthcheck(service: str) -> list[str]:
    """The healthcheck command docker-compose.yml gives a service, as argv."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    test: list[str] = compose["services"][service]["healthcheck"]["test"]
    if test[0] == "CMD-SHELL":
        return ["sh", "-c", test[1].replace("$$", "$")]
    assert test[0] == "CMD"
    return test[1:]


def _metric_names(port: int) -> set[str]:
    got = _get(f"http://127.0.0.1:{port}/metrics")
    assert got is not None
    assert got[0] == 200
    names = set()
    for line in got[1].decode().splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])  # a family, even one without samples right now
        elif line and not line.startswith("#"):
            names.add(line.split("{")[0].split()[0])
    return names


def _kill_leftovers(log: Path) -> None:
    """If honcho could not stop its children, kill their process groups by the PIDs it logged."""
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    for pid in re.findall(r"started \(pid=(\d+)\)", text):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(int(pid), signal.SIGKILL)


def test_sigterm_to_honcho_stops_every_process_cleanly(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase
) -> None:
    record = tmp_path / "sent.jsonl"
    sim = SimulatorThread(
        token=TOKEN, rate=1500, events=EVENTS, entities=30, record_path=record
    ).start(paused=True)
    health_port, flower_port = free_port(), free_port()
    data_dir = tmp_path / "data"
    env = app_env(
        HA_URL=sim.sim.url,
        HA_TOKEN=TOKEN,
        CELERY_BROKER_URL=redis_url,
        INFLUXDB_URL=influx_db.url,
        INFLUXDB_DATABASE=influx_db.name,
        HEALTH_PORT=str(health_port),
        FLOWER_PORT=str(flower_port),
        DATA_DIR=str(data_dir),
    )
    output = tmp_path / "honcho.log"
    app_root = tmp_path / "app"  # honcho reads <app root>/.env: keep the developer's out
    app_root.mkdir()
    with output.open("wb") as out:
        honcho = subprocess.Popen(
            [str(BIN / "honcho"), "start", "--no-colour", "-f", str(REPO / "Procfile"),
             "-d", str(app_root)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    late_worker: AppProcess | None = None
    try:
        initial = ha_states(sim.sim.url, TOKEN)
        # Resume HA's events once the listener's snapshot is in the broker: a snapshot taken
        # later would hold newer states than `initial`.
        wait_until(
            lambda: _running(honcho, output) and _enqueued(health_port) >= len(initial),
            60,
            0.2,
            message="the listener subscribed and enqueued its snapshot",
        )
        wait_until(
            lambda: (
                _running(honcho, output)
                and (_get(f"http://127.0.0.1:{flower_port}/healthcheck") or (0,))[0] == 200
            ),
            60,
            0.2,
            message="Flower answering /healthcheck",
        )
        wait_until(
            lambda: _running(honcho, output) and list(data_dir.glob("celerybeat-schedule*")),
            60,
            message="beat started",
        )
        sim.do(sim.sim.resume_events)
        sim.call(sim.sim.wait_done(), timeout=60)
        wait_until(
            lambda: (
                (_health(health_port) or {}).get("subscription", {}).get("total_events_received")
                == EVENTS
            ),
            30,
            message=f"the listener received all {EVENTS} events",
        )
        wait_until(
            lambda: _running(honcho, output) and points_in_influx(influx_db),
            30,
            message="the worker writing",
        )

        # What the Grafana dashboard charts is really exposed (names as scraped, _total included).
        seen: set[str] = set()

        def dashboard_metrics_exposed() -> bool:
            seen.update(_metric_names(health_port))
            return seen >= dashboard_metric_names()

        try:
            wait_until(dashboard_metrics_exposed, 30, 0.5, message="the dashboard's metrics")
        except AssertionError:
            missing = sorted(dashboard_metric_names() - seen)
            raise AssertionError(
                f"docs/grafana-dashboard.json charts {missing}, not on /metrics"
            ) from None
        # The healthchecks docker-compose.yml gives beat and the worker pass on a live stack.
        for service in ("beat", "worker"):
            check = subprocess.run(
                _compose_healthcheck(service),
                env={**env, "HOSTNAME": socket.gethostname()},
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert check.returncode == 0, f"{service} healthcheck: {check.stdout}{check.stderr}"

        # The worker may still be busy with the events: that is the point of the test.
        honcho.send_signal(signal.SIGTERM)
        honcho_rc = honcho.wait(30)
        log = output.read_text(encoding="utf-8", errors="replace")

        stopped = dict(re.findall(r"system\s*\| (\w+)\.1 stopped \(rc=(-?\d+)\)", log))
        assert set(stopped) == set(PROCESSES), log[-4000:]
        assert stopped == dict.fromkeys(PROCESSES, "0"), log[-4000:]
        assert "SIGKILL" not in log, log[-4000:]
        assert "Warm shutdown" in log
        assert honcho_rc == HONCHO_SIGTERM_RC

        client = redis.Redis.from_url(redis_url)
        assert client.hlen("unacked") == 0, "the worker left messages stranded in Redis"
        restored = sum(int(n) for n in re.findall(r"Restoring (\d+) unacknowledged", log))
        assert client.llen("ha_events") >= restored

        # Nothing the listener took is lost: a new worker writes every expected point.
        expected = expected_points(state_events(initial) + recorded_events(record))
        late_worker = AppProcess("late-worker", worker_argv(), env, tmp_path).start()
        wait_until(
            lambda: len(points_in_influx(influx_db)) >= len(expected),
            60,
            0.2,
            message=f"{len(expected)} points in InfluxDB",
        )
        assert points_in_influx(influx_db).keys() == expected.keys()
    finally:
        if honcho.poll() is None:
            honcho.send_signal(signal.SIGTERM)
            try:
                honcho.wait(20)
            except subprocess.TimeoutExpired:
                honcho.kill()
                honcho.wait(5)
                _kill_leftovers(output)  # honcho died without stopping its children
        if late_worker is not None:
            late_worker.stop()
        sim.stop()
