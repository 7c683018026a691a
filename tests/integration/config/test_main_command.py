"""The `ha-ingestor` command wires every subcommand (what `make run` and the Procfile call).

The subcommands come from the command's own table (config/main_command.py COMMANDS), so a new
one is covered the day it is added.
"""

from __future__ import annotations

import subprocess

import pytest

from config.main_command import COMMANDS
from tests.processes import BIN, app_env

pytestmark = pytest.mark.integration

COMMAND = str(BIN / "ha-ingestor")
DEVELOPMENT = [name for name, (module, _) in COMMANDS.items() if module.startswith("devtools.")]
PRODUCT = [name for name in COMMANDS if name not in DEVELOPMENT]


def test_the_main_help_names_every_subcommand() -> None:
    done = subprocess.run(
        [COMMAND, "--help"], env=app_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())  # argparse wraps long lines
    for name, (_, help_text) in COMMANDS.items():
        assert f" {name} {help_text}" in text, name


@pytest.mark.parametrize("name", list(COMMANDS))
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


def test_the_development_commands_are_the_three_the_design_names() -> None:
    """DESIGN §2: nothing but `dev`, `simulate` and `docs-reference` reaches devtools/."""
    assert sorted(DEVELOPMENT) == ["dev", "docs-reference", "simulate"]


@pytest.mark.parametrize("name", DEVELOPMENT)
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


@pytest.mark.parametrize("name", PRODUCT)
def test_a_product_command_does_not_need_devtools(name: str) -> None:
    code = (
        "import sys; sys.modules['devtools'] = None; "
        f"from config.main_command import main; sys.exit(main([{name!r}, '--help']))"
    )
    done = subprocess.run(
        [str(BIN / "python"), "-c", code], env=app_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert f"ha-ingestor {name}" in done.stdout
