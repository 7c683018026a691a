"""A durable, ordered, size-bounded local spool for task messages the broker cannot take yet.

SQLite in WAL mode with synchronous=FULL: each append is one transaction, fsynced before it
returns, so it survives SIGKILL and a power cut alike (NORMAL would survive the first only: a
power cut can roll back its last commits); rows come back in insertion order and are deleted
only after the broker accepted them. Appends come in batches, so the fsync is paid per batch.

A row that cannot be read back (not bytes, or bytes the publisher cannot decode) is moved to the
`quarantine` table in the same file, never dropped and never blocking the rows behind it;
`quarantined` counts them for /health.

A row holds what the publisher will hand the broker, as bytes it does not read: on Redis the
message exactly as it is LPUSHed (listener/handoff/publisher.py says what other brokers store).
Spools from before schema version 1 held the §3.1 task argument as JSON text; `upgrade` rewrites
such rows once, in one transaction, so a spool left by an older listener still drains.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("BEGIN IMMEDIATE")
        exists = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'spool'"
        ).fetchone()
        if not exists:
            self._db.execute(
                "CREATE TABLE spool (id INTEGER PRIMARY KEY AUTOINCREMENT, body BLOB NOT NULL)"
            )
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS quarantine (id INTEGER PRIMARY KEY, body, "
            "reason TEXT NOT NULL, quarantined_at REAL NOT NULL)"
        )
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
        self._quarantined = int(self._db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0])

    @property
    def depth(self) -> int:
        """How many messages wait in the spool."""
        return self._depth

    @property
    def quarantined(self) -> int:
        """How many rows were kept apart because they could not be read back."""
        return self._quarantined

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
        failure = (
            "cannot convert the spool {path} left by an older version ({exc}): free disk space "
            "there and start the listener again"
        )
        with self._lock, self._transaction(failure):
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
            failure = (
                "cannot write to the spool {path} ({exc}): free disk space there or set "
                "DATA_DIR to a disk with room"
            )
            with self._transaction(failure):
                self._db.executemany("INSERT INTO spool (body) VALUES (?)", ((b,) for b in bodies))
            self._depth += len(bodies)

    def peek(self, limit: int) -> list[tuple[int, bytes]]:
        """The oldest messages, as (row id, body), without removing them.

        A row whose body is not bytes (no listener writes one) is quarantined on the way.
        """
        self._check_upgraded()
        with self._lock:
            rows = self._db.execute(
                "SELECT id, body FROM spool ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        unreadable = [int(row_id) for row_id, body in rows if not isinstance(body, bytes)]
        if unreadable:
            self.quarantine(unreadable, "the row is not bytes")
        return [(int(row_id), body) for row_id, body in rows if isinstance(body, bytes)]

    def quarantine(self, row_ids: Sequence[int], reason: str) -> None:
        """Move rows that cannot be read back to the quarantine table, in one transaction."""
        if not row_ids:
            return
        marks = ",".join("?" * len(row_ids))
        failure = (
            "cannot quarantine unreadable rows of the spool {path} ({exc}): free disk space there"
        )
        with self._lock, self._transaction(failure):
            self._db.execute(
                "INSERT INTO quarantine (id, body, reason, quarantined_at) "
                f"SELECT id, body, ?, ? FROM spool WHERE id IN ({marks})",
                (reason, time.time(), *row_ids),
            )
            cursor = self._db.execute(f"DELETE FROM spool WHERE id IN ({marks})", row_ids)
        self._depth = max(0, self._depth - cursor.rowcount)
        self._quarantined += cursor.rowcount

    def remove_through(self, last_id: int) -> None:
        """Forget every message up to and including row `last_id` (the broker has them)."""
        with self._lock:
            cursor = self._db.execute("DELETE FROM spool WHERE id <= ?", (last_id,))
            self._depth = max(0, self._depth - cursor.rowcount)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self, failure: str) -> Iterator[None]:
        """BEGIN IMMEDIATE … COMMIT; on a SQLite error roll back and raise SpoolFull(failure).

        `failure` names `{path}` and `{exc}`; the caller holds the lock.
        """
        try:
            self._db.execute("BEGIN IMMEDIATE")
            yield
            self._db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            self._rollback()
            raise SpoolFull(failure.format(path=self.path, exc=exc)) from exc
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def _check_upgraded(self) -> None:
        if self.needs_upgrade:
            raise RuntimeError(f"the spool {self.path} is in an older format: upgrade() it first")
