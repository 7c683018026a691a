"""The backfill cursor remembers how far a gap got and how small its windows must be."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from listener.history.gap_filler import BackfillCursor

START = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
END = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)


def test_no_cursor_means_full_windows(tmp_path: Path) -> None:
    cursor = BackfillCursor(tmp_path / "cursor.json")
    assert cursor.load() is None
    assert cursor.next_shrink() == 0


def test_an_attempt_that_finished_no_window_halves_the_next(tmp_path: Path) -> None:
    cursor = BackfillCursor(tmp_path / "cursor.json")
    cursor.save(START, END, shrink=0, fresh=True)  # started, then the connection died
    assert cursor.next_shrink() == 1
    cursor.save(START, END, shrink=1, fresh=True)  # died again on its first window
    assert cursor.next_shrink() == 2
    assert cursor.load() == (START, END)


def test_progress_keeps_the_learned_size(tmp_path: Path) -> None:
    cursor = BackfillCursor(tmp_path / "cursor.json")
    cursor.save(END, END, shrink=2, fresh=False)  # a window finished at that size
    assert cursor.next_shrink() == 2


def test_a_cursor_of_the_previous_version_reads_as_unshrunk(tmp_path: Path) -> None:
    path = tmp_path / "cursor.json"
    path.write_text(
        f'{{"next_window_start": "{START.isoformat()}", "gap_end": "{END.isoformat()}"}}'
    )
    cursor = BackfillCursor(path)
    assert cursor.load() == (START, END)
    assert cursor.next_shrink() == 0
    path.write_text('{"shrink": "many", "fresh": 1}')
    assert cursor.next_shrink() == 0, "garbled values are ignored"
