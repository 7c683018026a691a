"""A running ha-ingestor stack for fault tests: simulator, listener and worker processes."""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.local_servers import free_port
from tests.expectations import (
    SeriesKey,
    expected_points,
    points_in_influx,
    recorded_events,
    state_events,
)
from tests.helpers import InfluxDatabase, wait_until
from tests.processes import AppProcess, app_env, listener_argv, worker_argv
from tests.sim_thread import SimulatorThread

TOKEN = "fault-token-0123456789"

SIM_HOME = "simulated_home"
"""The name a listener gives the simulator's home (made from its location "Simulated Home"):
its registries live under `RedisKeys().for_home(SIM_HOME)`."""

FAST_RECOVERY = {
    "HA_HEARTBEAT_INTERVAL": "1",
    "HA_HEARTBEAT_TIMEOUT": "2",
    "HA_RECONNECT_INITIAL_DELAY": "0.2",
    "HA_RECONNECT_MAX_DELAY": "2",
    "HA_RECORDER_COMMIT_INTERVAL": "1",
}


@dataclass
class Stack:
    """Real processes against a simulator and the given broker and database."""

    tmp: Path
    sim: SimulatorThread
    broker_url: str
    influx: InfluxDatabase
    extra_env: dict[str, str] = field(default_factory=dict)
    health_port: int = field(default_factory=free_port)
    processes: list[AppProcess] = field(default_factory=list)

    def env(self, **overrides: str) -> dict[str, str]:
        settings = {
            "HA_URL": self.sim.sim.url,
            "HA_TOKEN": TOKEN,
            "CELERY_BROKER_URL": self.broker_url,
            "INFLUXDB_URL": self.influx.url,
            "INFLUXDB_DATABASE": self.influx.name,
            "HEALTH_PORT": str(self.health_port),
            "DATA_DIR": str(self.tmp / "data"),
            **FAST_RECOVERY,
            **self.extra_env,
            **overrides,
        }
        return app_env(**settings)

    def start_listener(self, **overrides: str) -> AppProcess:
        return self._start(AppProcess("listener", listener_argv(), self.env(**overrides), self.tmp))

    def start_worker(self, **overrides: str) -> AppProcess:
        return self._start(AppProcess("worker", worker_argv(), self.env(**overrides), self.tmp))

    def _start(self, process: AppProcess) -> AppProcess:
        self.processes.append(process.start())
        return process

    def health(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.health_port}/health"
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                body: dict[str, Any] = json.load(reply)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        return body

    def subscribed(self) -> bool:
        try:
            return bool(self.health()["subscription"]["is_subscribed"])
        except OSError:
            return False

    def wait_subscribed(self, timeout: float = 20) -> None:
        wait_until(self.subscribed, timeout, message="the listener is subscribed")

    def wait_ready(self, initial_states: int, timeout: float = 20) -> None:
        """Subscribed and the first-start snapshot enqueued: HA may start sending now.

        Resuming earlier lets the snapshot see states newer than the initial ones.
        """
        self.wait_subscribed(timeout)
        wait_until(
            lambda: self.health()["listener"]["events_enqueued"] >= initial_states,
            timeout,
            message="the snapshot enqueued",
        )

    def stop(self) -> dict[str, int | None]:
        codes = {}
        for process in reversed(self.processes):
            codes[process.log_path.name] = process.stop()
        return codes

    def logs(self) -> str:
        return "\n".join(f"== {p.log_path.name}\n{p.log_text()[-4000:]}" for p in self.processes)


def assert_everything_landed(
    influx: InfluxDatabase,
    initial_states: list[dict[str, Any]],
    record: Path,
    timeout: float = 60,
    interval: float = 1.0,
) -> tuple[int, int]:
    """Every event sent (and the initial snapshot) is in InfluxDB exactly once per key.

    Returns (points expected, points found).
    """
    expected = expected_points(state_events(initial_states) + recorded_events(record))
    found: dict[SeriesKey, dict[str, Any]] = {}

    def complete() -> bool:
        nonlocal found
        found = points_in_influx(influx)
        return expected.keys() <= found.keys()

    try:
        wait_until(
            complete, timeout, interval=interval, message=f"{len(expected)} points in InfluxDB"
        )
    except AssertionError as exc:
        absent = sorted(expected.keys() - found.keys())
        raise AssertionError(f"{exc}: {len(absent)} missing, e.g. {absent[:5]}") from None
    missing = expected.keys() - found.keys()
    extra = found.keys() - expected.keys()
    assert not missing, f"{len(missing)} points missing"
    assert not extra, f"{len(extra)} points that HA never sent, e.g. {sorted(extra)[:3]}"
    for key, point in expected.items():
        fields = dict(point.fields)
        if "value" in fields:
            assert found[key]["value"] == fields["value"], key
    return len(expected), len(found)
