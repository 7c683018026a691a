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


@pytest.mark.parametrize("name", ["simulate", "dev", "docs-reference"])
def test_a_development_command_without_devtools_says_so(name: str) -> None:
    """The container image has no devtools/: the command explains instead of a traceback."""
    code = (
        "import sys; sys.modules['devtools'] = None; "
        "from config.main_command import main; "
        f"sys.exit(main([{name!r}, '--help']))"
    )
    done = subprocess.run(
        [str(BIN / "python"), "-c", code], env=app_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert f"ha-ingestor {name}: this installation has no development tools" in done.stderr
    assert "make run" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_product_command_does_not_need_devtools() -> None:
    code = (
        "import sys; sys.modules['devtools'] = None; "
        "from config.main_command import main; sys.exit(main(['status', '--help']))"
    )
    done = subprocess.run(
        [str(BIN / "python"), "-c", code], env=app_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "ha-ingestor status" in done.stdout
