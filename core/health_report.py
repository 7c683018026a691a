"""Beat's health computation, pure: Redis readings in, rates + status + reasons out.

`compute_report` turns one `Readings` (everything beat read from Redis and the broker in one
go) and beat's memory of its previous run into the summary stored under the `health` key and
printed by `ha-ingestor status`. The subscription rules are shared with the listener
(core.health_rules); the pipeline rules live here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core import rates as r
from core.health_rules import (
    Check,
    SubscriptionFigures,
    Thresholds,
    format_count,
    format_duration,
    ordered,
    overall,
    subscription_checks,
)

TREND_WINDOW_S = 60.0
"""Queue growth is measured over the last minute of samples."""
SAMPLES_KEPT_S = 180.0


# --- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueReading:
    """The broker's view of the ingest queue; None where the broker cannot tell."""

    depth: int | None = None
    in_flight: int | None = None
    oldest_received_at: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class Readings:
    """What beat read in one run (all from Redis and the broker, nothing computed yet)."""

    now: float
    listener: Mapping[str, Any] | None
    """The listener's state hash, decoded (`parse_listener_state`); None when absent."""
    buckets: Mapping[str, Mapping[int, int]] = field(default_factory=dict)
    """Counter name → {unix minute: count}, for the listener's and the workers' counters."""
    maps: Mapping[str, Mapping[int, Mapping[str, int]]] = field(default_factory=dict)
    """events_by_domain / events_by_entity → {unix minute: {member: count}}."""
    totals: Mapping[str, int] = field(default_factory=dict)
    dead_letter_reasons: Mapping[str, int] = field(default_factory=dict)
    """Dead letters per reason within the window."""
    queue: QueueReading = field(default_factory=QueueReading)
    last_write_error: str | None = None


