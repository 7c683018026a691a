"""One listener per DATA_DIR: a lock file held for the life of the process.

Two listeners on one DATA_DIR would share a spool and a gap mark: SQLite would answer one of
them "database is locked" and both would fill the same gap. `flock` is released by the kernel
when the process ends, however it ends, so a SIGKILLed listener never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = "listener.lock"


class DataDirBusy(Exception):
    """Another listener holds this DATA_DIR."""


class DataDirLock:
    """Holds `DATA_DIR/listener.lock` (with this process's pid in it) until `release`."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / LOCK_NAME
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirBusy(
                f"another listener (pid {holder}) is running with DATA_DIR={data_dir}: stop "
                "it first, or give this listener its own DATA_DIR (one per HA instance)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
