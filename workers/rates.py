"""Event rates from per-minute counter buckets: counts in, figures out (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping

WINDOWS_MIN = (1, 5, 15)


def per_minute_rates(buckets: Mapping[int, int], now_minute: int) -> dict[str, float]:
    """Average per-minute rate over the last 1, 5 and 15 complete minutes.

    `buckets` maps a unix minute to its count; the current minute is still filling, so it is
    left out.
    """
    rates = {}
    for window in WINDOWS_MIN:
        minutes = range(now_minute - window, now_minute)
        rates[f"{window}m"] = sum(buckets.get(m, 0) for m in minutes) / window
    return rates