@dataclass(frozen=True)
class BeatMemory:
    """What beat remembers between runs, to see trends (JSON under the beat:state key)."""

    progress_at: float
    written: int
    pending: int
    samples: tuple[tuple[float, int], ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "progress_at": self.progress_at,
            "written": self.written,
            "pending": self.pending,
            "samples": [list(s) for s in self.samples],
        }

    @classmethod
    def from_json(cls, data: Any) -> BeatMemory | None:
        try:
            return cls(
                progress_at=float(data["progress_at"]),
                written=int(data["written"]),
                pending=int(data["pending"]),
                samples=tuple((float(t), int(d)) for t, d in data["samples"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


# --- parsing (pure) ---------------------------------------------------------------------------


def parse_listener_state(raw: Mapping[Any, Any]) -> dict[str, Any] | None:
    """The listener's hash (strings, dicts as JSON) back into values; None when empty."""
    if not raw:
        return None
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.decode() if isinstance(key, bytes) else key
        text = value.decode() if isinstance(value, bytes) else value
        try:
            out[name] = json.loads(text)
        except ValueError:
            out[name] = text  # a plain string such as the connection state
    return out


# --- trends -----------------------------------------------------------------------------------


def advance_memory(
    previous: BeatMemory | None, now: float, queue: QueueReading, written: int
) -> BeatMemory:
    """Beat's memory after this run: progress is a write, a shrinking or an empty queue."""
    if queue.depth is None:
        if previous is None:
            return BeatMemory(progress_at=now, written=written, pending=0)
        return BeatMemory(previous.progress_at, written, previous.pending, previous.samples)
    pending = queue.depth + (queue.in_flight or 0)
    progressed = (
        previous is None
        or written != previous.written
        or pending == 0
        or pending < previous.pending
    )
    samples = (
        [] if previous is None else [s for s in previous.samples if now - s[0] <= SAMPLES_KEPT_S]
    )
    samples.append((now, queue.depth))
    return BeatMemory(
        progress_at=now if progressed or previous is None else previous.progress_at,
        written=written,
        pending=pending,
        samples=tuple(samples),
    )


def depth_trend(samples: tuple[tuple[float, int], ...], now: float) -> float | None:
    """Change of the queue depth per minute over the last minute of samples."""
    recent = [s for s in samples if now - s[0] <= TREND_WINDOW_S]
    if len(recent) < 2 or recent[-1][0] - recent[0][0] < 1.0:
        return None
    (t0, d0), (t1, d1) = recent[0], recent[-1]
    return (d1 - d0) / (t1 - t0) * 60.0


# --- pipeline rules ---------------------------------------------------------------------------


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


def pipeline_checks(p: PipelineFigures, t: Thresholds) -> list[Check]:
    """Is anything piling up or being refused between the broker and InfluxDB?"""
    checks: list[Check] = []
    window = format_duration(t.window_s)
    if p.broker_error is not None:
        checks.append(
            Check(
                "broker_unreadable",
                "degraded",
                "pipeline",
                f"cannot read the queue ({p.broker_error}) — check CELERY_BROKER_URL and that "
                "the broker runs",
            )
        )
    pending = (p.queue_depth or 0) + (p.in_flight or 0)
    stalled = p.stalled_for_s is not None and p.stalled_for_s >= t.queue_max_age_s
    if stalled and pending:
        assert p.stalled_for_s is not None
        if p.write_errors_window:
            hint = "InfluxDB refuses the writes"
        elif not p.in_flight:
            hint = "no worker takes them: start `celery -A config.celery_app worker`"
        else:
            hint = "workers hold them but write nothing: check the worker log and InfluxDB"
        checks.append(
            Check(
                "stalled",
                "unhealthy",
                "pipeline",
                f"nothing written to InfluxDB for {format_duration(p.stalled_for_s)} while "
                f"{format_count(pending)} events wait — {hint}",
            )
        )
    elif p.oldest_message_age_s is not None and p.oldest_message_age_s >= t.queue_max_age_s:
        checks.append(
            Check(
                "queue_age",
                "degraded",
                "pipeline",
                f"oldest waiting event is {format_duration(p.oldest_message_age_s)} old — "
                "workers are behind: add workers or check InfluxDB's write latency",
            )
        )
    if p.queue_depth is not None and p.queue_depth >= t.queue_backlog:
        checks.append(
            Check(
                "backlog",
                "degraded",
                "pipeline",
                f"queue backlog {format_count(p.queue_depth)}{_trend_text(p)}",
            )
        )
    if p.write_errors_window:
        detail = f": {p.last_write_error}" if p.last_write_error else ""
        checks.append(
            Check(
                "write_errors",
                "degraded",
                "pipeline",
                f"InfluxDB refused {format_count(p.write_errors_window)} "
                f"{'batch' if p.write_errors_window == 1 else 'batches'} in {window}{detail} — "
                "the events wait in the broker and are written once InfluxDB accepts them",
            )
        )
    if p.dead_letters_window:
        reasons = ", ".join(
            f"{reason} {format_count(n)}" for reason, n in sorted(p.dead_letter_reasons.items())
        )
        checks.append(
            Check(
                "dead_letters",
                "degraded",
                "pipeline",
                f"{format_count(p.dead_letters_window)} events dead-lettered in {window}"
                f"{f' ({reasons})' if reasons else ''} — inspect them with `ha-ingestor dlq list`",
            )
        )
    return checks


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


# --- the report -------------------------------------------------------------------------------


def subscription_figures(
    listener: Mapping[str, Any] | None, readings: Readings, t: Thresholds
) -> SubscriptionFigures:
    """The subscription rules' figures from the listener's reported state."""
    now = readings.now
    if listener is None:
        return SubscriptionFigures(connection_state="unknown", heartbeat_age_s=None)
    reported_at = _float(listener.get("reported_at"))
    last_event_at = _float(listener.get("last_event_at"))
    uptime = _float(listener.get("uptime_s")) or 0.0
    since = reported_at - uptime if reported_at is not None else None
    events = readings.buckets.get("events_received", {})
    subscriptions = listener.get("subscriptions")
    return SubscriptionFigures(
        connection_state=str(listener.get("connection_state", "unknown")),
        heartbeat_age_s=None if reported_at is None else max(0.0, now - reported_at),
        attempts=_int(listener.get("connect_attempts")),
        failed=_int(listener.get("connects_failed")),
        last_error=str(listener.get("last_error") or ""),
        subscribed_types=tuple(subscriptions) if isinstance(subscriptions, dict) else (),
        uptime_s=uptime + (now - reported_at if reported_at is not None else 0.0),
        last_event_age_s=None if last_event_at is None else max(0.0, now - last_event_at),
        usual_rate_per_min=(
            None if last_event_at is None else r.usual_rate(events, last_event_at, since)
        ),
        reconnects_last_hour=r.window_count(readings.buckets.get("reconnects", {}), now, 3600 - 60),
        broker_up=listener.get("broker_up") not in (False, "False"),
        spool_depth=_int(listener.get("spool_depth")),
        history_available=_optional_bool(listener.get("history_available")),
    )


def compute_report(
    readings: Readings, memory: BeatMemory | None, t: Thresholds
) -> tuple[dict[str, Any], BeatMemory]:
    """The health summary (JSON-ready) and beat's memory for the next run."""
    now = readings.now
    listener = readings.listener
    totals = readings.totals
    written_total = int(totals.get("written", 0))
    new_memory = advance_memory(memory, now, readings.queue, written_total)
    queue = readings.queue
    pending = None if queue.depth is None else queue.depth + (queue.in_flight or 0)
    stalled_for = now - new_memory.progress_at if pending else None
    window_counts = {
        name: r.window_count(readings.buckets.get(name, {}), now, t.window_s)
        for name in ("written", "retries", "write_errors", "dead_lettered")
    }
    # Failed write attempts: `write_errors` where workers count them, else their retries.
    refused = window_counts["write_errors"] or window_counts["retries"]
    pipeline = PipelineFigures(
        queue_depth=queue.depth,
        in_flight=queue.in_flight,
        oldest_message_age_s=(
            None if queue.oldest_received_at is None else max(0.0, now - queue.oldest_received_at)
        ),
        depth_trend_per_min=depth_trend(new_memory.samples, now),
        stalled_for_s=stalled_for,
        write_errors_window=refused,
        dead_letters_window=window_counts["dead_lettered"],
        dead_letter_reasons=readings.dead_letter_reasons,
        last_write_error=readings.last_write_error if refused else None,
        broker_error=queue.error,
    )
    sub = subscription_figures(listener, readings, t)
    checks = ordered(subscription_checks(sub, t) + pipeline_checks(pipeline, t))
    since = None if sub.heartbeat_age_s is None else now - sub.uptime_s
    # The listener's counts reach Redis with its reports: rate them as of its last report,
    # unless it stopped reporting (then what it no longer counts is a rate of zero).
    live = sub.heartbeat_age_s is not None and sub.heartbeat_age_s <= t.listener_stale_s
    as_of = now - (sub.heartbeat_age_s or 0.0) if live else now
    events = readings.buckets.get("events_received", {})
    report: dict[str, Any] = {
        "computed_at": now,
        "status": overall(checks),
        "reasons": [c.message for c in checks],
        "checks": [c.as_dict() for c in checks],
        "listener": _listener_section(listener, sub, now),
        "rates": {
            "events_per_minute": r.rates(events, as_of, since),
            "usual_per_minute": sub.usual_rate_per_min,
            "by_domain": dict(
                r.ranked_rates(readings.maps.get("events_by_domain", {}), as_of, since)
            ),
            "top_entities": [
                {"entity_id": entity, **figures}
                for entity, figures in r.ranked_rates(
                    readings.maps.get("events_by_entity", {}), as_of, since, r.TOP_ENTITIES
                )
            ],
            "history": [[t0, n] for t0, n in r.history(events, now)],
            "written_per_minute": r.rates(readings.buckets.get("written", {}), now),
        },
        "pipeline": {
            "queue_depth": queue.depth,
            "in_flight": queue.in_flight,
            "oldest_message_age_s": _round(pipeline.oldest_message_age_s),
            "depth_trend_per_minute": _round(pipeline.depth_trend_per_min),
            "stalled_for_s": _round(stalled_for),
            "written": written_total,
            "retried": int(totals.get("retries", 0)),
            "write_errors": int(totals.get("write_errors", 0)),
            "dead_letters": int(totals.get("dead_lettered", 0)),
            "window_s": t.window_s,
            "written_in_window": window_counts["written"],
            "write_errors_in_window": refused,
            "dead_letters_in_window": window_counts["dead_lettered"],
            "dead_letter_reasons_in_window": dict(readings.dead_letter_reasons),
            "last_write_error": pipeline.last_write_error,
            "broker_error": queue.error,
        },
    }
    return report, new_memory


def _listener_section(
    listener: Mapping[str, Any] | None, sub: SubscriptionFigures, now: float
) -> dict[str, Any]:
    if listener is None:
        return {"present": False}
    subscriptions = listener.get("subscriptions")
    return {
        "present": True,
        "heartbeat_age_s": _round(sub.heartbeat_age_s),
        "uptime_s": _round(sub.uptime_s),
        "connection_state": sub.connection_state,
        "ha_version": str(listener.get("ha_version") or ""),
        "attempts": sub.attempts,
        "successful": _int(listener.get("connects_ok")),
        "failed": sub.failed,
        "reconnects": _int(listener.get("reconnects")),
        "reconnects_last_hour": sub.reconnects_last_hour,
        "last_error": sub.last_error,
        "is_subscribed": sub.connection_state == "subscribed",
        "active_subscriptions": len(subscriptions) if isinstance(subscriptions, dict) else 0,
        "total_events_received": _int(listener.get("events_received")),
        "events_by_type": listener.get("events_by_type") or {},
        "last_event_time": _float(listener.get("last_event_at")),
        "last_event_age_s": _round(sub.last_event_age_s),
        "spool_depth": sub.spool_depth,
        "broker_up": sub.broker_up,
        "memory_queue_depth": _int(listener.get("memory_queue_depth")),
    }


def _float(value: Any) -> float | None:
    try:
        return None if value is None or value == "None" else float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int:
    number = _float(value)
    return 0 if number is None else int(number)


def _optional_bool(value: Any) -> bool | None:
    if value in (True, "True", "true"):
        return True
    if value in (False, "False", "false"):
        return False
    return None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
