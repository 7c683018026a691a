"""The publisher thread is supervised and the spool never blocks on a bad row."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from listener.data_dir_lock import DataDirBusy, DataDirLock
from listener.handoff.publisher import CallableBatches, Publisher
from listener.handoff.spool import Spool
from listener.health.stats import ListenerStats
from tests.helpers import wait_until
from tests.processes import AppProcess, app_env, listener_argv

pytestmark = pytest.mark.integration


def _message(seq: int) -> dict[str, Any]:
    return {"event": {"event_type": "state_changed", "n": seq}, "received_at": 1.0,
            "source": "live", "seq": seq}  # fmt: skip


class SpoolLockedOnce(Spool):
    """A spool whose first read fails as SQLite does when another process holds the file."""

    failures = 1

    def peek(self, limit: int) -> list[tuple[int, bytes]]:
        if self.failures:
            self.failures -= 1
            raise sqlite3.OperationalError("database is locked")
        return super().peek(limit)


def test_an_exception_in_the_publisher_restarts_it_and_loses_nothing(tmp_path: Path) -> None:
    published: list[dict[str, Any]] = []
    stats = ListenerStats()
    spool = SpoolLockedOnce(tmp_path / "spool.sqlite3")
    spool.append([json.dumps(_message(0)).encode()])  # left by a previous run: drained first
    publisher = Publisher(CallableBatches(published.extend), spool, stats)
    publisher.start()
    for seq in range(1, 1001):
        assert publisher.submit(_message(seq))
    wait_until(lambda: len(published) >= 1001, 15, message="every message published")
    publisher.stop()
    assert stats.publisher_restarts == 1
    assert sorted(m["seq"] for m in published) == list(range(1001))
    assert spool.depth == 0


def test_a_row_that_does_not_decode_is_quarantined_and_the_rest_drain(tmp_path: Path) -> None:
    published: list[dict[str, Any]] = []
    stats = ListenerStats()
    path = tmp_path / "spool.sqlite3"
    spool = Spool(path)
    spool.append([json.dumps(_message(1)).encode(), b"\xff\x00 not a message"])
    spool.append([json.dumps(_message(seq)).encode() for seq in range(2, 11)])
    publisher = Publisher(CallableBatches(published.extend), spool, stats)
    publisher.start()
    wait_until(lambda: len(published) >= 10, 10, message="the decodable rows published")
    publisher.stop()
    assert [m["seq"] for m in published] == list(range(1, 11)), "in order, none dropped"
    assert stats.spool_quarantined == spool.quarantined == 1
    assert stats.publisher_restarts == 0
    spool.close()
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT body, reason FROM quarantine").fetchall()
    assert rows == [(b"\xff\x00 not a message", "the row does not decode")], "kept, not dropped"


def test_a_second_lock_on_one_data_dir_is_refused_with_advice(tmp_path: Path) -> None:
    first = DataDirLock(tmp_path)
    with pytest.raises(DataDirBusy, match=r"another listener \(pid \d+\).*own DATA_DIR"):
        DataDirLock(tmp_path)
    first.release()
    DataDirLock(tmp_path).release()  # free again once the first let go


def test_a_second_listener_on_the_same_data_dir_refuses_to_start(
    tmp_path: Path, redis_url: str
) -> None:
    data_dir = tmp_path / "data"
    held = DataDirLock(data_dir)  # the lock a running listener holds
    env = app_env(
        HA_URL="ws://127.0.0.1:9/api/websocket",
        HA_TOKEN="some-token-0123456789",
        CELERY_BROKER_URL=redis_url,
        DATA_DIR=str(data_dir),
        HEALTH_PORT="0",
    )
    second = AppProcess("listener", listener_argv(), env, tmp_path).start()
    try:
        assert second.wait(20) == 2
        log = second.log_text()
        assert "another listener" in log
        assert "DATA_DIR" in log
        assert "Traceback" not in log
    finally:
        second.stop()
        held.release()
