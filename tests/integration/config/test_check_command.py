"""`ha-ingestor check` against real servers: what works, and for each failure what to fix."""

from __future__ import annotations

import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config.check_command import Outcome, checks, run_checks
from config.settings import load_settings
from devtools.local_servers import InfluxDBServer, RedisServer, free_port
from tests.helpers import InfluxDatabase, PasswordRedis
from tests.processes import BIN, app_env
from tests.sim_thread import SimulatorThread
from workers.commands.store_checks import check_broker

pytestmark = pytest.mark.integration

TOKEN = "check-token-0123456789"
REDIS_PW = "check-redis-pw-4d2"
ADMIN_PW = "check-admin-pw-9e1"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("check")
    sim = SimulatorThread(token=TOKEN, rate=1).start(paused=True)
    locked = PasswordRedis(tmp / "redis", REDIS_PW)
    strict = InfluxDBServer(tmp / "influx", auth_enabled=True)
    locked.start()
    strict.start()
    for query, auth in [
        (f"CREATE USER admin WITH PASSWORD '{ADMIN_PW}' WITH ALL PRIVILEGES", None),
        ('CREATE DATABASE "ha"', f"admin:{ADMIN_PW}"),
        ("CREATE USER reader WITH PASSWORD 'reader-pw'", f"admin:{ADMIN_PW}"),
        ('GRANT READ ON "ha" TO "reader"', f"admin:{ADMIN_PW}"),
    ]:
        _influxql(strict.url, query, auth)
    try:
        yield {"sim": sim, "locked": locked, "strict": strict, "tmp": tmp}
    finally:
        strict.stop()
        locked.stop()
        sim.stop()


def _influxql(url: str, query: str, auth: str | None) -> None:
    request = urllib.request.Request(
        f"{url}/query", data=urllib.parse.urlencode({"q": query}).encode()
    )
    if auth:
        import base64

        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert b'"error"' not in reply.read()


def by_name(outcomes: list[Outcome]) -> dict[str, Outcome]:
    return {o.name: o for o in outcomes}


