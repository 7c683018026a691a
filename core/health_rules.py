"""Every health rule: figures in, checks out — no clock, no I/O.

Shared by the listener (/health, its live figures) and beat (`status`, figures from Redis), so
one table of tests covers every rule and every view words a problem the same way. The rules
by area: the listener and its HA subscription (`subscription_checks`), beat's freshness
(`beat_checks`, `redis_unreadable`), the pipeline between the broker and InfluxDB
(`pipeline_checks`). Each check names what is wrong and what to do about it; the codes are
listed in docs/operations.md (a test keeps the two in step).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from core.health_check import Check, Thresholds
from core.listener_figures import ListenerFigures
from core.text_format import format_count, format_duration, format_rate

EXPECTED_EVENTS_BEFORE_ALARM = 3.0
"""A silence is alarming only when HA usually sends at least this many events in that time."""


# --- the listener and its subscription ---------------------------------------------------------


def subscription_checks(
    li: ListenerFigures | None,
    now: float,
    t: Thresholds,
    *,
    usual_rate_per_min: float | None = None,
    reconnects_last_hour: int | None = None,
) -> list[Check]:
    """Is the listener alive, connected, subscribed, and are events arriving as usual?

    `li`: its figures (None when it left none); the rest is beat's memory of the events and
    the reconnects.
    """
    if li is None:
        return [
            Check(
                "listener_down",
                "unhealthy",
                "listener",
                "listener not running: it left no state in Redis — start `ha-ingestor listener` "
                "and check its log",
            )
        ]
    heartbeat_age = max(0.0, now - li.reported_at)
    if li.connection_state == "stopped":
        return [
            Check(
                "listener_down",
                "unhealthy",
                "listener",
                f"listener stopped {format_duration(heartbeat_age)} ago (a clean shutdown) — "
                "start `ha-ingestor listener`",
            )
        ]
    if heartbeat_age > t.listener_stale_s:
        return [
            Check(
                "listener_stale",
                "unhealthy",
                "listener",
                f"listener silent for {format_duration(heartbeat_age)} (it reports every "
                "2 s) — is `ha-ingestor listener` running? Check its log",
            )
        ]
    checks = _connection_checks(li, now, t, usual_rate_per_min, reconnects_last_hour)
    checks.extend(_listener_checks(li))
    return checks


def _connection_checks(
    li: ListenerFigures,
    now: float,
    t: Thresholds,
    usual_rate_per_min: float | None,
    reconnects_last_hour: int | None,
) -> list[Check]:
    """Refused; else not subscribed or short of event types or of events, and reconnecting."""
    if li.connection_state == "auth_invalid":
        return [
            Check(
                "auth_invalid",
                "unhealthy",
                "subscription",
                "Home Assistant rejected the token (auth_invalid): create a new long-lived "
                "access token in your HA profile (Security tab), put it in HA_TOKEN_FILE (or "
                "HA_TOKEN) and send the listener SIGHUP (or restart it): a new token is tried at "
                "once; the refused one at most once an hour, as HA bans addresses after failed "
                "logins",
            )
        ]
    if li.connection_state == "subscribed":
        checks = _subscribed_checks(li, now, t, usual_rate_per_min)
    else:
        checks = [_not_subscribed(li)]
    checks.extend(_reconnect_checks(li, reconnects_last_hour, t))
    return checks


def _not_subscribed(li: ListenerFigures) -> Check:
    detail = f"; last error: {li.last_error}" if li.last_error else ""
    return Check(
        "not_subscribed",
        "unhealthy",
        "subscription",
        f"not subscribed to Home Assistant ({li.connection_state.replace('_', ' ')}, "
        f"{li.connect_attempts} connection attempts, {li.connects_failed} failed){detail} — "
        "check that HA is up and HA_URL points to it",
    )


def _subscribed_checks(
    li: ListenerFigures, now: float, t: Thresholds, usual_rate_per_min: float | None
) -> list[Check]:
    """Subscribed, but to fewer event types than asked, or silent for longer than usual."""
    checks: list[Check] = []
    missing = [e for e in t.event_types if e not in li.subscriptions]
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
    silence = _silence(li, now, t, usual_rate_per_min)
    if silence is not None:
        checks.append(silence)
    return checks


def _reconnect_checks(
    li: ListenerFigures, reconnects_last_hour: int | None, t: Thresholds
) -> list[Check]:
    if reconnects_last_hour is None or reconnects_last_hour < t.reconnects_per_hour:
        return []
    detail = f" (last error: {li.last_error})" if li.last_error else ""
    return [
        Check(
            "reconnects",
            "degraded",
            "subscription",
            f"HA connection dropped {reconnects_last_hour} times in the last hour{detail} — "
            "check HA's log and the network between HA and the listener",
        )
    ]


def _silence(li: ListenerFigures, now: float, t: Thresholds, usual: float | None) -> Check | None:
    """No events for longer than usual while subscribed (HA's event bus or the link is stuck)."""
    last_event_at = li.last_event_at
    gap = now - li.started_at if last_event_at is None else max(0.0, now - last_event_at)
    if gap < t.event_gap_s:
        return None
    if usual is not None and usual * gap / 60.0 < EXPECTED_EVENTS_BEFORE_ALARM:
        return None  # a quiet home: this silence is normal for it
    if last_event_at is None:
        text = f"no events since the listener started {format_duration(gap)} ago while subscribed"
    else:
        text = f"no events for {format_duration(gap)} while subscribed"
    if usual:
        text += f" — HA usually sends {format_rate(usual)}"
    text += "; check HA's log, or restart the listener to resubscribe"
    return Check("no_events", "degraded", "subscription", text)


def _listener_checks(f: ListenerFigures) -> list[Check]:
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
    if f.spool_quarantined:
        checks.append(
            Check(
                "spool_quarantine",
                "degraded",
                "listener",
                f"{format_count(f.spool_quarantined)} spool rows could not be read back and are "
                "kept apart in the spool's `quarantine` table (DATA_DIR/spool/events.sqlite3) — "
                "inspect them with sqlite3, then delete them from that table",
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


# --- beat ---------------------------------------------------------------------------------------


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


def redis_unreadable(error: str) -> Check:
    """The listener could not read beat's figures from Redis (the error text is scrubbed)."""
    return Check(
        "redis_unreadable",
        "degraded",
        "beat",
        f"cannot read beat's figures from Redis ({error}) — check REDIS_URL "
        "(or CELERY_BROKER_URL) and that Redis runs",
    )


# --- the pipeline ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PipelineFigures:
    """The pipeline as the rules see it."""

    queue_depth: int | None = 0
    in_flight: int | None = 0
    oldest_message_age_s: float | None = None
    depth_trend_per_min: float | None = None
    stalled_for_s: float | None = None
    """Seconds since the last progress while events wait; None when nothing waits."""
    write_errors_window: int = 0
    dead_letters_window: int = 0
    dead_letter_reasons: Mapping[str, int] = field(default_factory=dict)
    last_write_error: str | None = None
    broker_error: str | None = None
    dead_letters_stored: int | None = None
    """Letters in the dead-letter store now (None: not read)."""
    outage_letters_stored: int = 0
    """Events in the outage store, waiting for InfluxDB."""
    dropped_window: int = 0
    """Dead letters the user's cap deleted within the window."""
    dropped_total: int = 0
    workers_alive: int | None = None
    """Workers taking the queue now; None when the broker cannot tell."""


def pipeline_checks(p: PipelineFigures, t: Thresholds, *, writes: bool = True) -> list[Check]:
    """Is anything piling up or being refused between the broker and InfluxDB?

    `writes=False` with several destinations: each destination's refusals and dead letters
    are then judged on their own (`destination_checks`), the queue's rules stay here.
    """
    found = (
        _broker_unreadable(p),
        _no_workers(p),
        _stalled(p, t) or _queue_age(p, t),
        _backlog(p, t),
        _write_errors(p, t) if writes else None,
        dead_letters_check(p, t) if writes else None,
    )
    return [check for check in found if check is not None]


def _broker_unreadable(p: PipelineFigures) -> Check | None:
    if p.broker_error is None:
        return None
    return Check(
        "broker_unreadable",
        "degraded",
        "pipeline",
        f"cannot read the queue ({p.broker_error}) — check CELERY_BROKER_URL and that the "
        "broker runs",
    )


def _no_workers(p: PipelineFigures) -> Check | None:
    if p.workers_alive != 0 or p.broker_error is not None:
        return None
    return Check(
        "no_workers",
        "degraded",
        "pipeline",
        "no worker takes the ingest queue: events wait in the broker until one runs — "
        "start `celery -A config.celery_app worker` and read its log",
    )


def _stalled(p: PipelineFigures, t: Thresholds) -> Check | None:
    """Events wait and nothing was written for QUEUE_MAX_AGE: who is holding them up."""
    pending = (p.queue_depth or 0) + (p.in_flight or 0)
    if p.stalled_for_s is None or p.stalled_for_s < t.queue_max_age_s or not pending:
        return None
    if p.write_errors_window:
        hint = "InfluxDB refuses the writes"
    elif not p.in_flight:
        hint = "no worker takes them: start `celery -A config.celery_app worker`"
    else:
        hint = "workers hold them but write nothing: check the worker log and InfluxDB"
    return Check(
        "stalled",
        "unhealthy",
        "pipeline",
        f"nothing written to InfluxDB for {format_duration(p.stalled_for_s)} while "
        f"{format_count(pending)} events wait — {hint}",
    )


def _queue_age(p: PipelineFigures, t: Thresholds) -> Check | None:
    """Writes progress, but too slowly: the oldest event waits longer than QUEUE_MAX_AGE."""
    if p.oldest_message_age_s is None or p.oldest_message_age_s < t.queue_max_age_s:
        return None
    return Check(
        "queue_age",
        "degraded",
        "pipeline",
        f"oldest waiting event is {format_duration(p.oldest_message_age_s)} old — "
        "workers are behind: add workers or check InfluxDB's write latency",
    )


def _backlog(p: PipelineFigures, t: Thresholds) -> Check | None:
    if p.queue_depth is None or p.queue_depth < t.queue_backlog:
        return None
    return Check(
        "backlog",
        "degraded",
        "pipeline",
        f"queue backlog {format_count(p.queue_depth)}{_trend_text(p)}",
    )


def _write_errors(p: PipelineFigures, t: Thresholds) -> Check | None:
    return write_errors_check(
        p, t, "InfluxDB", "the events wait in the broker and are written once InfluxDB accepts them"
    )


def write_errors_check(
    p: PipelineFigures,
    t: Thresholds,
    who: str,
    then: str,
    destination: str | None = None,
) -> Check | None:
    """Refused writes in the window: `who` refused them, `then` says where the events wait
    (the broker with one destination; its backlog, for one among several)."""
    refused = p.write_errors_window
    if not refused:
        return None
    detail = f": {p.last_write_error}" if p.last_write_error else ""
    return Check(
        "write_errors",
        "degraded",
        "pipeline",
        f"{who} refused {format_count(refused)} {'batch' if refused == 1 else 'batches'} in "
        f"{format_duration(t.window_s)}{detail} — {then}",
        destination,
    )


def dead_letters_check(p: PipelineFigures, t: Thresholds) -> Check | None:
    """Events dead-lettered within the window (also each destination's, with several)."""
    if not p.dead_letters_window:
        return None
    reasons = ", ".join(
        f"{reason} {format_count(n)}" for reason, n in sorted(p.dead_letter_reasons.items())
    )
    return Check(
        "dead_letters",
        "degraded",
        "pipeline",
        f"{format_count(p.dead_letters_window)} events dead-lettered in "
        f"{format_duration(t.window_s)}{f' ({reasons})' if reasons else ''} — inspect them with "
        "`ha-ingestor dlq list`",
    )


def _trend_text(p: PipelineFigures) -> str:
    trend = p.depth_trend_per_min
    if trend is None:
        return ""
    if trend > 0:
        return f" and growing (+{format_count(trend)}/min)"
    if trend < 0 and p.queue_depth:
        minutes = p.queue_depth / -trend
        return (
            f" and shrinking ({format_count(trend)}/min, about "
            f"{format_duration(minutes * 60)} to drain)"
        )
    return " and steady"
