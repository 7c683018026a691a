"""A durable, ordered, size-bounded local spool for task messages the broker cannot take yet.

SQLite in WAL mode: each append is one transaction that survives SIGKILL and power loss of the
process (synchronous=NORMAL keeps WAL durability against process death, which is what we need);
rows come back in insertion order and are deleted only after the broker accepted them.

A row holds what the publisher will hand the broker, as bytes it does not read: on Redis the
message exactly as it is LPUSHed (listener/publisher.py says what other brokers store). Spools
from before schema version 1 held the §3.1 task argument as JSON text; `upgrade` rewrites such
rows once, in one transaction, so a spool left by an older listener still drains.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

SCHEMA_VERSION = 1
"""`PRAGMA user_version` of a spool whose rows are broker bytes; 0 means TEXT rows (older)."""


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
        self._db.execute("BEGIN IMMEDIATE")
        exists = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'spool'"
        ).fetchone()
        if not exists:
            self._db.execute(
                "CREATE TABLE spool (id INTEGER PRIMARY KEY AUTOINCREMENT, body BLOB NOT NULL)"
            )
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._db.execute("COMMIT")
        self._version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if self._version > SCHEMA_VERSION:
            self._db.close()
            raise ValueError(
                f"the spool {path} was written by a newer ha-ingestor (schema version "
                f"{self._version}): run that version until it has drained the spool"
            )
        self._page_size = int(self._db.execute("PRAGMA page_size").fetchone()[0])
        self._depth = int(self._db.execute("SELECT COUNT(*) FROM spool").fetchone()[0])

    @property
    def depth(self) -> int:
        """How many messages wait in the spool."""
        return self._depth

    @property
    def needs_upgrade(self) -> bool:
        """Whether the rows are an older listener's JSON text, to convert with `upgrade`."""
        return self._version < SCHEMA_VERSION

    def upgrade(self, convert: Callable[[str], bytes]) -> int:
        """Rewrite an older spool's rows (§3.1 message JSON text) as `convert` makes them.

        All rows or none: a listener killed meanwhile finds the old spool intact and converts
        it again. Returns how many rows were converted.
        """
        if not self.needs_upgrade:
            return 0
        converted = 0
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                last_id = 0
                while rows := self._db.execute(
                    "SELECT id, body FROM spool WHERE id > ? AND typeof(body) = 'text' "
                    "ORDER BY id LIMIT 1000",
                    (last_id,),
                ).fetchall():
                    self._db.executemany(
                        "UPDATE spool SET body = ? WHERE id = ?",
                        ((convert(body), row_id) for row_id, body in rows),
                    )
                    converted += len(rows)
                    last_id = rows[-1][0]
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                self._db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                self._db.execute("ROLLBACK")
                raise SpoolFull(
                    f"cannot convert the spool {self.path} left by an older version ({exc}): "
                    "free disk space there and start the listener again"
                ) from exc
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._version = SCHEMA_VERSION
        return converted

    def size_bytes(self) -> int:
        pages = int(self._db.execute("PRAGMA page_count").fetchone()[0])
        free = int(self._db.execute("PRAGMA freelist_count").fetchone()[0])
        return (pages - free) * self._page_size

    def append(self, bodies: Sequence[bytes]) -> None:
        """Store bodies at the end, durably, or raise SpoolFull and store none."""
        if not bodies:
            return
        self._check_upgraded()
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
                    "or set DATA_DIR to a disk with room"
                ) from exc
            self._depth += len(bodies)

    def peek(self, limit: int) -> list[tuple[int, bytes]]:
        """The oldest messages, as (row id, body), without removing them."""
        self._check_upgraded()
        with self._lock:
            rows = self._db.execute(
                "SELECT id, body FROM spool ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return [(int(row_id), bytes(body)) for row_id, body in rows]

    def remove_through(self, last_id: int) -> None:
        """Forget every message up to and including row `last_id` (the broker has them)."""
        with self._lock:
            cursor = self._db.execute("DELETE FROM spool WHERE id <= ?", (last_id,))
            self._depth = max(0, self._depth - cursor.rowcount)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _check_upgraded(self) -> None:
        if self.needs_upgrade:
            raise RuntimeError(f"the spool {self.path} is in an older format: upgrade() it first")
