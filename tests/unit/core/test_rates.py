"""Rates from per-minute buckets (core.rates): exact figures for hand-made buckets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.rates import (
    by_member,
    history,
    ranked_rates,
    rates,
    usual_rate,
    window_count,
    window_rate,
)

M = 30_000_000  # a unix minute
T0 = M * 60.0  # its first second


def test_a_steady_rate_reads_the_same_over_every_window() -> None:
    buckets = {m: 60 for m in range(M - 20, M)}
    assert rates(buckets, T0) == {"1m": 60.0, "5m": 60.0, "15m": 60.0}


def test_the_current_minute_counts_in_full_and_the_oldest_pro_rata() -> None:
    # 30 s into minute M: the 1-minute window is the last 30 s of M-1 and the first 30 s of M.
    buckets = {M - 1: 60, M: 40}
    assert window_rate(buckets, T0 + 30, 60) == pytest.approx(30 + 40)
    # The 5-minute window reaches 30 s into M-5 (empty): (60 + 40) / 5.
    assert window_rate(buckets, T0 + 30, 300) == pytest.approx(20.0)


def test_counting_that_began_recently_is_averaged_over_its_own_span() -> None:
    # Started 10 s ago, 20 events since: 120/min, not 20/min.
    buckets = {M: 20}
    assert window_rate(buckets, T0 + 10, 60, since=T0) == pytest.approx(120.0)
    assert rates(buckets, T0 + 10, since=T0) == {"1m": 120.0, "5m": 120.0, "15m": 120.0}
    # The same counts without knowing when counting began: spread over the window.
    assert window_rate(buckets, T0 + 10, 60) == pytest.approx(20.0)


def test_counting_started_mid_minute() -> None:
    # Started at T0 + 30, 30 events by T0 + 60 exactly: 60/min.
    assert window_rate({M: 30}, T0 + 60, 60, since=T0 + 30) == pytest.approx(60.0)


def test_nothing_counted_is_zero_and_an_empty_span_is_zero() -> None:
    assert rates({}, T0) == {"1m": 0.0, "5m": 0.0, "15m": 0.0}
    assert window_rate({M: 5}, T0, 60, since=T0) == 0.0


def test_usual_rate_is_the_hour_before_the_last_event() -> None:
    buckets = {m: 35 for m in range(M - 72, M - 12)}
    assert usual_rate(buckets, T0 - 12 * 60) == pytest.approx(35.0)
    assert usual_rate({}, T0) is None


def test_window_count_takes_every_minute_the_window_touches() -> None:
    buckets = {M - 6: 100, M - 5: 1, M - 1: 2, M: 3}
    assert window_count(buckets, T0 + 30, 300) == 6  # M-5 .. M
    assert window_count(buckets, T0 + 30, 60) == 5  # M-1 .. M
    assert window_count(buckets, T0, 60) == 5


def test_history_has_one_entry_per_minute_ending_with_the_current_one() -> None:
    points = history({M: 4, M - 59: 1, M - 60: 99}, T0 + 5)
    assert len(points) == 60
    assert points[0] == ((M - 59) * 60, 1)
    assert points[-1] == (M * 60, 4)


def test_members_are_ranked_by_their_5_minute_rate_then_by_name() -> None:
    maps = {
        M - 1: {"sensor": 50, "light": 5, "switch": 5},
        M - 10: {"light": 500},
    }
    ranked = ranked_rates(maps, T0)
    assert [name for name, _ in ranked] == ["sensor", "light", "switch"]
    assert ranked[0][1]["1m"] == 50.0
    assert ranked[1][1]["15m"] == pytest.approx(505 / 15, abs=0.001)
    assert [name for name, _ in ranked_rates(maps, T0, limit=1)] == ["sensor"]
    assert by_member(maps)["light"] == {M - 1: 5, M - 10: 500}


@given(
    st.dictionaries(st.integers(M - 20, M), st.integers(0, 10_000), max_size=21),
    st.floats(0, 59.99),
    st.sampled_from([60.0, 300.0, 900.0]),
)
def test_a_window_never_counts_more_than_its_minutes_hold(
    buckets: dict[int, int], offset: float, window: float
) -> None:
    now = T0 + offset
    rate = window_rate(buckets, now, window)
    assert rate >= 0
    assert rate * window / 60 <= window_count(buckets, now, window) + 1e-6
