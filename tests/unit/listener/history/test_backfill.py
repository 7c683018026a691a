"""The paged backfill's plan: bounded windows by time, split by entities, covering the gap."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from listener.history.backfill import history_request, plan_windows

T0 = datetime(2024, 3, 1, 22, 0, tzinfo=UTC)


def test_a_night_becomes_bounded_windows_that_cover_it_without_holes() -> None:
    end = T0 + timedelta(hours=8, minutes=7)
    ids = [f"sensor.s{i}" for i in range(450)]
    plan = plan_windows(T0, end, ids, window_s=900, entities_per_request=200)
    assert len(plan) == 33  # 32 full quarters and the 7 minutes left
    assert [len(requests) for requests in plan] == [3] * 33  # 200 + 200 + 50 entities
    assert plan[0][0].start == T0
    assert plan[-1][0].end == end
    for before, after in itertools.pairwise(plan):
        assert before[0].end == after[0].start
    assert sorted(e for w in plan[0] for e in w.entity_ids) == sorted(ids)


def test_an_empty_gap_or_home_asks_nothing() -> None:
    assert plan_windows(T0, T0, ["a.b"], window_s=60, entities_per_request=10) == []
    assert plan_windows(T0, T0 + timedelta(hours=1), [], window_s=60, entities_per_request=1) == []
    with pytest.raises(ValueError, match="window_s"):
        plan_windows(T0, T0, [], window_s=0, entities_per_request=1)


def test_every_request_has_an_end_time() -> None:
    request = history_request(T0, ("a.b",), T0 + timedelta(minutes=15))
    assert request["start_time"] == "2024-03-01T22:00:00+00:00"
    assert request["end_time"] == "2024-03-01T22:15:00+00:00"
    assert request["entity_ids"] == ["a.b"]
