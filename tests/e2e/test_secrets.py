"""Secrets never leak: the whole stack runs with recognisable secrets, and every output is read.

HA token, broker password (Redis --requirepass), InfluxDB password (1.x with auth), InfluxDB
token (v2 API, VictoriaMetrics), Flower's password — plus a wrong HA token and a wrong InfluxDB
password, whose failures produce error messages and exception text. Then every process log (at
DEBUG), /health, /metrics, the status page, `status`, `check`, Flower's views, the files in
DATA_DIR and every value in Redis are searched for each secret, raw and base64-encoded.
"""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis

from devtools.local_servers import InfluxDBServer, VictoriaMetricsServer, free_port
from tests.helpers import PasswordRedis, wait_until
from tests.processes import BIN, AppProcess, app_env, beat_argv, listener_argv, worker_argv
from tests.sim_thread import SimulatorThread

pytestmark = pytest.mark.e2e

HA_TOKEN = "SECRET-ha-token-4f9a1c77"
BROKER_PW = "SECRET-broker-pw-8d2e4b"
INFLUX_PW = "SECRET-influx-pw-3c6f0a"
INFLUX_TOKEN = "SECRET-influx-token-9b7d5e"
FLOWER_PW = "SECRET-flower-pw-1a8c3f"
WRONG_HA_TOKEN = "SECRET-wrong-ha-token-6e2b9d"
WRONG_INFLUX_PW = "SECRET-wrong-influx-pw-7f4c1a"
SECRETS = (HA_TOKEN, BROKER_PW, INFLUX_PW, INFLUX_TOKEN, FLOWER_PW, WRONG_HA_TOKEN, WRONG_INFLUX_PW)


def forms(secret: str) -> list[bytes]:
    """The secret as text, and inside the base64 of `user:secret` for the users we use."""
    found = [secret.encode()]
    for user in ("admin", "operator", ""):
        found.append(base64.b64encode(f"{user}:{secret}".encode()))
    return found


def http(url: str, auth: str | None = None) -> bytes:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return bytes(reply.read())
    except urllib.error.HTTPError as exc:
        return bytes(exc.read())


def influxql(url: str, query: str, auth: str | None = None) -> None:
    request = urllib.request.Request(
        f"{url}/query", data=urllib.parse.urlencode({"q": query}).encode()
    )
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert b'"error"' not in reply.read()


def run(argv: list[str], env: dict[str, str]) -> bytes:
    done = subprocess.run(argv, env=env, capture_output=True, timeout=60)
    return done.stdout + done.stderr


def redis_values(client: Any) -> bytes:
    """Every value in the database, whatever its type (redis-py's stubs are loose: Any)."""
    out: list[Any] = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == b"string":
            out.append(client.get(key) or b"")
        elif kind == b"hash":
            out.extend(k + b"=" + v for k, v in client.hgetall(key).items())
        elif kind == b"list":
            out.extend(client.lrange(key, 0, -1))
        elif kind == b"set":
            out.extend(client.smembers(key))
        elif kind == b"zset":
            out.extend(client.zrange(key, 0, -1))
        elif kind == b"stream":
            for _, fields in client.xrange(key):
                out.extend(k + b"=" + v for k, v in fields.items())
    return b"\n".join(out)


