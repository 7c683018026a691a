"""Health rules shared by the listener (/health, from live figures) and beat (`status`, Redis).

Pure: figures in, checks out — no clock, no I/O, so one table of tests covers every rule and
both views word a problem the same way. Three statuses:

- ``healthy``: nothing to report;
- ``degraded``: events are safe (spooled, queued, late) or something needs a look soon;
- ``unhealthy``: events are not being recorded, or will not be without a person acting.

Each check names what is wrong and what to do about it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from config.settings import Settings

Severity = Literal["degraded", "unhealthy"]
Area = Literal["subscription", "listener", "pipeline", "beat"]
Status = Literal["healthy", "degraded", "unhealthy"]

STATUSES: tuple[Status, ...] = ("healthy", "degraded", "unhealthy")
EXPECTED_EVENTS_BEFORE_ALARM = 3.0
"""A silence is alarming only when HA usually sends at least this many events in that time."""


@dataclass(frozen=True)
class Check:
    """One problem: a stable code for machines, a sentence for people."""

    code: str
    severity: Severity
    area: Area
    message: str

    def as_dict(self) -> dict[str, str]:
        return {
            "code": self.code,
            "severity": self.severity,
            "area": self.area,
            "message": self.message,
        }


def overall(checks: Iterable[Check]) -> Status:
    """The worst severity among the checks; healthy when there are none."""
    worst = 0
    for check in checks:
        worst = max(worst, STATUSES.index(check.severity))
    return STATUSES[worst]


def ordered(checks: Iterable[Check]) -> list[Check]:
    """Unhealthy first, then in the order the rules produced them."""
    return sorted(checks, key=lambda c: -STATUSES.index(c.severity))


@dataclass(frozen=True)
class Thresholds:
    """When a figure becomes a problem; built from the settings (HEALTH_*, BEAT_INTERVAL)."""

    event_gap_s: float = 600.0
    listener_stale_s: float = 15.0
    reconnects_per_hour: int = 5
    queue_backlog: int = 10_000
    queue_max_age_s: float = 300.0
    window_s: float = 300.0
    beat_interval_s: float = 5.0
    event_types: tuple[str, ...] = ("state_changed",)

    @property
    def beat_stale_s(self) -> float:
        """Beat's figures older than this mean beat is not running."""
        return 3 * self.beat_interval_s + 2.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Thresholds:
        return cls(
            event_gap_s=settings.health_event_gap,
            listener_stale_s=settings.health_listener_stale,
            reconnects_per_hour=settings.health_reconnects_per_hour,
            queue_backlog=settings.health_queue_backlog,
            queue_max_age_s=settings.health_queue_max_age,
            window_s=settings.health_window,
            beat_interval_s=settings.beat_interval,
            event_types=tuple(settings.ha_event_types),
        )


@dataclass(frozen=True)
class SubscriptionFigures:
    """What is known about the listener and its HA subscription."""

    connection_state: str
    heartbeat_age_s: float | None = 0.0
    """Seconds since the listener last reported; None when there is no report at all."""
    attempts: int = 0
    failed: int = 0
    last_error: str = ""
    subscribed_types: tuple[str, ...] = ()
    uptime_s: float = 0.0
    last_event_age_s: float | None = None
    usual_rate_per_min: float | None = None
    reconnects_last_hour: int | None = None
    broker_up: bool = True
    spool_depth: int = 0
    history_available: bool | None = None


def subscription_checks(f: SubscriptionFigures, t: Thresholds) -> list[Check]:
    """Is the listener alive, connected, subscribed, and are events arriving as usual?"""
    if f.heartbeat_age_s is None:
        return [
            Check(
                "listener_down",
                "unhealthy",
                "listener",
                "listener not running: it left no state in Redis — start `ha-ingestor listener` "
                "and check its log",
            )
        ]
    if f.heartbeat_age_s > t.listener_stale_s:
        return [
            Check(
                "listener_stale",
                "unhealthy",
                "listener",
                f"listener silent for {format_duration(f.heartbeat_age_s)} (it reports every "
                "2 s) — is `ha-ingestor listener` running? Check its log",
            )
        ]
    checks = _connection_checks(f, t)
    checks.extend(_listener_checks(f))
    return checks


