"""The `ha-ingestor` command wires every subcommand (what `make run` and the Procfile call)."""

from __future__ import annotations

import subprocess

import pytest

from tests.processes import BIN, app_env

pytestmark = pytest.mark.integration

COMMAND = str(BIN / "ha-ingestor")


@pytest.mark.parametrize(
    "name", ["listener", "simulate", "dev", "status", "check", "flower", "dlq", "docs-reference"]
)
def test_every_subcommand_has_its_help(name: str) -> None:
    done = subprocess.run(
        [COMMAND, name, "--help"], env=app_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert f"ha-ingestor {name}" in done.stdout


def test_simulate_through_the_main_command_serves_and_exits() -> None:
    done = subprocess.run(
        [COMMAND, "simulate", "--port", "0", "--events", "5", "--exit-when-done"],
        env=app_env(HA_TOKEN="cli-test-token"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "HA simulator listening on ws://127.0.0.1:" in done.stderr
