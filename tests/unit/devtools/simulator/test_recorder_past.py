"""The simulator's computed past: windows partition it exactly, replies match the counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from devtools.simulator.entities import Home, us_from_datetime
from devtools.simulator.recorder_past import DAY_US, RecorderPast
from listener.history.backfill import plan_windows

START = us_from_datetime(datetime(2026, 11, 20, tzinfo=UTC))


def _past(days: float = 2.0) -> RecorderPast:
    home = Home(20, seed=3, now_us=START + int(days * DAY_US) + 10**6)
    return RecorderPast(home.states, start_us=START, end_us=START + int(days * DAY_US),
                        interval_s=600, seed=3)  # fmt: skip


def test_adjacent_windows_read_every_row_once() -> None:
    past = _past()
    begin = datetime(2026, 11, 19, 23, tzinfo=UTC)
    plan = plan_windows(begin, begin + timedelta(days=3), past.entity_ids, window_s=3600,
                        entities_per_request=7)  # fmt: skip
    seen: list[tuple[str, float]] = []
    for requests in plan:
        for window in requests:
            a = us_from_datetime(window.start) - 1  # as the import asks: from just before
            rows = past.history(a, us_from_datetime(window.end), window.entity_ids)
            seen.extend((entity, row["lu"]) for entity, found in rows.items() for row in found)
    assert len(seen) == len(set(seen)) == past.count_states(0, 2**62) > 1000


def test_statistics_rows_match_their_count_and_shapes() -> None:
    past = _past()
    rows = past.statistics("hour", START, START + 2 * DAY_US)
    assert sum(map(len, rows.values())) == past.count_statistics("hour", START, START + 2 * DAY_US)
    kinds = {tuple(sorted(k for k, v in r[0].items() if v is not None)) for r in rows.values()}
    assert ("end", "max", "mean", "min", "start") in kinds
    assert ("change", "end", "start", "state", "sum") in kinds
    assert past.statistics("5minute", START, START + DAY_US, ["sensor.nope"]) == {}


def test_the_same_seed_gives_the_same_past() -> None:
    assert _past().history(START, START + DAY_US) == _past().history(START, START + DAY_US)
