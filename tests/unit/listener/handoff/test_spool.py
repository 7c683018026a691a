"""The durable spool: order, durability across reopen, bounded size, older files upgraded."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from listener.handoff.spool import SCHEMA_VERSION, Spool, SpoolFull


def _legacy_spool(path: Path, bodies: list[str]) -> None:
    """A spool as listeners before schema version 1 wrote it: the task argument as JSON TEXT."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE spool (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT)")
    db.executemany("INSERT INTO spool (body) VALUES (?)", ((b,) for b in bodies))
    db.commit()
    db.close()


def test_messages_come_back_in_order_and_leave_only_when_removed(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite3")
    spool.append([f"m{i}".encode() for i in range(10)])
    spool.append([b"m10"])
    head = spool.peek(4)
    assert [body for _, body in head] == [b"m0", b"m1", b"m2", b"m3"]
    spool.remove_through(head[-1][0])
    assert spool.depth == 7
    assert [body for _, body in spool.peek(100)] == [f"m{i}".encode() for i in range(4, 11)]


def test_bodies_are_kept_byte_for_byte(tmp_path: Path) -> None:
    bodies = [bytes(range(256)), b"", b"\x00\xff" * 1000, '{"é": "温度"}'.encode()]
    spool = Spool(tmp_path / "s.sqlite3")
    spool.append(bodies)
    assert [body for _, body in spool.peek(10)] == bodies


def test_the_spool_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    first = Spool(path)
    first.append([b"a", b"b", b"c"])
    first.close()
    again = Spool(path)
    assert not again.needs_upgrade
    assert again.depth == 3
    assert [body for _, body in again.peek(10)] == [b"a", b"b", b"c"]


def test_a_full_spool_refuses_the_whole_batch_with_advice(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite3", max_bytes=64 * 1024)
    spool.append([b"x" * 1000] * 10)
    with pytest.raises(SpoolFull, match="SPOOL_MAX_MB"):
        spool.append([b"y" * 1000] * 100)
    assert spool.depth == 10


def test_an_older_spool_is_converted_once_in_order(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    old = [json.dumps({"seq": seq}) for seq in range(2500)]  # more than one conversion chunk
    _legacy_spool(path, old)
    spool = Spool(path)
    assert spool.needs_upgrade
    assert spool.depth == 2500
    with pytest.raises(RuntimeError, match="older format"):
        spool.peek(1)
    seen: list[str] = []

    def convert(text: str) -> bytes:
        seen.append(text)
        return b"wire:" + text.encode()

    assert spool.upgrade(convert) == 2500
    assert seen == old
    assert not spool.needs_upgrade
    assert [body for _, body in spool.peek(3000)] == [b"wire:" + t.encode() for t in old]
    spool.append([b"new"])
    spool.close()

    again = Spool(path)
    assert not again.needs_upgrade
    assert again.upgrade(convert) == 0, "converted once: the file says so"
    assert again.depth == 2501
    assert again.peek(3000)[-1][1] == b"new"
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


def test_a_failed_conversion_leaves_the_older_spool_intact(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    _legacy_spool(path, ["1", "2", "not json"])

    def convert(text: str) -> bytes:
        return json.dumps(json.loads(text)).encode()

    spool = Spool(path)
    with pytest.raises(ValueError, match="Expecting value"):
        spool.upgrade(convert)
    spool.close()
    again = Spool(path)
    assert again.needs_upgrade
    assert again.depth == 3


def test_an_empty_older_spool_only_changes_its_version(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    _legacy_spool(path, [])
    spool = Spool(path)
    assert spool.needs_upgrade
    assert spool.upgrade(lambda text: text.encode()) == 0
    assert not spool.needs_upgrade


def test_a_spool_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    Spool(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(ValueError, match="newer ha-ingestor"):
        Spool(path)


def test_a_row_that_is_not_bytes_is_quarantined_not_returned(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "spool.sqlite3"
    spool = Spool(path)
    spool.append([b"first"])
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO spool (body) VALUES ('text, not bytes')")
    spool.close()
    spool = Spool(path)
    spool.append([b"third"])
    assert [body for _, body in spool.peek(10)] == [b"first", b"third"]
    assert spool.quarantined == 1
    assert spool.depth == 2
    assert Spool(path).quarantined == 1, "the count survives reopening"
