"""Beat's half of the health report, pure: its readings of Redis and the broker → its figures.

`beat_figures` turns one `Readings` (everything beat read in one go) and the queue's progress
as beat recorded it on its previous run into the pipeline figures, the event rates and the
pipeline rules' verdict (`BeatFigures`), which go with the listener's state to the one report
builder (core/health_report.py). workers/monitoring/health_job.py does the reading and the storing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core import rates as r
from core.health_check import Thresholds
from core.health_report import BeatFigures
from core.health_rules import PipelineFigures, pipeline_checks
from core.listener_figures import ListenerFigures
from core.queue_trend import QueueProgress, QueueReading, advance_progress, depth_trend
from core.storage_rules import store_checks

RECONNECTS_WINDOW_S = 3600 - 60
""""Reconnects in the last hour": the minute buckets that an hour up to now touches."""


@dataclass(frozen=True)
class Readings:
    """What beat read in one run (all from Redis and the broker, nothing computed yet)."""

    now: float
    listener: ListenerFigures | None
    """The listener's figures (its state document); None when absent (it is not running)."""
    buckets: Mapping[str, Mapping[int, int]] = field(default_factory=dict)
    """Counter name → {unix minute: count}, for the listener's and the workers' counters."""
    maps: Mapping[str, Mapping[int, Mapping[str, int]]] = field(default_factory=dict)
    """events_by_domain / events_by_entity → {unix minute: {member: count}}."""
    totals: Mapping[str, int] = field(default_factory=dict)
    dead_letter_reasons: Mapping[str, int] = field(default_factory=dict)
    """Dead letters per reason within the window."""
    queue: QueueReading = field(default_factory=QueueReading)
    last_write_error: str | None = None
    dead_letters_stored: int | None = None
    outage_letters_stored: int = 0


WINDOW_COUNTERS = ("written", "retries", "write_errors", "dead_lettered", "dropped")
"""The workers' counters beat counts within HEALTH_WINDOW."""


def beat_figures(
    readings: Readings, progress: QueueProgress | None, t: Thresholds
) -> tuple[BeatFigures, QueueProgress]:
    """The pipeline figures, the rates and the pipeline checks; the queue's progress for next
    time."""
    now = readings.now
    new_progress = advance_progress(progress, now, readings.queue, _total(readings, "written"))
    in_window = {
        name: r.window_count(readings.buckets.get(name, {}), now, t.window_s)
        for name in WINDOW_COUNTERS
    }
    figures = _pipeline_figures(readings, new_progress, in_window)
    as_of, since = _listener_clock(readings, t)
    events = readings.buckets.get("events_received", {})
    last_event_at = None if readings.listener is None else readings.listener.last_event_at
    result = BeatFigures(
        computed_at=now,
        pipeline=_pipeline_section(readings, figures, in_window, t),
        rates=_rates_section(readings, as_of, since),
        events_per_minute=r.rates(events, as_of, since),
        usual_per_minute=(
            None if last_event_at is None else r.usual_rate(events, last_event_at, since)
        ),
        written_per_minute=r.rates(readings.buckets.get("written", {}), now),
        reconnects_last_hour=r.window_count(
            readings.buckets.get("reconnects", {}), now, RECONNECTS_WINDOW_S
        ),
        checks=(*pipeline_checks(figures, t), *store_checks(figures, t)),
    )
    return result, new_progress


def _total(readings: Readings, name: str) -> int:
    return int(readings.totals.get(name, 0))


def _pipeline_figures(
    readings: Readings, progress: QueueProgress, in_window: Mapping[str, int]
) -> PipelineFigures:
    """The pipeline as the rules see it, from the readings and the queue's recorded progress."""
    now, queue = readings.now, readings.queue
    pending = None if queue.depth is None else queue.depth + (queue.in_flight or 0)
    # Failed write attempts: `write_errors` where workers count them, else their retries.
    refused = in_window["write_errors"] or in_window["retries"]
    oldest = queue.oldest_received_at
    return PipelineFigures(
        queue_depth=queue.depth,
        in_flight=queue.in_flight,
        oldest_message_age_s=None if oldest is None else max(0.0, now - oldest),
        depth_trend_per_min=depth_trend(progress.samples, now),
        stalled_for_s=now - progress.progress_at if pending else None,
        write_errors_window=refused,
        dead_letters_window=in_window["dead_lettered"],
        dead_letter_reasons=readings.dead_letter_reasons,
        last_write_error=readings.last_write_error if refused else None,
        broker_error=queue.error,
        dead_letters_stored=readings.dead_letters_stored,
        outage_letters_stored=readings.outage_letters_stored,
        dropped_window=in_window["dropped"],
        dropped_total=_total(readings, "dropped"),
        workers_alive=queue.workers_alive,
    )


def _pipeline_section(
    readings: Readings, p: PipelineFigures, in_window: Mapping[str, int], t: Thresholds
) -> dict[str, Any]:
    """The report's `pipeline` figures (PIPELINE_FIELDS), JSON-ready."""
    queue = readings.queue
    by_consumer = queue.in_flight_by_consumer
    return {
        "queue_depth": queue.depth,
        "in_flight": queue.in_flight,
        "in_flight_by_consumer": None if by_consumer is None else dict(by_consumer),
        "given_back": queue.given_back,
        "workers_alive": queue.workers_alive,
        "oldest_message_age_s": _round(p.oldest_message_age_s),
        "written": _total(readings, "written"),
        "retried": _total(readings, "retries"),
        "write_errors": _total(readings, "write_errors"),
        "dead_letters": _total(readings, "dead_lettered"),
        "type_shadowed": _total(readings, "type_shadowed"),
        "text_left_out": _total(readings, "text_left_out"),
        "depth_trend_per_minute": _round(p.depth_trend_per_min),
        "stalled_for_s": _round(p.stalled_for_s),
        "window_s": t.window_s,
        "written_in_window": in_window["written"],
        "write_errors_in_window": p.write_errors_window,
        "dead_letters_in_window": p.dead_letters_window,
        "dead_letter_reasons_in_window": dict(p.dead_letter_reasons),
        "last_write_error": p.last_write_error,
        "broker_error": p.broker_error,
        "dead_letters_stored": p.dead_letters_stored,
        "outage_letters_stored": p.outage_letters_stored,
        "dropped": p.dropped_total,
        "dropped_in_window": p.dropped_window,
    }


def _listener_clock(readings: Readings, t: Thresholds) -> tuple[float, float | None]:
    """As of when to rate the listener's counts, and since when it counts them.

    Its counts reach Redis with its reports: rate them as of its last report, unless it
    stopped reporting (then what it no longer counts is a rate of zero).
    """
    listener, now = readings.listener, readings.now
    if listener is None:
        return now, None
    live = now - listener.reported_at <= t.listener_stale_s
    return (min(now, listener.reported_at) if live else now), listener.started_at


def _rates_section(readings: Readings, as_of: float, since: float | None) -> dict[str, Any]:
    """The report's `rates`: by domain, the busiest entities, and the last hour minute by minute."""
    by_entity = r.ranked_rates(
        readings.maps.get("events_by_entity", {}), as_of, since, r.TOP_ENTITIES
    )
    events = readings.buckets.get("events_received", {})
    return {
        "by_domain": dict(r.ranked_rates(readings.maps.get("events_by_domain", {}), as_of, since)),
        "top_entities": [{"entity_id": entity, **rates_of} for entity, rates_of in by_entity],
        "history": [[t0, n] for t0, n in r.history(events, readings.now)],
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
