"""The durable spool: order, durability across reopen, bounded size."""

from __future__ import annotations

from pathlib import Path

import pytest

from listener.spool import Spool, SpoolFull


def test_messages_come_back_in_order_and_leave_only_when_removed(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite3")
    spool.append([f"m{i}" for i in range(10)])
    spool.append(["m10"])
    head = spool.peek(4)
    assert [body for _, body in head] == ["m0", "m1", "m2", "m3"]
    spool.remove_through(head[-1][0])
    assert spool.depth == 7
    assert [body for _, body in spool.peek(100)] == [f"m{i}" for i in range(4, 11)]


def test_the_spool_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    first = Spool(path)
    first.append(["a", "b", "c"])
    first.close()
    again = Spool(path)
    assert again.depth == 3
    assert [body for _, body in again.peek(10)] == ["a", "b", "c"]


def test_a_full_spool_refuses_the_whole_batch_with_advice(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite3", max_bytes=64 * 1024)
    spool.append(["x" * 1000] * 10)
    with pytest.raises(SpoolFull, match="SPOOL_MAX_MB"):
        spool.append(["y" * 1000] * 100)
    assert spool.depth == 10
