"""Every health reason, created for real and read from /health, /metrics and `status`.

One stack (simulator, listener, worker, beat every second, its own broker Redis) goes through
the conditions the issue names, in an order where each leaves the next a known state: silence,
a stopped worker, a broker outage, reconnects, InfluxDB refusing writes, then dead letters, HA
gone, beat gone, the listener gone. Thresholds are seconds here (HEALTH_* settings).
"""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from devtools.local_servers import InfluxDBServer, RedisServer, free_port
from tests.helpers import wait_until
from tests.processes import BIN, AppProcess, app_env, beat_argv, listener_argv, worker_argv
from tests.sim_thread import SimulatorThread

pytestmark = pytest.mark.e2e

TOKEN = "monitoring-token-0123456789"
THRESHOLDS = {
    "BEAT_INTERVAL": "1",
    "HEALTH_EVENT_GAP": "3",
    "HEALTH_LISTENER_STALE": "6",
    "HEALTH_RECONNECTS_PER_HOUR": "2",
    "HEALTH_QUEUE_BACKLOG": "40",
    "HEALTH_QUEUE_MAX_AGE": "5",
    "HEALTH_WINDOW": "60",
    "HA_HEARTBEAT_INTERVAL": "1",
    "HA_HEARTBEAT_TIMEOUT": "2",
    "HA_RECONNECT_INITIAL_DELAY": "0.2",
    "HA_RECONNECT_MAX_DELAY": "1",
}
EXIT = {"healthy": 0, "degraded": 1, "unhealthy": 2}


@dataclass
class Stack:
    tmp: Path
    sim: SimulatorThread
    broker: RedisServer
    state_url: str
    influx_url: str
    database: str
    influx_env: dict[str, str] = field(default_factory=dict)
    health_port: int = field(default_factory=free_port)
    processes: dict[str, AppProcess] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        settings = {
            "HA_URL": self.sim.sim.url,
            "HA_TOKEN": TOKEN,
            "CELERY_BROKER_URL": self.broker.url,
            "REDIS_URL": self.state_url,
            "INFLUXDB_URL": self.influx_url,
            "INFLUXDB_DATABASE": self.database,
            "HEALTH_PORT": str(self.health_port),
            "DATA_DIR": str(self.tmp / "data"),
            **THRESHOLDS,
            **self.influx_env,
        }
        return app_env(**(settings | extra))

    def start(self, name: str) -> AppProcess:
        argv = {
            "listener": listener_argv(),
            "worker": worker_argv(),
            "beat": beat_argv(self.tmp / "beat-schedule"),
        }[name]
        process = AppProcess(name, argv, self.env(), self.tmp).start()
        self.processes[name] = process
        return process

    def stop(self, name: str) -> None:
        self.processes[name].stop()

    # --- the three ways to look ---------------------------------------------------------------

    def health(self) -> tuple[int, dict[str, Any]]:
        url = f"http://127.0.0.1:{self.health_port}/health"
        try:
            with urllib.request.urlopen(url, timeout=3) as reply:
                return reply.status, json.load(reply)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    def codes(self) -> list[str]:
        try:
            return [c["code"] for c in self.health()[1]["checks"]]
        except OSError:
            return ["(no answer)"]

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        url = f"http://127.0.0.1:{self.health_port}/metrics"
        with urllib.request.urlopen(url, timeout=3) as reply:
            text = reply.read().decode()
        samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
        homes = {s.labels.get("instance") for s in samples}
        assert len(homes) == 1, f"every series is the listener's home's: {homes}"
        return {
            (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "instance"))): s.value
            for s in samples
        }

    def status(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "ha-ingestor"), "status", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=30,
        )

    def status_json(self) -> tuple[int, dict[str, Any]]:
        done = self.status("--json")
        return done.returncode, json.loads(done.stdout)

    # --- assertions shared by every condition ------------------------------------------------

    def wait_for(self, code: str, timeout: float = 20) -> dict[str, Any]:
        wait_until(lambda: code in self.codes(), timeout, 0.2, f"{code} in /health")
        return self.health()[1]

    def observed_everywhere(self, code: str, severity: str, words: str) -> None:
        """/health, /metrics and `status` all report it, with the right status and codes."""
        http_code, health = self.health()
        check = next(c for c in health["checks"] if c["code"] == code)
        assert check["severity"] == severity
        assert words in check["message"], check["message"]
        assert http_code == (503 if health["status"] == "unhealthy" else 200)
        samples = self.metrics()
        assert samples[("ha_ingestor_health_check", (("code", code), ("severity", severity)))] == 1
        assert samples[("ha_ingestor_health_status", (("status", health["status"]),))] == 1
        exit_code, report = self.wait_status(code, 15)
        assert exit_code == EXIT[report["status"]]
        message = next(c["message"] for c in report["checks"] if c["code"] == code)
        assert words in message, message

    def wait_status(self, code: str, timeout: float) -> tuple[int, dict[str, Any]]:
        found = wait_until(
            lambda: self._status_with(code), timeout, 0.2, f"{code} in `ha-ingestor status`"
        )
        assert found is not None
        return found

    def _status_with(self, code: str) -> tuple[int, dict[str, Any]] | None:
        exit_code, report = self.status_json()
        return (exit_code, report) if code in [c["code"] for c in report["checks"]] else None

    def wait_healthy(self, timeout: float = 30) -> None:
        """No check at all (the listener answers, is subscribed, and so on)."""
        wait_until(lambda: self.codes() == [], timeout, 0.2, "healthy again")

    def logs(self) -> str:
        return "\n".join(f"== {n}\n{p.log_text()[-3000:]}" for n, p in self.processes.items())


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, influxdb_server: Any
) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("monitoring")
    broker = RedisServer(tmp / "broker", appendonly=True)
    broker.start()
    sim = SimulatorThread(token=TOKEN, rate=20, entities=30).start()
    database = "monitoring"
    _influxql(influxdb_server.url, f'CREATE DATABASE "{database}"')
    # DB 0 of the session Redis: the per-test fixture cycles through 1..15.
    state_url = f"redis://127.0.0.1:{redis_server.port}/0"
    redis.Redis.from_url(state_url).flushdb()
    stack = Stack(tmp, sim, broker, state_url, influxdb_server.url, database)
    for name in ("worker", "beat", "listener"):
        stack.start(name)
    try:
        yield stack
    finally:
        for process in stack.processes.values():
            process.stop()
        sim.stop()
        broker.stop()
        _influxql(influxdb_server.url, f'DROP DATABASE "{database}"')


