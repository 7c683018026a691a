"""Beat's view of the fleet: every home's state → one section per home, its checks, the totals.

Pure: what beat read under each home's keys (`HomeReadings`) in, figures and checks out. A home
is listed in Redis's `homes` hash by its listener's every report and stays listed when it stops,
so a home whose listener fell silent is named (`home_silent`), never averaged away.

With one home the report reads as it always did: that home's figures are the report's
listener, connection and subscription figures and its problems are worded as always (no
`home` in its checks). With several, each home's problems are checks of their own, with its
name in the check's `home` field and in its message ("home holiday: not subscribed…"), and the
report's rates are the fleet's (every home's counts added).

Each home's section (HOME_FIELDS): ``status`` (its worst severity), ``code`` and ``reason``
(its worst problem, null when none), ``present`` (its state is in Redis), ``silent`` (no report
within HEALTH_LISTENER_STALE, or stopped), ``connection_state``, ``is_subscribed``,
``last_seen_at`` (unix time of its last report, from the `homes` hash), ``lag_s`` (seconds since
that report: how old the fleet's news of the home is), ``event_rate_per_minute`` ({"1m", "5m",
"15m"}), ``events_per_second`` (over the last minute), ``usual_rate_per_minute``,
``reconnects_last_hour``, ``last_event_age_s``, ``waiting_events`` (events its listener holds in
memory and in its spool, not yet in the broker). The `fleet` totals (FLEET_FIELDS): ``homes``,
``reporting``, ``silent`` (the silent homes' names), ``subscribed``, ``events_per_second``,
``reconnects_last_hour``, ``waiting_events``, ``status`` (the worst home's).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from core import rates as r
from core.health_check import Check, Status, Thresholds, ordered, overall
from core.health_rules import subscription_checks
from core.listener_figures import ListenerFigures
from core.storage_rules import listener_storage_checks
from core.text_format import format_duration

HOME_COUNTERS = ("events_received", "reconnects")
"""The counters a listener keeps under its home's keys (per-minute buckets)."""
HOME_MAPS = ("events_by_domain", "events_by_entity")
RECONNECTS_WINDOW_S = 3600 - 60
""""Reconnects in the last hour": the minute buckets that an hour up to now touches."""
SILENT_CODES = frozenset({"listener_down", "listener_stale"})
"""A home's listener problems that mean it is not reporting: `home_silent` in the fleet."""

HOME_FIELDS = (
    "status", "code", "reason", "present", "silent", "connection_state", "is_subscribed",
    "last_seen_at", "lag_s", "event_rate_per_minute", "events_per_second",
    "usual_rate_per_minute", "reconnects_last_hour", "last_event_age_s", "waiting_events",
)  # fmt: skip
FLEET_FIELDS = (
    "homes", "reporting", "silent", "subscribed", "events_per_second", "reconnects_last_hour",
    "waiting_events", "status",
)  # fmt: skip


@dataclass(frozen=True)
class HomeReadings:
    """What beat read under one home's keys."""

    listener: ListenerFigures | None
    """Its listener's figures; None when its state expired (or was never written)."""
    last_seen_at: float | None = None
    """When its listener last reported, from the `homes` hash (outlives the state's TTL)."""
    buckets: Mapping[str, Mapping[int, int]] = field(default_factory=dict)
    """HOME_COUNTERS → {unix minute: count}."""
    maps: Mapping[str, Mapping[int, Mapping[str, int]]] = field(default_factory=dict)
    """HOME_MAPS → {unix minute: {member: count}}."""


def combined(homes: Mapping[str, HomeReadings]) -> HomeReadings:
    """The fleet as one home: one home's own readings; several homes' counts added up, with no
    listener figures (each home has its own)."""
    if len(homes) == 1:
        return next(iter(homes.values()))
    buckets: dict[str, dict[int, int]] = {}
    maps: dict[str, dict[int, dict[str, int]]] = {}
    for home in homes.values():
        for name, by_minute in home.buckets.items():
            into = buckets.setdefault(name, {})
            for minute, n in by_minute.items():
                into[minute] = into.get(minute, 0) + n
        for name, by_minute_map in home.maps.items():
            into_map = maps.setdefault(name, {})
            for minute, counts in by_minute_map.items():
                members = into_map.setdefault(minute, {})
                for member, n in counts.items():
                    members[member] = members.get(member, 0) + n
    seen = [h.last_seen_at for h in homes.values() if h.last_seen_at is not None]
    return HomeReadings(None, max(seen, default=None), buckets, maps)


def listener_clock(
    listener: ListenerFigures | None, now: float, t: Thresholds
) -> tuple[float, float | None]:
    """As of when to rate a listener's counts, and since when it counts them.

    Its counts reach Redis with its reports: rate them as of its last report, unless it
    stopped reporting (then what it no longer counts is a rate of zero).
    """
    if listener is None:
        return now, None
    live = now - listener.reported_at <= t.listener_stale_s
    return (min(now, listener.reported_at) if live else now), listener.started_at


