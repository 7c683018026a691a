"""Real servers for the whole test session, and per-test isolation on top of them."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import redis

from config.settings import read_env_file, setting_variables
from devtools.influxdb3 import InfluxDB3Server
from devtools.local_servers import (
    InfluxDBServer,
    LocalServer,
    RedisServer,
    ServerNotInstalled,
    VictoriaMetricsServer,
)
from tests.helpers import InfluxDatabase, InfluxQL, Victoria

FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"
_redis_dbs = itertools.cycle(range(1, 16))
S = TypeVar("S", bound=LocalServer)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings read the environment: the developer's shell must not leak into tests.

    Every variable the settings model reads is cleared (each field's name or aliases, and
    their `_FILE` variants), and no dotenv file (a dev stack's) is read below it. Afterwards the
    environment is put back as it was: code run in-process may set variables of its own (the
    `celery` command line sets CELERY_LOADER, CELERY_CONFIG_MODULE...), which must not reach the
    next test.
    """
    variables = setting_variables()
    for name in list(os.environ):
        # CELERY_*: also Celery's own (CELERY_LOG_LEVEL, CELERY_LOG_FILE), which an in-process
        # worker's logging set-up leaves behind.
        if name.upper() in variables or name.upper().startswith("CELERY_"):
            monkeypatch.delenv(name)
    before = dict(os.environ)
    read_env_file(None)
    yield
    read_env_file(None)
    if dict(os.environ) != before:
        os.environ.clear()
        os.environ.update(before)


def _serve(server: S) -> Iterator[S]:
    """Start for the session; a missing binary fails with the install command."""
    try:
        server.start()
    except ServerNotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    # Persistent, as production runs it (and as `ha-ingestor check` requires of a broker).
    server = RedisServer(tmp_path_factory.mktemp("redis"), appendonly=True)
    yield from _serve(server)


@pytest.fixture(scope="session")
def influxdb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDBServer]:
    server = InfluxDBServer(tmp_path_factory.mktemp("influxdb"))
    yield from _serve(server)


@pytest.fixture(scope="session")
def victoria_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetricsServer]:
    server = VictoriaMetricsServer(tmp_path_factory.mktemp("victoria"))
    yield from _serve(server)


@pytest.fixture(scope="session")
def influxdb3_server() -> Iterator[InfluxDB3Server]:
    """The InfluxDB 3 Core stand-in (no package ships the real server), with a token."""
    server = InfluxDB3Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A Redis URL on the session server with its own DB number (1..15), emptied first."""
    url = f"redis://127.0.0.1:{redis_server.port}/{next(_redis_dbs)}"
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
    return url


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, to stop, pause and start; append-only, so it keeps its
    queue across restarts."""
    server = RedisServer(tmp_path / "own-redis", appendonly=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def influx_db(influxdb_server: InfluxDBServer) -> Iterator[InfluxDatabase]:
    """A fresh InfluxDB 1.x database on the session server, dropped after the test."""
    client = InfluxQL(influxdb_server.url)
    name = f"test_{uuid.uuid4().hex[:12]}"
    client.results(f'CREATE DATABASE "{name}"')
    yield InfluxDatabase(url=influxdb_server.url, name=name, client=client)
    client.results(f'DROP DATABASE "{name}"')


@pytest.fixture
def victoria(victoria_server: VictoriaMetricsServer) -> Victoria:
    """The session VictoriaMetrics, emptied of every series before the test."""
    client = Victoria(victoria_server.url)
    client.delete_all()
    return client


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """Frames captured from a real Home Assistant (tests/fixtures, with its README)."""
    if not FIXTURES_DIR.is_dir():
        pytest.fail(
            f"the fixtures directory is missing: {FIXTURES_DIR} "
            "(it is part of the repository: restore it with `git checkout tests/fixtures`)",
            pytrace=False,
        )
    return FIXTURES_DIR
