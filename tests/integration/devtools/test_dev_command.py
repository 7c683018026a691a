"""`make run` (`ha-ingestor dev`) and the commands a user runs beside it in the same checkout.

The dev stack starts its own Redis, InfluxDB and simulator on ports of its choosing; `status`
and `dlq list` run from the checkout with no broker in their environment must report that
stack, not the default Redis on 6379.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from dotenv import dotenv_values
from honcho.environ import parse_procfile

from devtools.local_servers import terminate
from tests.helpers import wait_until
from tests.processes import BIN, app_env

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]


def _procfile_without_flower(directory: Path) -> Path:
    """The repository's Procfile minus Flower (not needed here, and slow to start)."""
    processes = parse_procfile((REPO / "Procfile").read_text(encoding="utf-8")).processes
    path = directory / "Procfile"
    path.write_text(
        "".join(f"{name}: {command}\n" for name, command in processes.items() if name != "flower"),
        encoding="utf-8",
    )
    return path


def _command(checkout: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """An `ha-ingestor` command as a user runs it from the checkout: no broker set."""
    return subprocess.run(
        [str(BIN / "ha-ingestor"), *argv],
        cwd=checkout,
        env=app_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def _kill_leftovers(log: Path) -> None:
    """If the stack could not stop its children, kill their process groups by logged PID."""
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    for pid in re.findall(r"started \(pid=(\d+)\)", text):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(int(pid), signal.SIGKILL)


def test_status_and_dlq_beside_make_run_reach_its_stack(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    procfile = _procfile_without_flower(tmp_path)
    stack_file = checkout / ".data" / "dev-stack.env"
    log = tmp_path / "dev.log"
    with log.open("wb") as out:
        dev = subprocess.Popen(
            [str(BIN / "ha-ingestor"), "dev", "--free-ports", "--procfile", str(procfile),
             "--rate", "5", "--entities", "10"],
            cwd=checkout, env=app_env(), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        wait_until(
            lambda: dev.poll() is None and stack_file.is_file(),
            60,
            0.2,
            message=f"the dev stack's settings file (log: {log})",
        )
        stack = dotenv_values(stack_file)
        broker = stack["CELERY_BROKER_URL"]
        assert broker is not None
        assert stack["HA_INGESTOR_DEV_PID"] == str(dev.pid)
        assert broker != "redis://127.0.0.1:6379/0"

        def healthy() -> subprocess.CompletedProcess[str] | None:
            assert dev.poll() is None, log.read_text(encoding="utf-8", errors="replace")
            done = _command(checkout, "status")
            return done if done.returncode == 0 else None

        status = wait_until(healthy, 120, 1.0, message="`ha-ingestor status` saying HEALTHY")
        assert status is not None
        assert status.stdout.startswith("ha-ingestor: HEALTHY\n"), status.stdout
        assert "Beat" in status.stdout
        assert "has not run" not in status.stdout
        assert f"talking to the dev stack of `make run` (pid {dev.pid}" in status.stderr
        assert f"broker {broker}" in status.stderr
        token = stack["HA_TOKEN"]
        assert token
        assert token not in status.stderr + status.stdout

        letters = _command(checkout, "dlq", "list")
        assert letters.returncode == 0, letters.stderr
        assert letters.stdout == "no dead letters\n"
        assert f"broker {broker}" in letters.stderr
    finally:
        code = terminate(dev, timeout=30)
        _kill_leftovers(log)
    # Stopped by itself on SIGTERM (honcho reports 128 + SIGTERM for that), not SIGKILLed.
    assert code in (0, 128 + signal.SIGTERM), log.read_text(encoding="utf-8", errors="replace")
    assert not stack_file.exists(), "the dev stack removes its settings file when it stops"
    assert _refuses(int(broker.rsplit(":", 1)[1].split("/")[0])), "its Redis is stopped"
