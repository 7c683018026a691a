"""Event rates from per-minute counter buckets: counts in, figures out (no I/O, no clock).

Buckets map a unix minute (``int(t // 60)``) to what was counted during it. A window ending
now takes the current, still-filling minute in full and the oldest minute it reaches into pro
rata, so a rate is right to within a bucket's share even seconds after a start — and counting
that began less than a window ago is averaged over the time since it began.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

WINDOWS_MIN = (1, 5, 15)
HISTORY_MIN = 60
TOP_ENTITIES = 10

Buckets = Mapping[int, int]
Rates = dict[str, float]


def window_rate(buckets: Buckets, now: float, window_s: float, since: float | None = None) -> float:
    """Per-minute rate over the `window_s` seconds up to `now` (from `since`, if later)."""
    start = now - window_s if since is None else max(now - window_s, since)
    span = now - start
    if span <= 0:
        return 0.0
    total = 0.0
    for minute in range(int(start // 60), int(now // 60) + 1):
        count = buckets.get(minute, 0)
        if not count:
            continue
        # The count is spread evenly over the part of its minute that counting covered.
        covered_from = minute * 60.0 if since is None else max(minute * 60.0, since)
        covered_to = min(minute * 60.0 + 60.0, now)
        if covered_to <= covered_from:  # counted at the very instant `now`
            total += count
            continue
        overlap = covered_to - max(covered_from, start)
        total += count * max(0.0, overlap) / (covered_to - covered_from)
    return total / span * 60.0


def rates(buckets: Buckets, now: float, since: float | None = None) -> Rates:
    """Per-minute rates over the last 1, 5 and 15 minutes: {"1m": …, "5m": …, "15m": …}."""
    return {f"{w}m": round(window_rate(buckets, now, w * 60.0, since), 3) for w in WINDOWS_MIN}


def usual_rate(
    buckets: Buckets, last_event_at: float, since: float | None = None, horizon_s: float = 3600
) -> float | None:
    """The per-minute rate over the hour before the last event: what HA usually sends.

    None when nothing was counted in that time (nothing is known about "usual" then).
    """
    rate = window_rate(buckets, last_event_at, horizon_s, since)
    return round(rate, 3) if rate > 0 else None


def window_count(buckets: Buckets, now: float, window_s: float) -> int:
    """Everything counted in the whole minutes that a window of `window_s` up to now touches."""
    last = int(now // 60)
    first = int((now - window_s) // 60)
    return sum(buckets.get(minute, 0) for minute in range(first, last + 1))


def history(buckets: Buckets, now: float, minutes: int = HISTORY_MIN) -> list[tuple[int, int]]:
    """(minute start, count) for the last `minutes` minutes, oldest first, the current one last."""
    last = int(now // 60)
    return [(m * 60, buckets.get(m, 0)) for m in range(last - minutes + 1, last + 1)]


def by_member(map_buckets: Mapping[int, Mapping[str, int]]) -> dict[str, dict[int, int]]:
    """{minute: {member: n}} → {member: {minute: n}}."""
    out: dict[str, dict[int, int]] = defaultdict(dict)
    for minute, counts in map_buckets.items():
        for member, n in counts.items():
            out[member][minute] = n
    return dict(out)


def ranked_rates(
    map_buckets: Mapping[int, Mapping[str, int]],
    now: float,
    since: float | None = None,
    limit: int | None = None,
) -> list[tuple[str, Rates]]:
    """Rates of each member (domain, entity), busiest over 5 minutes first, then by name."""
    ranked = [
        (member, rates(buckets, now, since)) for member, buckets in by_member(map_buckets).items()
    ]
    ranked.sort(key=lambda item: (-item[1]["5m"], -item[1]["15m"], item[0]))
    return ranked[:limit] if limit is not None else ranked
