"""A durable, ordered, size-bounded local spool for task messages the broker cannot take yet.

SQLite in WAL mode: each append is one transaction that survives SIGKILL and power loss of the
process (synchronous=NORMAL keeps WAL durability against process death, which is what we need);
rows come back in insertion order and are deleted only after the broker accepted them.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path


class SpoolFull(Exception):
    """The spool reached its size limit or the disk is full; nothing was appended."""


class Spool:
    """Append-only queue on disk. Used from one thread at a time (the publisher's)."""

    def __init__(self, path: Path, max_bytes: int = 1 << 30) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT)"
        )
        self._page_size = int(self._db.execute("PRAGMA page_size").fetchone()[0])
        self._depth = int(self._db.execute("SELECT COUNT(*) FROM spool").fetchone()[0])

    @property
    def depth(self) -> int:
        """How many messages wait in the spool."""
        return self._depth

    def size_bytes(self) -> int:
        pages = int(self._db.execute("PRAGMA page_count").fetchone()[0])
        free = int(self._db.execute("PRAGMA freelist_count").fetchone()[0])
        return (pages - free) * self._page_size

    def append(self, bodies: Sequence[str]) -> None:
        """Store bodies at the end, durably, or raise SpoolFull and store none."""
        if not bodies:
            return
        with self._lock:
            if self.size_bytes() + sum(len(b) for b in bodies) > self._max_bytes:
                raise SpoolFull(
                    f"the spool {self.path} reached its limit of {self._max_bytes} bytes: "
                    "start the broker (the spool drains by itself) or raise SPOOL_MAX_MB"
                )
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT INTO spool (body) VALUES (?)", ((b,) for b in bodies))
                self._db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                self._db.execute("ROLLBACK")
                raise SpoolFull(
                    f"cannot write to the spool {self.path} ({exc}): free disk space there "
                    "or set SPOOL_DIR to a disk with room"
                ) from exc
            self._depth += len(bodies)

    def peek(self, limit: int) -> list[tuple[int, str]]:
        """The oldest messages, as (row id, body), without removing them."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, body FROM spool ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return [(int(row_id), str(body)) for row_id, body in rows]

    def remove_through(self, last_id: int) -> None:
        """Forget every message up to and including row `last_id` (the broker has them)."""
        with self._lock:
            cursor = self._db.execute("DELETE FROM spool WHERE id <= ?", (last_id,))
            self._depth = max(0, self._depth - cursor.rowcount)

    def close(self) -> None:
        with self._lock:
            self._db.close()
