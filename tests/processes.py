"""Real ha-ingestor processes for end-to-end and fault tests, stopped by PID, logs kept."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from config.settings import setting_variables
from devtools.local_servers import terminate

BIN = Path(sys.executable).parent


def app_env(**settings: str) -> dict[str, str]:
    """The environment of an app process: ours less every setting, plus the given settings."""
    ours = setting_variables()
    env = {k: v for k, v in os.environ.items() if k.upper() not in ours}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings)
    return env


class AppProcess:
    """One process with its output in a log file; stop() is SIGTERM then SIGKILL, by PID."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AppProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait, then SIGKILL; returns the exit code."""
        return None if self.proc is None else terminate(self.proc, timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def listener_argv() -> list[str]:
    return [str(BIN / "ha-ingestor"), "listener"]


def worker_argv(name: str = "worker") -> list[str]:
    return [
        str(BIN / "celery"), "-A", "config.celery_app", "worker", "--pool", "solo",
        "--loglevel", "INFO", "--without-mingle", "--without-gossip",
        "-n", f"{name}-{uuid.uuid4().hex[:6]}@%h",
    ]  # fmt: skip


def beat_argv(schedule: Path) -> list[str]:
    return [
        str(BIN / "celery"), "-A", "config.celery_app", "beat", "--loglevel", "INFO",
        "-s", str(schedule),
    ]  # fmt: skip