def _influx(url: str, path: str, body: bytes, auth: str | None = None) -> bytes:
    request = urllib.request.Request(f"{url}{path}", data=body, method="POST")
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    with urllib.request.urlopen(request, timeout=10) as reply:
        return bytes(reply.read())


def _influxql(url: str, query: str, auth: str | None = None) -> None:
    answer = _influx(url, "/query", urllib.parse.urlencode({"q": query}).encode(), auth)
    assert b'"error"' not in answer, answer


# --- the conditions, in order ------------------------------------------------------------------


def test_healthy_with_rates_per_domain_and_entity(stack: Stack) -> None:
    stack.wait_healthy()
    wait_until(lambda: stack.health()[1]["rates"]["top_entities"], 10, 0.2, "entity rates")
    code, health = stack.health()
    assert code == 200
    assert health["subscription"]["event_rate_per_minute"]["1m"] > 0
    assert "sensor" in health["rates"]["by_domain"]
    assert len(health["rates"]["top_entities"]) == 10
    assert health["pipeline"]["written"] > 0
    assert stack.metrics()[("ha_ingestor_health_status", (("status", "healthy"),))] == 1
    done = stack.status()
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ha-ingestor: HEALTHY\n")
    assert "Busiest domains" in done.stdout


def test_no_events_while_subscribed(stack: Stack) -> None:
    stack.sim.do(stack.sim.sim.pause_events)
    try:
        stack.wait_for("no_events")
        stack.observed_everywhere("no_events", "degraded", "while subscribed — HA usually sends")
        done = stack.status()
        assert done.returncode == 1
        assert "ha-ingestor: DEGRADED\n  - no events for " in done.stdout
    finally:
        stack.sim.do(stack.sim.sim.resume_events)
    stack.wait_healthy()


def test_a_stopped_worker_makes_the_queue_grow_then_stall(stack: Stack) -> None:
    stack.stop("worker")
    try:
        stack.wait_for("backlog")
        # The trend needs two of beat's queue samples: the first report of a backlog has none.
        wait_until(
            lambda: any(
                c["code"] == "backlog" and "and growing" in c["message"]
                for c in stack.health()[1]["checks"]
            ),
            20,
            0.2,
            "the backlog reported as growing",
        )
        stack.observed_everywhere("backlog", "degraded", "and growing")
        health = stack.wait_for("stalled")
        assert health["status"] == "unhealthy"
        assert health["pipeline"]["oldest_message_age_s"] > 2
        stack.observed_everywhere(
            "stalled", "unhealthy", "no worker takes them: start `celery -A config.celery_app"
        )
    finally:
        stack.start("worker")
    stack.wait_healthy()


def test_a_broker_outage_fills_the_spool(stack: Stack) -> None:
    # The worker steps aside first: messages it holds when the broker vanishes stay
    # unacknowledged until the visibility timeout (an hour), which /health would rightly report.
    stack.stop("worker")
    stack.broker.stop()
    try:
        stack.wait_for("broker_down")
        stack.observed_everywhere("broker_down", "degraded", "events kept in the local spool")
        assert stack.health()[1]["listener"]["spool_depth"] > 0
        stack.wait_for("broker_unreadable")  # beat cannot read the queue either
    finally:
        stack.broker.start()
        stack.start("worker")
    stack.wait_healthy(45)