@dataclass(frozen=True)
class FleetView:
    """Every home's section and checks, and the fleet's totals."""

    homes: dict[str, dict[str, Any]]
    fleet: dict[str, Any]
    checks: tuple[Check, ...]
    """Each home's problems, with its name, when there are several homes (none with one: the
    report's own listener rules speak for it)."""


def fleet_view(homes: Mapping[str, HomeReadings], now: float, t: Thresholds) -> FleetView:
    """The fleet view of `homes` (in name order) as of `now`."""
    several = len(homes) > 1
    sections: dict[str, dict[str, Any]] = {}
    checks: list[Check] = []
    for name in sorted(homes):
        section, own = home_view(name, homes[name], now, t)
        sections[name] = section
        if several:
            checks.extend(own)
    return FleetView(sections, fleet_totals(sections), tuple(checks))


def home_view(
    name: str, home: HomeReadings, now: float, t: Thresholds
) -> tuple[dict[str, Any], list[Check]]:
    """One home's section and its checks, each naming the home."""
    li = home.listener
    events = home.buckets.get("events_received", {})
    as_of, since = listener_clock(li, now, t)
    per_minute = r.rates(events, as_of, since)
    usual = None if li is None or li.last_event_at is None else r.usual_rate(
        events, li.last_event_at, since
    )  # fmt: skip
    reconnects = r.window_count(home.buckets.get("reconnects", {}), now, RECONNECTS_WINDOW_S)
    checks = home_checks(name, home, now, t, usual, reconnects)
    worst = checks[0] if checks else None
    last_seen = home.last_seen_at if li is None else max(li.reported_at, home.last_seen_at or 0)
    last_event = None if li is None or li.last_event_at is None else now - li.last_event_at
    section = {
        "status": overall(checks),
        "code": None if worst is None else worst.code,
        "reason": None if worst is None else worst.message,
        "present": li is not None,
        "silent": any(c.code == "home_silent" for c in checks),
        "connection_state": None if li is None else li.connection_state,
        "is_subscribed": None if li is None else li.connection_state == "subscribed",
        "last_seen_at": last_seen,
        "lag_s": _round(None if last_seen is None else max(0.0, now - last_seen)),
        "event_rate_per_minute": per_minute,
        "events_per_second": round(per_minute["1m"] / 60.0, 3),
        "usual_rate_per_minute": usual,
        "reconnects_last_hour": reconnects,
        "last_event_age_s": _round(None if last_event is None else max(0.0, last_event)),
        "waiting_events": None if li is None else li.memory_queue_depth + li.spool_depth,
    }
    return section, checks


def home_checks(
    name: str,
    home: HomeReadings,
    now: float,
    t: Thresholds,
    usual: float | None,
    reconnects_last_hour: int,
) -> list[Check]:
    """The listener rules on one home's figures, worst first, each naming the home; a silent
    listener (no state, stale, stopped) is `home_silent`."""
    li = home.listener
    checks = subscription_checks(
        li, now, t, usual_rate_per_min=usual, reconnects_last_hour=reconnects_last_hour
    )
    if li is not None and now - li.reported_at <= t.listener_stale_s:
        checks.extend(listener_storage_checks(li, t))
    return ordered(_named(name, c, home, now) for c in checks)


def _named(name: str, check: Check, home: HomeReadings, now: float) -> Check:
    if check.code not in SILENT_CODES:
        return replace(check, message=f"home {name}: {check.message}", home=name)
    li = home.listener
    last = home.last_seen_at if li is None else li.reported_at
    since = "never reported" if last is None else f"last report {format_duration(now - last)} ago"
    stopped = li is not None and li.connection_state == "stopped"
    what = "its listener stopped" if stopped else "its listener is not reporting"
    return Check(
        "home_silent",
        "unhealthy",
        "listener",
        f"home {name} silent: {what} ({since}), so its events are not recorded — start "
        f"`ha-ingestor listener` for it (HA_INSTANCE={name}) and check its log",
        home=name,
    )


def fleet_totals(sections: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The fleet's totals from every home's section."""
    statuses: list[Status] = [s["status"] for s in sections.values()]
    worst: Status = max(statuses, key=("healthy", "degraded", "unhealthy").index, default="healthy")
    return {
        "homes": len(sections),
        "reporting": sum(1 for s in sections.values() if not s["silent"]),
        "silent": [name for name, s in sections.items() if s["silent"]],
        "subscribed": sum(1 for s in sections.values() if s["is_subscribed"]),
        "events_per_second": round(sum(s["events_per_second"] for s in sections.values()), 3),
        "reconnects_last_hour": sum(s["reconnects_last_hour"] for s in sections.values()),
        "waiting_events": sum(s["waiting_events"] or 0 for s in sections.values()),
        "status": worst,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