def test_no_secret_appears_anywhere(tmp_path: Path, victoria_server: VictoriaMetricsServer) -> None:
    sim = SimulatorThread(token=HA_TOKEN, rate=30, entities=20).start()
    broker = PasswordRedis(tmp_path / "redis", BROKER_PW)
    influx = InfluxDBServer(tmp_path / "influx", auth_enabled=True)
    broker.start()
    influx.start()
    processes: list[AppProcess] = []
    outputs: dict[str, bytes] = {}
    try:
        influxql(influx.url, f"CREATE USER admin WITH PASSWORD '{INFLUX_PW}' WITH ALL PRIVILEGES")
        influxql(influx.url, 'CREATE DATABASE "ha"', auth=f"admin:{INFLUX_PW}")
        broker_url = f"redis://:{BROKER_PW}@127.0.0.1:{broker.port}/0"
        health_port, flower_port = free_port(), free_port()
        common = {
            "HA_URL": sim.sim.url,
            "HA_TOKEN": HA_TOKEN,
            "CELERY_BROKER_URL": broker_url,
            "INFLUXDB_URL": influx.url,
            "INFLUXDB_DATABASE": "ha",
            "INFLUXDB_USERNAME": "admin",
            "INFLUXDB_PASSWORD": INFLUX_PW,
            "HEALTH_PORT": str(health_port),
            "DATA_DIR": str(tmp_path / "data"),
            "LOG_LEVEL": "DEBUG",
            "BEAT_INTERVAL": "1",
            "FLOWER_PORT": str(flower_port),
            "FLOWER_BASIC_AUTH": f"operator:{FLOWER_PW}",
            "FLOWER_LOGGING": "debug",
        }
        env = app_env(**common)
        v2_env = app_env(
            **common
            | {
                "INFLUXDB_API_VERSION": "2",
                "INFLUXDB_URL": victoria_server.url,
                "INFLUXDB_TOKEN": INFLUX_TOKEN,
                "INFLUXDB_ORG": "home",
                "INFLUXDB_BUCKET": "ha",
            }
        )

        def debug_worker(name: str) -> list[str]:
            return [a if a != "INFO" else "DEBUG" for a in worker_argv(name)] + ["-E"]

        debug_beat = [a if a != "INFO" else "DEBUG" for a in beat_argv(tmp_path / "schedule")]
        for name, argv, process_env in [
            ("listener", listener_argv(), env),
            ("worker-v1", debug_worker("v1"), env),
            ("worker-v2", debug_worker("v2"), v2_env),
            ("beat", debug_beat, env),
            ("flower", [str(BIN / "ha-ingestor"), "flower"], env),
        ]:
            processes.append(AppProcess(name, argv, process_env, tmp_path).start())
        health_url = f"http://127.0.0.1:{health_port}"
        flower_url = f"http://127.0.0.1:{flower_port}"

        def summary() -> dict[str, Any]:
            try:
                body: dict[str, Any] = json.loads(http(f"{health_url}/health"))
                return body
            except (OSError, ValueError):
                return {}

        wait_until(
            lambda: ((summary().get("pipeline") or {}).get("written") or 0) >= 50,
            60,
            0.3,
            "events written by both workers",
        )

        def flower_workers() -> int:
            answer = http(f"{flower_url}/api/workers?refresh=1", f"operator:{FLOWER_PW}")
            return len(json.loads(answer)) if answer.startswith(b"{") else 0

        wait_until(lambda: flower_workers() == 2, 30, 0.5, "both workers in Flower")

        # Failures that produce error text: a refused token, refused InfluxDB credentials.
        wrong_env = app_env(
            **common
            | {
                "HA_TOKEN": WRONG_HA_TOKEN,
                "REDIS_PREFIX": "wrong:",
                "HEALTH_PORT": str(free_port()),
                "DATA_DIR": str(tmp_path / "wrong"),
                "INFLUXDB_PASSWORD": WRONG_INFLUX_PW,
            }
        )
        rejected = AppProcess("rejected-listener", listener_argv(), wrong_env, tmp_path).start()
        processes.append(rejected)
        # It stays up, unhealthy, without retrying: its health and status carry the refusal.
        wait_until(
            lambda: "Home Assistant rejected the token" in rejected.log_text(),
            30,
            0.2,
            "the refused login in the log",
        )
        wrong_health = f"http://127.0.0.1:{wrong_env['HEALTH_PORT']}"
        outputs["/health (rejected)"] = http(f"{wrong_health}/health")
        outputs["/metrics (rejected)"] = http(f"{wrong_health}/metrics")
        outputs["status (rejected)"] = run([str(BIN / "ha-ingestor"), "status"], wrong_env)
        assert b"auth_invalid" in outputs["/health (rejected)"]
        outputs["check (wrong token and password)"] = run(
            [str(BIN / "ha-ingestor"), "check"], wrong_env
        )
        assert b"rejected the token" in outputs["check (wrong token and password)"]
        assert b"refused the credentials" in outputs["check (wrong token and password)"]

        outputs["/health"] = http(f"{health_url}/health")
        outputs["/metrics"] = http(f"{health_url}/metrics")
        outputs["status page"] = http(f"{health_url}/")
        outputs["status"] = run([str(BIN / "ha-ingestor"), "status"], env)
        outputs["status --json"] = run([str(BIN / "ha-ingestor"), "status", "--json"], env)
        outputs["check"] = run([str(BIN / "ha-ingestor"), "check"], env)
        outputs["check v2"] = run([str(BIN / "ha-ingestor"), "check"], v2_env)
        victoria_env = v2_env | {"INFLUXDB_KIND": "victoriametrics"}
        outputs["check victoriametrics"] = run([str(BIN / "ha-ingestor"), "check"], victoria_env)
        assert b"Everything works." in outputs["check"], outputs["check"]
        # The v2 API here is VictoriaMetrics', which check recognises and says how to set.
        assert b"set INFLUXDB_KIND=victoriametrics" in outputs["check v2"], outputs["check v2"]
        assert b"Everything works." in outputs["check victoriametrics"], outputs[
            "check victoriametrics"
        ]
        for path in (
            "/api/workers",
            "/api/tasks",
            "/api/queues/length",
            "/workers",
            "/tasks",
            "/broker",
            "/metrics",
        ):
            outputs[f"Flower {path}"] = http(f"{flower_url}{path}", f"operator:{FLOWER_PW}")
        outputs["Flower /api/tasks"] += http(
            f"{flower_url}/api/tasks?limit=100", f"operator:{FLOWER_PW}"
        )
        outputs["Redis"] = redis_values(redis.Redis.from_url(broker_url))
    finally:
        for process in reversed(processes):
            process.stop()
        sim.stop()
        influx.stop()
        broker.stop()
    for process in processes:
        outputs[f"log of {process.name}"] = process.log_path.read_bytes()
    for file in [*(tmp_path / "data").rglob("*"), *(tmp_path / "wrong").rglob("*")]:
        if file.is_file():
            outputs[f"file {file.name}"] = file.read_bytes()

    assert b" DEBUG " in outputs["log of listener"]  # the logs really are at DEBUG
    assert b"DEBUG/MainProcess" in outputs["log of worker-v1"]
    assert b"redis://:**@127.0.0.1" in outputs["log of worker-v1"]  # masked, not missing
    assert b"scheduler" in outputs["log of beat"].lower()
    assert b"Home Assistant rejected the token" in outputs["log of rejected-listener"]
    assert outputs["Flower /api/workers"].startswith(b"{")
    leaks = [
        f"{secret} in {where}"
        for secret in SECRETS
        for where, text in outputs.items()
        if any(form in text for form in forms(secret))
    ]
    assert not leaks, leaks
