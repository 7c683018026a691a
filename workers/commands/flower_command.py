"""`ha-ingestor flower`: Celery's Flower, persistent, and never open beyond loopback.

Flower shows every task's arguments and can revoke tasks and shut workers down, so it refuses
to bind anything but a loopback address without FLOWER_BASIC_AUTH. The credentials stay in the
environment (Flower reads FLOWER_BASIC_AUTH itself) rather than on a command line anyone on the
host can read with `ps`. Its state (tasks seen) is kept in DATA_DIR/flower.db across restarts.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys

EXIT_REFUSED = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options: Flower reads its own from FLOWER_* variables (FLOWER_PURGE_OFFLINE_WORKERS=60,
    FLOWER_LOGGING=debug, …), as do FLOWER_ADDRESS, FLOWER_PORT and FLOWER_BASIC_AUTH."""


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1 and localhost; "" and 0.0.0.0 mean every interface."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def flower_argv(address: str, port: int, db: str) -> list[str]:
    """The command this one becomes."""
    return [
        sys.executable, "-m", "celery", "-A", "config.celery_app", "flower",
        f"--address={address}", f"--port={port}", "--persistent=True", f"--db={db}",
        "--state_save_interval=60000",
    ]  # fmt: skip


def run(_: argparse.Namespace) -> int:
    from config.settings import get_settings

    settings = get_settings()
    address = settings.flower_address
    if not is_loopback(address) and settings.flower_basic_auth is None:
        print(
            f"ha-ingestor flower: refusing to serve on {address or 'every interface'} without "
            "authentication: Flower shows task arguments and can stop workers. Set "
            "FLOWER_BASIC_AUTH=user:password, or FLOWER_ADDRESS=127.0.0.1 to stay local.",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = str((settings.data_dir / "flower.db").resolve())
    argv = flower_argv(address, settings.flower_port, db)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)
    return 0  # pragma: no cover - execv does not return
