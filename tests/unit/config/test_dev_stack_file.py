"""A command run beside `make run` reads the dev stack's settings file, or says how to reach one."""

from __future__ import annotations

import io
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from config.dev_stack_file import (
    HOW_TO_REACH_A_STACK,
    broker_configured,
    find_dev_stack,
    reach_the_stack,
    stack_file,
    write_stack_file,
)
from config.settings import get_settings, load_settings
from devtools.local_servers import free_port

STACK = {
    "CELERY_BROKER_URL": "redis://127.0.0.1:6391/0",
    "INFLUXDB_URL": "http://127.0.0.1:8096",
    "INFLUXDB_DATABASE": "home_assistant",
    "HEALTH_PORT": "8011",
    "HA_TOKEN": "throwaway-simulator-token",
}


@pytest.fixture
def dead_pid() -> int:
    """The PID of a process that has exited and been reaped."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(done.stdout)


def test_the_file_reads_back_as_written_and_only_its_owner_reads_it(tmp_path: Path) -> None:
    path = stack_file(tmp_path / ".data")
    write_stack_file(path, STACK, os.getpid())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stack = find_dev_stack({"DATA_DIR": str(tmp_path / ".data")})
    assert stack is not None
    assert (stack.path, stack.pid, dict(stack.values)) == (path, os.getpid(), STACK)
    assert stack.running()
    assert list(tmp_path.joinpath(".data").iterdir()) == [path], "no partial file left"


def test_the_data_directory_defaults_to_the_checkouts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_dev_stack({}) is None
    write_stack_file(Path(".data") / "dev-stack.env", STACK, os.getpid())
    stack = find_dev_stack({})
    assert stack is not None
    assert stack.values["CELERY_BROKER_URL"] == STACK["CELERY_BROKER_URL"]


@pytest.mark.parametrize(
    ("environ", "configured"),
    [
        ({}, False),
        ({"HA_URL": "http://ha:8123", "INFLUXDB_URL": "http://x:8086"}, False),
        ({"CELERY_BROKER_URL": ""}, False),
        ({"CELERY_BROKER_URL": "redis://127.0.0.1:6379/0"}, True),
        ({"celery_broker_url": "redis://127.0.0.1:6379/0"}, True),
        ({"REDIS_URL": "redis://127.0.0.1:6379/1"}, True),
    ],
)
def test_a_broker_in_the_environment_means_no_stack_file(
    environ: dict[str, str], configured: bool
) -> None:
    assert broker_configured(environ) is configured


def test_a_command_beside_the_dev_stack_reads_its_file_and_says_so(tmp_path: Path) -> None:
    write_stack_file(stack_file(tmp_path), STACK, os.getpid())
    err = io.StringIO()
    environ = {"DATA_DIR": str(tmp_path), "INFLUXDB_DATABASE": "mine"}
    reach_the_stack("status", environ, err)
    said = err.getvalue()
    assert said.startswith("ha-ingestor status: talking to the dev stack of `make run` (pid ")
    assert "broker redis://127.0.0.1:6391/0, InfluxDB http://127.0.0.1:8096" in said
    assert "status page http://127.0.0.1:8011/" in said
    assert STACK["HA_TOKEN"] not in said
    settings = get_settings()
    assert settings.celery_broker_url.get_secret_value() == STACK["CELERY_BROKER_URL"]
    assert settings.health_port == 8011
    assert settings.ha_token_value() == STACK["HA_TOKEN"]


def test_the_environment_wins_over_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_stack_file(stack_file(tmp_path), STACK, os.getpid())
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("INFLUXDB_DATABASE", "mine")
    reach_the_stack("dlq", os.environ, io.StringIO())
    settings = load_settings()
    assert settings.influxdb_database == "mine"
    assert settings.influxdb_url == STACK["INFLUXDB_URL"]


def test_a_broker_in_the_environment_ignores_the_file(tmp_path: Path) -> None:
    write_stack_file(stack_file(tmp_path), STACK, os.getpid())
    err = io.StringIO()
    environ = {"DATA_DIR": str(tmp_path), "CELERY_BROKER_URL": "redis://127.0.0.1:6399/0"}
    reach_the_stack("status", environ, err, default_broker=f"redis://127.0.0.1:{free_port()}/0")
    assert err.getvalue() == ""
    assert load_settings().influxdb_url == "http://127.0.0.1:8086"


def test_a_stale_file_is_ignored_and_the_way_to_a_stack_is_said(
    tmp_path: Path, dead_pid: int
) -> None:
    write_stack_file(stack_file(tmp_path), STACK, dead_pid)
    err = io.StringIO()
    nobody = f"redis://127.0.0.1:{free_port()}/0"
    reach_the_stack("check", {"DATA_DIR": str(tmp_path)}, err, default_broker=nobody)
    lines = err.getvalue().splitlines()
    assert lines[0] == (
        f"ha-ingestor check: ignoring {stack_file(tmp_path)}: the `make run` that wrote it "
        f"(pid {dead_pid}) no longer runs"
    )
    assert lines[1].startswith(f"ha-ingestor check: nothing answers at {nobody}")
    assert lines[1].endswith(HOW_TO_REACH_A_STACK)
    assert "CELERY_BROKER_URL" in HOW_TO_REACH_A_STACK
    assert "REDIS_URL" in HOW_TO_REACH_A_STACK
    assert "make run" in HOW_TO_REACH_A_STACK
    assert load_settings().influxdb_url == "http://127.0.0.1:8086", "the stale file is not read"


def test_no_stack_and_a_default_broker_that_answers_says_it_uses_that(tmp_path: Path) -> None:
    """Someone runs Redis on the default port: the command uses it, and says so."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        answering = f"redis://127.0.0.1:{server.getsockname()[1]}/0"
        err = io.StringIO()
        reach_the_stack("status", {"DATA_DIR": str(tmp_path)}, err, default_broker=answering)
    assert err.getvalue() == (
        f"ha-ingestor status: talking to the default broker {answering} (no CELERY_BROKER_URL "
        "set, and no `make run` runs in this checkout)\n"
    )