def _connection_checks(f: SubscriptionFigures, t: Thresholds) -> list[Check]:
    state = f.connection_state
    if state == "auth_invalid":
        return [
            Check(
                "auth_invalid",
                "unhealthy",
                "subscription",
                "Home Assistant rejected the token (auth_invalid): create a new long-lived "
                "access token in your HA profile (Security tab), set HA_TOKEN and restart the "
                "listener",
            )
        ]
    checks: list[Check] = []
    if state != "subscribed":
        detail = f"; last error: {f.last_error}" if f.last_error else ""
        checks.append(
            Check(
                "not_subscribed",
                "unhealthy",
                "subscription",
                f"not subscribed to Home Assistant ({state.replace('_', ' ')}, "
                f"{f.attempts} connection attempts, {f.failed} failed){detail} — check that HA "
                "is up and HA_URL points to it",
            )
        )
    else:
        missing = [e for e in t.event_types if e not in f.subscribed_types]
        if missing:
            checks.append(
                Check(
                    "subscriptions_missing",
                    "degraded",
                    "subscription",
                    f"subscribed to {len(t.event_types) - len(missing)} of {len(t.event_types)} "
                    f"event types; missing: {', '.join(missing)} — check HA_EVENT_TYPES and the "
                    "listener log",
                )
            )
        silence = _silence(f, t)
        if silence is not None:
            checks.append(silence)
    if f.reconnects_last_hour is not None and f.reconnects_last_hour >= t.reconnects_per_hour:
        detail = f" (last error: {f.last_error})" if f.last_error else ""
        checks.append(
            Check(
                "reconnects",
                "degraded",
                "subscription",
                f"HA connection dropped {f.reconnects_last_hour} times in the last hour"
                f"{detail} — check HA's log and the network between HA and the listener",
            )
        )
    return checks


def _silence(f: SubscriptionFigures, t: Thresholds) -> Check | None:
    """No events for longer than usual while subscribed (HA's event bus or the link is stuck)."""
    gap = f.last_event_age_s if f.last_event_age_s is not None else f.uptime_s
    if gap < t.event_gap_s:
        return None
    usual = f.usual_rate_per_min
    if usual is not None and usual * gap / 60.0 < EXPECTED_EVENTS_BEFORE_ALARM:
        return None  # a quiet home: this silence is normal for it
    if f.last_event_age_s is None:
        text = f"no events since the listener started {format_duration(gap)} ago while subscribed"
    else:
        text = f"no events for {format_duration(gap)} while subscribed"
    if usual:
        text += f" — HA usually sends {format_rate(usual)}"
    text += "; check HA's log, or restart the listener to resubscribe"
    return Check("no_events", "degraded", "subscription", text)


def _listener_checks(f: SubscriptionFigures) -> list[Check]:
    checks: list[Check] = []
    if not f.broker_up:
        checks.append(
            Check(
                "broker_down",
                "degraded",
                "listener",
                f"broker unreachable: {format_count(f.spool_depth)} events kept in the local "
                "spool until it is back — check CELERY_BROKER_URL and that the broker runs",
            )
        )
    elif f.spool_depth:
        checks.append(
            Check(
                "spool_draining",
                "degraded",
                "listener",
                f"draining the local spool: {format_count(f.spool_depth)} events left",
            )
        )
    if f.history_available is False:
        checks.append(
            Check(
                "no_recorder",
                "degraded",
                "subscription",
                "HA's recorder is off: events missed while disconnected cannot be filled in — "
                "enable `recorder:` in HA's configuration",
            )
        )
    return checks


def beat_checks(summary_age_s: float | None, t: Thresholds) -> list[Check]:
    """Are beat's figures (rates, queue, writes) fresh?"""
    if summary_age_s is None:
        return [
            Check(
                "beat_missing",
                "degraded",
                "beat",
                "no pipeline figures: beat has not run — start `celery -A config.celery_app beat`",
            )
        ]
    if summary_age_s > t.beat_stale_s:
        return [
            Check(
                "beat_stale",
                "degraded",
                "beat",
                f"pipeline figures are {format_duration(summary_age_s)} old — is beat running "
                "(`celery -A config.celery_app beat`)?",
            )
        ]
    return []


def format_duration(seconds: float) -> str:
    """12 min, 45 s, 2 h 5 min, 3 d 4 h: what a person reads at a glance."""
    s = max(0, round(seconds))
    if s < 120:
        return f"{s} s"
    minutes = s // 60
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def format_count(n: float) -> str:
    """48,000 rather than 48000."""
    return f"{round(n):,}"


def format_rate(per_minute: float) -> str:
    """35/min, 0.5/min: whole numbers once they are large enough to read that way."""
    if per_minute >= 10:
        return f"{round(per_minute):,}/min"
    return f"{per_minute:.1f}/min"


def messages(checks: Sequence[Check]) -> list[str]:
    return [c.message for c in checks]
