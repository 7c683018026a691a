"""`ha-ingestor import`'s reading, through its one seam: the HA call (a dry run, so no broker).

HA itself is played by a function answering the WebSocket commands the way HA 2024.3 does;
the end-to-end tests (tests/e2e/test_import.py) run the real command against the simulator.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from listener.ha import protocol
from listener.history.gap_filler import BackfillLimits
from listener.importing.cursor import ImportCursor
from listener.importing.importer import HistoryImport, ImportRefused, ImportRequest, select
from listener.importing.progress import ImportProgress

START = datetime(2026, 11, 30, tzinfo=UTC)
END = START + timedelta(hours=5)


def _quick() -> Iterator[float]:
    while True:
        yield 0.0


class FakeHA:
    """Answers get_states, the statistics list and history; records what was asked."""

    def __init__(self, refuse: dict[str, str] | None = None) -> None:
        self.refuse = refuse or {}
        self.asked: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, command: str, reply_timeout: float = 30.0, **fields: Any) -> Any:
        self.asked.append((command, fields))
        if command in self.refuse:
            raise protocol.CommandFailed(command, self.refuse[command], "refused")
        if command == "get_states":
            return [{"entity_id": "sensor.a"}, {"entity_id": "light.b"}]
        if command == "recorder/list_statistic_ids":
            return [{"statistic_id": "sensor.a", "statistics_unit_of_measurement": "W"}]
        if command == "recorder/statistics_during_period":
            begin = datetime.fromisoformat(fields["start_time"])
            hours = int((datetime.fromisoformat(fields["end_time"]) - begin).total_seconds())
            step = 300 if fields["period"] == "5minute" else 3600
            first = int(begin.timestamp()) // step * step + (
                step if begin.timestamp() % step else 0
            )
            rows = [{"start": t * 1000, "mean": 1.0} for t in range(first, first + hours, step)]
            return {"sensor.a": rows}
        start = datetime.fromisoformat(fields["start_time"]).timestamp()
        end = datetime.fromisoformat(fields["end_time"]).timestamp()
        # A state every 10 minutes on the clock: some on window boundaries, exactly.
        times = [t for t in range(int(start) // 600 * 600, int(end) + 1, 600) if start < t < end]
        return {
            e: [{"s": "1", "a": {}, "lu": float(t)} for t in times] for e in fields["entity_ids"]
        }


def _importer(tmp_path: Path, **request: Any) -> HistoryImport:
    cursor = ImportCursor(tmp_path / "cursor.json")
    cursor.start, cursor.end = START, END
    return HistoryImport(
        ImportRequest(start=START, end=END, dry_run=True, **request),
        run_id="r",
        cursor=cursor,
        progress=ImportProgress(io.StringIO(), terminal=False),
        limits=BackfillLimits(window_s=3600, entities_per_request=1, retries=1),
        broker=None,
        tracker=None,
        max_queue=100,
        backoff=_quick,
    )


def test_a_dry_run_reads_every_window_once_from_just_before_its_start(tmp_path: Path) -> None:
    ha = FakeHA()
    summary = asyncio.run(_importer(tmp_path).run(ha))
    assert summary.complete
    assert summary.states == 2 * 5 * 6  # 2 entities, 5 hours, a state every 10 minutes
    assert summary.statistics_rows == 5 * 12 + 5
    history = [f for c, f in ha.asked if c == "history/history_during_period"]
    assert len(history) == 5 * 2  # one request per hour and entity
    starts = sorted({f["start_time"] for f in history})
    assert starts[0] == (START - timedelta(microseconds=1)).isoformat()
    assert all(not f["include_start_time_state"] and f["end_time"] for f in history)
    assert not (tmp_path / "cursor.json").exists()  # a dry run keeps no cursor


def test_filters_choose_entities_and_statistics() -> None:
    ids = ["sensor.a", "sensor.b", "light.c"]
    assert select(ids, (), ()) == sorted(ids)
    assert select(ids, ("light.c",), ("sensor.b*",)) == ["light.c", "sensor.b"]


@pytest.mark.parametrize(
    ("request_fields", "says"),
    [
        ({"entities": ("sensor.zz",)}, "unknown entity sensor.zz"),
        ({"globs": ("switch.*",)}, "match no entity"),
    ],
)
def test_bad_selections_are_refused(tmp_path: Path, request_fields: dict[str, Any],
                                    says: str) -> None:  # fmt: skip
    with pytest.raises(ImportRefused, match=says):
        asyncio.run(_importer(tmp_path, **request_fields).run(FakeHA()))


@pytest.mark.parametrize(
    ("refuse", "says"),
    [
        ({"history/history_during_period": "unknown_command"}, "answered unknown_command"),
        ({"recorder/list_statistic_ids": "unknown_command"}, "--no-statistics"),
        ({"history/history_during_period": "invalid_format"}, "HA refused HA's history for"),
    ],
)
def test_what_ha_refuses_ends_the_import_with_what_to_do(tmp_path: Path, refuse: dict[str, str],
                                                         says: str) -> None:  # fmt: skip
    ha = FakeHA(refuse)
    with pytest.raises(ImportRefused, match=says):
        asyncio.run(_importer(tmp_path).run(ha))
    assert sum(command in refuse for command, _ in ha.asked) == 1  # refused: never asked again


def test_progress_logs_at_intervals_off_a_terminal(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    progress = ImportProgress(io.StringIO(), interval=10, clock=lambda: now[0], terminal=False)
    caplog.set_level(logging.INFO, "listener.importing.progress")
    progress.start("states", 3)
    for _ in range(3):
        now[0] += 6
        progress.advance("states", 100)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "import states: 3 windows to read"
    assert lines[1:] == [
        "import states: 2/3 windows, 200 rows, 17 rows/s, about 6 s left",
        "import states: 3/3 windows, 300 rows, 17 rows/s",
    ]


def test_progress_draws_bars_on_a_terminal() -> None:
    screen = io.StringIO()
    progress = ImportProgress(screen, terminal=True)
    progress.start("states", 2)
    progress.advance("states", 10)
    progress.note("waiting for the workers")
    progress.close()
    assert "states" in screen.getvalue()
    assert "waiting for the workers" in screen.getvalue()
