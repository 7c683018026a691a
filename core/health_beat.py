"""Beat's half of the health report, pure: its readings of Redis and the broker → its figures.

`beat_figures` turns one `Readings` (everything beat read in one go) and beat's memory of its
previous run into the pipeline figures, the event rates and the pipeline rules' verdict
(`BeatFigures`), which go with the listener's state to the one report builder
(core/health_report.py). workers/monitoring/health_job.py does the reading and the storing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from core import rates as r
from core.health_check import Thresholds
from core.health_report import BeatFigures
from core.health_rules import PipelineFigures, pipeline_checks
from core.listener_state import ListenerState
from core.queue_trend import BeatMemory, QueueReading, advance_memory, depth_trend
from core.storage_rules import store_checks

RECONNECTS_WINDOW_S = 3600 - 60
""""Reconnects in the last hour": the minute buckets that an hour up to now touches."""


@dataclass(frozen=True)
class Readings:
    """What beat read in one run (all from Redis and the broker, nothing computed yet)."""

    now: float
    listener: ListenerState | None
    """The listener's state document; None when absent (the listener is not running)."""
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


def beat_figures(
    readings: Readings, memory: BeatMemory | None, t: Thresholds
) -> tuple[BeatFigures, BeatMemory]:
    """The pipeline figures, the rates and the pipeline checks; beat's memory for next time."""
    now = readings.now
    totals = readings.totals
    queue = readings.queue
    written_total = int(totals.get("written", 0))
    new_memory = advance_memory(memory, now, queue, written_total)
    pending = None if queue.depth is None else queue.depth + (queue.in_flight or 0)
    stalled_for = now - new_memory.progress_at if pending else None
    window_counts = {
        name: r.window_count(readings.buckets.get(name, {}), now, t.window_s)
        for name in ("written", "retries", "write_errors", "dead_lettered", "dropped")
    }
    # Failed write attempts: `write_errors` where workers count them, else their retries.
    refused = window_counts["write_errors"] or window_counts["retries"]
    oldest_age = (
        None if queue.oldest_received_at is None else max(0.0, now - queue.oldest_received_at)
    )
    figures = PipelineFigures(
        queue_depth=queue.depth,
        in_flight=queue.in_flight,
        oldest_message_age_s=oldest_age,
        depth_trend_per_min=depth_trend(new_memory.samples, now),
        stalled_for_s=stalled_for,
        write_errors_window=refused,
        dead_letters_window=window_counts["dead_lettered"],
        dead_letter_reasons=readings.dead_letter_reasons,
        last_write_error=readings.last_write_error if refused else None,
        broker_error=queue.error,
        dead_letters_stored=readings.dead_letters_stored,
        outage_letters_stored=readings.outage_letters_stored,
        dropped_window=window_counts["dropped"],
        dropped_total=int(totals.get("dropped", 0)),
        workers_alive=queue.workers_alive,
    )
    pipeline = {
        "queue_depth": queue.depth,
        "in_flight": queue.in_flight,
        "in_flight_by_consumer": (
            None if queue.in_flight_by_consumer is None else dict(queue.in_flight_by_consumer)
        ),
        "given_back": queue.given_back,
        "workers_alive": queue.workers_alive,
        "oldest_message_age_s": _round(oldest_age),
        "written": written_total,
        "retried": int(totals.get("retries", 0)),
        "write_errors": int(totals.get("write_errors", 0)),
        "dead_letters": int(totals.get("dead_lettered", 0)),
        "depth_trend_per_minute": _round(figures.depth_trend_per_min),
        "stalled_for_s": _round(stalled_for),
        "window_s": t.window_s,
        "written_in_window": window_counts["written"],
        "write_errors_in_window": refused,
        "dead_letters_in_window": window_counts["dead_lettered"],
        "dead_letter_reasons_in_window": dict(readings.dead_letter_reasons),
        "last_write_error": figures.last_write_error,
        "broker_error": queue.error,
        "dead_letters_stored": readings.dead_letters_stored,
        "outage_letters_stored": readings.outage_letters_stored,
        "dropped": figures.dropped_total,
        "dropped_in_window": figures.dropped_window,
    }
    listener = readings.listener
    events = readings.buckets.get("events_received", {})
    since = None if listener is None else listener.started_at
    # The listener's counts reach Redis with its reports: rate them as of its last report,
    # unless it stopped reporting (then what it no longer counts is a rate of zero).
    live = listener is not None and now - listener.reported_at <= t.listener_stale_s
    as_of = min(now, listener.reported_at) if listener is not None and live else now
    last_event_at = None if listener is None else listener.last_event_at
    rates = {
        "by_domain": dict(r.ranked_rates(readings.maps.get("events_by_domain", {}), as_of, since)),
        "top_entities": [
            {"entity_id": entity, **rates_of}
            for entity, rates_of in r.ranked_rates(
                readings.maps.get("events_by_entity", {}), as_of, since, r.TOP_ENTITIES
            )
        ],
        "history": [[t0, n] for t0, n in r.history(events, now)],
    }
    result = BeatFigures(
        computed_at=now,
        pipeline=pipeline,
        rates=rates,
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
    return result, new_memory


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
