"""The backoff's delays: doubling steps up to the cap, each jittered into its upper half."""

from __future__ import annotations

from itertools import islice

from core.backoff import exponential_backoff


def test_the_steps_double_up_to_the_cap() -> None:
    delays = exponential_backoff(initial=0.5, cap=4.0, jitter=lambda upper: upper)
    assert list(islice(delays, 6)) == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_each_delay_lies_in_the_upper_half_of_its_step_never_near_zero() -> None:
    steps = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    for _ in range(200):
        delays = list(islice(exponential_backoff(initial=0.5, cap=4.0), len(steps)))
        for delay, step in zip(delays, steps, strict=True):
            assert step / 2 <= delay <= step