def test_reconnects(stack: Stack) -> None:
    def settled_after(reconnects: int, backfilled: int) -> bool:
        """Reconnected, and done with the gap's backfill: the next drop finds a quiet link.

        (A drop while the listener still awaits its post-connect calls is only noticed once
        those calls time out — reported to the listener's owner.)"""
        health = stack.health()[1]
        return bool(
            health["connection"]["reconnects"] >= reconnects
            and health["subscription"]["is_subscribed"]
            and health["listener"]["backfilled_states"] > backfilled
        )

    for attempt in (1, 2):
        backfilled = stack.health()[1]["listener"]["backfilled_states"]
        stack.sim.call(stack.sim.sim.drop_clients())
        wait_until(
            lambda: settled_after(attempt, backfilled),  # noqa: B023
            20,
            0.1,
            f"reconnect {attempt} and its backfill",
        )
    stack.wait_for("reconnects")
    stack.observed_everywhere("reconnects", "degraded", "dropped 2 times in the last hour")


def test_influxdb_refusing_writes_then_dead_letters(stack: Stack, tmp_path: Path) -> None:
    """Wrong credentials: writes refused, events wait; then a field type InfluxDB refuses."""
    influx = InfluxDBServer(tmp_path / "influx-auth", auth_enabled=True)
    influx.start()
    try:
        _influxql(influx.url, "CREATE USER admin WITH PASSWORD 'right-pw' WITH ALL PRIVILEGES")
        _influxql(influx.url, 'CREATE DATABASE "strict"', auth="admin:right-pw")
        # Sensors in °C write a float `value`: make it a string field here, and its shadow
        # field `value_float` too, so they are refused.
        line = '°C,domain=sensor,entity_id=seeded value="warm",value_float="warm"'.encode()
        _influx(influx.url, "/write?db=strict", line, "admin:right-pw")
        stack.stop("worker")
        stack.database = "strict"
        stack.influx_url = influx.url
        stack.influx_env = {"INFLUXDB_USERNAME": "admin", "INFLUXDB_PASSWORD": "wrong-pw"}
        stack.start("worker")
        stack.wait_for("write_errors")
        stack.observed_everywhere("write_errors", "degraded", "InfluxDB refused")
        stack.wait_for("stalled")
        stack.observed_everywhere("stalled", "unhealthy", "InfluxDB refuses the writes")

        stack.stop("worker")
        stack.influx_env = {"INFLUXDB_USERNAME": "admin", "INFLUXDB_PASSWORD": "right-pw"}
        stack.start("worker")
        stack.wait_for("dead_letters", 30)
        stack.observed_everywhere(
            "dead_letters", "degraded", "dead-lettered in 60 s (rejected_by_influxdb"
        )
        wait_until(lambda: "stalled" not in stack.codes(), 30, 0.2, "the backlog written")
    finally:
        stack.stop("worker")
        influx.stop()


def test_a_rejected_token(stack: Stack, tmp_path: Path) -> None:
    """A second installation (its own key prefix) whose token HA refuses: the listener stays
    up without retrying (HA bans addresses after failed logins), and `status` says what to do."""
    env = stack.env(
        HA_TOKEN="not-the-token",
        REDIS_PREFIX="rejected:",
        HEALTH_PORT=str(free_port()),
        DATA_DIR=str(tmp_path / "data"),
    )
    listener = AppProcess("rejected", listener_argv(), env, tmp_path).start()
    try:

        def status_says_auth_invalid() -> subprocess.CompletedProcess[str] | None:
            done = subprocess.run(
                [str(BIN / "ha-ingestor"), "status"],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
            )
            return done if "(auth_invalid)" in done.stdout else None

        done = wait_until(status_says_auth_invalid, 30, 0.5, "auth_invalid in `status`")
        assert done is not None
        assert done.returncode == 2
        assert "Home Assistant rejected the token (auth_invalid)" in done.stdout
        assert "HA_TOKEN" in done.stdout
        assert "SIGHUP" in done.stdout
        assert listener.proc is not None
        assert listener.proc.poll() is None, "it stays up, unhealthy, instead of exiting"
    finally:
        listener.stop()


def test_home_assistant_gone(stack: Stack) -> None:
    stack.sim.call(stack.sim.sim.stop())
    stack.wait_for("not_subscribed")
    stack.observed_everywhere("not_subscribed", "unhealthy", "not subscribed to Home Assistant")
    assert stack.health()[0] == 503


def test_beat_gone(stack: Stack) -> None:
    stack.stop("beat")
    stack.wait_for("beat_stale", 15)
    stack.observed_everywhere("beat_stale", "degraded", "is beat running")


def test_listener_gone(stack: Stack) -> None:
    stack.stop("listener")  # a clean shutdown: its last report says so, no need to wait
    exit_code, report = stack.wait_status("listener_down", 5)
    assert exit_code == 2
    assert report["status"] == "unhealthy"
    assert "(a clean shutdown) — start `ha-ingestor listener`" in report["reasons"][0]
