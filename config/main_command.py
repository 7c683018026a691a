"""The `ha-ingestor` command. Each subcommand lives in the package it belongs to.

This module is the composition root: it may name both `listener` and `workers` commands, which
never import each other, and the three development commands in `devtools` (`dev`, `simulate`,
`docs-reference`), which the container image leaves out. Subcommand modules are imported only
when chosen, so `ha-ingestor simulate` does not load Celery.

The commands that talk to a running stack (`status`, `check`, `dlq`, `import`) reach the one
`make run` started in this checkout when their environment names no broker, and say so
(config/dev_stack_file.py).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from types import ModuleType

from config import dev_stack_file
from config.settings import SettingsError

COMMANDS: dict[str, tuple[str, str]] = {
    "listener": ("listener.listener_command", "keep HA's subscription and enqueue every event"),
    "simulate": ("devtools.simulate_command", "run the built-in Home Assistant simulator"),
    "dev": ("devtools.dev_command", "run the whole stack locally (what `make run` does)"),
    "status": (
        "workers.commands.status_command",
        "health summary (exit code 0 healthy, 1 degraded, 2 not)",
    ),
    "check": ("config.check_command", "verify configuration, HA login, broker, Redis and InfluxDB"),
    "flower": (
        "workers.commands.flower_command",
        "run Flower (refuses to be open without auth)",
    ),
    "dlq": ("workers.commands.dlq_command", "list, replay or purge dead letters"),
    "renames": (
        "workers.commands.renames_command",
        "list the entity renames recorded in InfluxDB (TRACK_RENAMES)",
    ),
    "import": (
        "listener.importing.import_command",
        "import the states and long-term statistics HA already recorded",
    ),
    "trace": ("listener.ha.trace_command", "summarise a frame trace (HA_TRACE_FRAMES)"),
    "docs-reference": ("devtools.docs_reference", "generate docs/configuration.md from the code"),
}
"""name → (module with `add_arguments(parser)` and `run(args) -> int`, help text)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ha-ingestor", description="Record Home Assistant events into InfluxDB."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (_, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = _command_module(name)
            if module is None:
                return 2
            module.add_arguments(command)
    args = parser.parse_args(argv)
    module = _command_module(args.command)
    if module is None:
        return 2
    if args.command in dev_stack_file.COMMANDS:
        dev_stack_file.reach_the_stack(args.command, os.environ, sys.stderr)
    try:
        code: int = module.run(args)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    return code


def _command_module(name: str) -> ModuleType | None:
    """The subcommand's module; None (and why, on stderr) when it is not installed here."""
    module_name = COMMANDS[name][0]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if not module_name.startswith("devtools.") or not (exc.name or "").startswith("devtools"):
            raise
        print(
            f"ha-ingestor {name}: this installation has no development tools (devtools/ is left "
            "out of the container image). Run it from a clone of the repository: `make run`.",
            file=sys.stderr,
        )
        return None


if __name__ == "__main__":
    sys.exit(main())