def test_everything_works(
    servers: dict[str, Any], redis_url: str, influx_db: InfluxDatabase, tmp_path: Path
) -> None:
    env = app_env(
        HA_URL=servers["sim"].sim.url,
        HA_TOKEN=TOKEN,
        CELERY_BROKER_URL=redis_url,
        INFLUXDB_URL=influx_db.url,
        INFLUXDB_DATABASE=influx_db.name,
        DATA_DIR=str(tmp_path / "data"),
    )
    done = subprocess.run(
        [str(BIN / "ha-ingestor"), "check"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "ha-ingestor check"
    assert "(Redis 7." in done.stdout  # the broker's version: the workers need 7.0 or newer
    assert [line.split()[0] for line in lines[1:7]] == ["OK"] * 6
    assert "logged in to Home Assistant 2024.3.3" in done.stdout
    assert f"accepts writes to database '{influx_db.name}'" in done.stdout
    assert lines[-1] == "Everything works."
    assert influx_db.query("SHOW MEASUREMENTS") == []  # the write probe stored nothing


def test_every_failure_says_what_is_wrong_and_how_to_fix_it(
    servers: dict[str, Any], tmp_path: Path
) -> None:
    locked: RedisServer = servers["locked"]
    strict: InfluxDBServer = servers["strict"]
    env = app_env(
        HA_URL=servers["sim"].sim.url,
        HA_TOKEN="a-token-HA-never-issued",
        CELERY_BROKER_URL=f"redis://127.0.0.1:{locked.port}/0",  # no password
        REDIS_URL=f"redis://:wrong-redis-pw@127.0.0.1:{locked.port}/0",
        INFLUXDB_URL=strict.url,
        INFLUXDB_DATABASE="ha",
        INFLUXDB_USERNAME="admin",
        INFLUXDB_PASSWORD="not-the-admin-pw",
        DATA_DIR=str(tmp_path / "data"),
    )
    done = subprocess.run(
        [str(BIN / "ha-ingestor"), "check"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    out = done.stdout
    assert "FAIL  Home Assistant  HA at 127.0.0.1:" in out
    assert "rejected the token (auth_invalid" in out
    assert "fix: create a new long-lived access token in your HA profile" in out
    assert "FAIL  broker          redis://127.0.0.1:" in out
    assert "requires a password" in out
    assert "fix: add it to CELERY_BROKER_URL: redis://:PASSWORD@host:6379/0" in out
    assert "FAIL  Redis           redis://:********@127.0.0.1:" in out
    assert "fix: put the right password in REDIS_URL" in out
    assert "FAIL  InfluxDB" in out
    assert "refused the credentials (HTTP 401: authorization failed)" in out
    assert "fix: correct INFLUXDB_USERNAME and INFLUXDB_PASSWORD" in out
    assert "OK    data directory" in out
    assert out.rstrip().endswith("4 problems found: fix them and run `ha-ingestor check` again.")
    for secret in ("a-token-HA-never-issued", "wrong-redis-pw", "not-the-admin-pw"):
        assert secret not in out + done.stderr


@pytest.mark.parametrize(
    ("influx", "detail", "fix"),
    [
        (
            {
                "influxdb_username": "reader",
                "influxdb_password": "reader-pw",
                "influxdb_database": "ha",
            },
            "not allowed to write to database 'ha' (\"reader\" user is not authorized",
            'grant it: GRANT WRITE ON "ha" TO "reader"',
        ),
        (
            {"influxdb_username": "admin", "influxdb_password": ADMIN_PW, "influxdb_database": "x"},
            "database 'x' not found",
            'create it: CREATE DATABASE "x"',
        ),
    ],
)
def test_influxdb_write_permission_and_database(
    servers: dict[str, Any], influx: dict[str, str], detail: str, fix: str
) -> None:
    settings = load_settings(influxdb_url=servers["strict"].url, **influx)
    outcome = by_name(run_checks_only(settings, "destinations"))["InfluxDB"]
    assert not outcome.ok
    assert detail in outcome.detail
    assert fix in outcome.fix


@pytest.mark.parametrize(
    ("url", "detail", "fix"),
    [
        ("nothing", "nothing listens on 127.0.0.1:", "start Home Assistant"),
        ("influx", "is not HA's WebSocket API (HTTP 404)", "set HA_URL to HA's address"),
    ],
)
def test_home_assistant_unreachable_or_not_ha(
    servers: dict[str, Any], url: str, detail: str, fix: str
) -> None:
    if url == "nothing":
        url = f"http://127.0.0.1:{free_port()}"  # (chosen here: ids must not vary per process)
    elif url == "influx":
        url = servers["strict"].url  # an HTTP server that is not HA
    settings = load_settings(ha_url=url, ha_token=TOKEN)
    outcome = by_name(run_checks_only(settings, "home_assistant"))["Home Assistant"]
    assert not outcome.ok
    assert detail in outcome.detail
    assert fix in outcome.fix


def run_checks_only(settings: Any, name: str) -> list[Outcome]:
    """One check, found where `ha-ingestor check` finds it."""
    [check] = [c for c in checks() if c.__name__ == f"check_{name}"]
    found = check(settings)
    return found if isinstance(found, list) else [found]


def test_invalid_settings_exit_2() -> None:
    env = app_env(INFLUXDB_API_VERSION="3", HEALTH_WINDOW="5")
    done = subprocess.run(
        [str(BIN / "ha-ingestor"), "check"], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert "FAIL  configuration" in done.stdout
    assert "INFLUXDB_API_VERSION: must be 1" in done.stdout
    assert "HEALTH_WINDOW" in done.stdout


def test_run_checks_never_raises(tmp_path: Path) -> None:
    """Nothing reachable at all: six outcomes, each a failure or a pass, none an exception."""
    dead = f"127.0.0.1:{free_port()}"
    settings = load_settings(
        ha_url=f"http://{dead}",
        ha_token=TOKEN,
        celery_broker_url=f"redis://{dead}/0",
        influxdb_url=f"http://{dead}",
        data_dir=tmp_path,
    )
    outcomes = by_name(run_checks(settings))
    assert [o.ok for o in outcomes.values()] == [True, False, False, False, False, True]
    assert "start InfluxDB or correct INFLUXDB_URL" in outcomes["InfluxDB"].fix
    assert "start Redis or correct the host and port in CELERY_BROKER_URL" in outcomes["Redis"].fix


@pytest.mark.parametrize(
    ("redis_args", "detail", "fix"),
    [
        (
            ["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru", "--appendonly", "yes"],
            "evicts keys when its memory is full (maxmemory-policy allkeys-lru)",
            "maxmemory-policy noeviction",
        ),
        (
            ["--appendonly", "no"],
            "keeps the queue in memory only (appendonly no)",
            "appendonly yes",
        ),
    ],
)
def test_a_broker_that_could_lose_waiting_events_fails(
    tmp_path: Path, redis_args: list[str], detail: str, fix: str
) -> None:
    """Eviction or no append-only file: the queue that holds an outage's events is not safe."""
    server = RedisServer(tmp_path / "redis", extra_args=redis_args)
    server.start()
    try:
        settings = load_settings(celery_broker_url=f"redis://127.0.0.1:{server.port}/0")
        outcome = check_broker(settings)
    finally:
        server.stop()
    assert not outcome.ok
    assert detail in outcome.detail
    assert fix in outcome.fix


def test_a_safe_broker_shows_its_memory(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", appendonly=True, extra_args=["--maxmemory", "64mb"])
    server.start()
    try:
        outcome = check_broker(
            load_settings(celery_broker_url=f"redis://127.0.0.1:{server.port}/0")
        )
    finally:
        server.stop()
    assert outcome.ok, outcome
    assert " MB of 64 MB (" in outcome.detail
