"""Beat's half of the health report, pure: its readings of Redis and the broker → its figures.

`beat_figures` turns one `Readings` (everything beat read in one go) and the queue's progress
as beat recorded it on its previous run into the pipeline figures, the event rates, each
destination's figures and the rules' verdict (`BeatFigures`), which go with the listener's state
to the one report builder (core/health_report.py). workers/monitoring/health_job.py does the
reading and the storing.

With one destination its counters are the prefix-level ones and the pipeline's rules judge its
writes, as always. With several, the pipeline's totals add every destination's, the queue
progresses when any destination writes or keeps events in its backlog, and each destination's
writes, stores and backlog are judged on their own (core/destination_rules.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from core import rates as r
from core.destination_rules import BacklogFigures, destination_checks
from core.fleet_view import RECONNECTS_WINDOW_S, HomeReadings, fleet_view, listener_clock
from core.health_check import Thresholds
from core.health_report import BeatFigures
from core.health_rules import PipelineFigures, dead_letters_check, pipeline_checks
from core.listener_figures import ListenerFigures
from core.queue_trend import QueueProgress, QueueReading, advance_progress, depth_trend
from core.storage_rules import store_checks


@dataclass(frozen=True)
class StoreReadings:
    """One destination's own counters, stores and backlog, as beat read them under its keys."""

    buckets: Mapping[str, Mapping[int, int]] = field(default_factory=dict)
    """Counter name → {unix minute: count} (written, retries, write_errors, dead_lettered,
    dropped, backlogged)."""
    totals: Mapping[str, int] = field(default_factory=dict)
    dead_letter_reasons: Mapping[str, int] = field(default_factory=dict)
    last_write_error: str | None = None
    dead_letters_stored: int | None = None
    outage_letters_stored: int = 0
    backlog_events: int = 0
    parked: bool = False
    oldest_backlog_at: float | None = None
    """received_at of the oldest event in its backlog; None when it is empty."""


@dataclass(frozen=True)
class Readings:
    """What beat read in one run (all from Redis and the broker, nothing computed yet)."""

    now: float
    listener: ListenerFigures | None
    """The listener's figures (its state document); None when absent (it is not running), and
    with several homes (each home's are in `homes`)."""
    buckets: Mapping[str, Mapping[int, int]] = field(default_factory=dict)
    """Counter name → {unix minute: count}, for the listener's and the workers' counters (the
    listener's: every home's added up)."""
    maps: Mapping[str, Mapping[int, Mapping[str, int]]] = field(default_factory=dict)
    """events_by_domain / events_by_entity → {unix minute: {member: count}} (every home's)."""
    homes: Mapping[str, HomeReadings] = field(default_factory=dict)
    """Every home listed in Redis's `homes` hash, read under its own keys (empty when no
    listener names its home: one listener of before home names, at the prefix level)."""
    totals: Mapping[str, int] = field(default_factory=dict)
    dead_letter_reasons: Mapping[str, int] = field(default_factory=dict)
    """Dead letters per reason within the window."""
    queue: QueueReading = field(default_factory=QueueReading)
    last_write_error: str | None = None
    dead_letters_stored: int | None = None
    outage_letters_stored: int = 0
    destinations: Mapping[str, StoreReadings] = field(default_factory=dict)
    """Every destination's own readings, in the configured order; the one named by
    `shared_store` repeats the prefix-level figures above (its keys are those)."""
    shared_store: str | None = "default"
    """The destination whose counters and stores are the prefix-level ones (None when no
    destination is: those then hold only dead letters no destination could read)."""

    @property
    def several(self) -> bool:
        return len(self.destinations) > 1

    def prefix_store(self) -> StoreReadings:
        """The prefix-level counters and stores, as one destination's readings."""
        return StoreReadings(
            buckets=self.buckets,
            totals=self.totals,
            dead_letter_reasons=self.dead_letter_reasons,
            last_write_error=self.last_write_error,
            dead_letters_stored=self.dead_letters_stored,
            outage_letters_stored=self.outage_letters_stored,
        )


WINDOW_COUNTERS = ("written", "retries", "write_errors", "dead_lettered", "dropped")
"""The workers' counters beat counts within HEALTH_WINDOW."""


def beat_figures(
    readings: Readings, progress: QueueProgress | None, t: Thresholds
) -> tuple[BeatFigures, QueueProgress]:
    """The pipeline figures, the rates and the pipeline checks; the queue's progress for next
    time."""
    now = readings.now
    combined = _combined(readings)
    new_progress = advance_progress(progress, now, readings.queue, _progress_total(readings))
    in_window = {
        name: r.window_count(combined.buckets.get(name, {}), now, t.window_s)
        for name in WINDOW_COUNTERS
    }
    figures = _pipeline_figures(combined, new_progress, in_window)
    destinations = {
        name: _destination(name, own, readings, figures, t)
        for name, own in readings.destinations.items()
    }
    checks = pipeline_checks(figures, t, writes=not readings.several)
    if readings.several:
        for name, (_, store, backlog) in destinations.items():
            checks.extend(destination_checks(name, store, backlog, t))
        if readings.shared_store is None:  # letters no destination could read
            shared = _store_figures(readings.prefix_store(), now, t)
            checks.extend(c for c in (dead_letters_check(shared, t),) if c is not None)
    else:
        checks.extend(store_checks(figures, t))
    fleet = fleet_view(readings.homes, now, t)
    checks.extend(fleet.checks)
    as_of, since = listener_clock(readings.listener, now, t)
    events = readings.buckets.get("events_received", {})
    last_event_at = None if readings.listener is None else readings.listener.last_event_at
    result = BeatFigures(
        computed_at=now,
        pipeline=_pipeline_section(combined, figures, in_window, t),
        rates=_rates_section(readings, as_of, since),
        events_per_minute=r.rates(events, as_of, since),
        usual_per_minute=(
            None if last_event_at is None else r.usual_rate(events, last_event_at, since)
        ),
        written_per_minute=r.rates(combined.buckets.get("written", {}), now),
        reconnects_last_hour=r.window_count(
            readings.buckets.get("reconnects", {}), now, RECONNECTS_WINDOW_S
        ),
        checks=tuple(checks),
        destinations={name: section for name, (section, _, _) in destinations.items()},
        homes=fleet.homes,
        fleet=fleet.fleet if fleet.homes else None,
    )
    return result, new_progress


def _combined(readings: Readings) -> Readings:
    """The readings with every destination's counters added up (the pipeline's totals): the
    prefix-level ones and those of each destination with keys of its own."""
    if not readings.several:
        return readings
    own = [s for n, s in readings.destinations.items() if n != readings.shared_store]
    buckets: dict[str, dict[int, int]] = {n: dict(b) for n, b in readings.buckets.items()}
    totals = dict(readings.totals)
    reasons = dict(readings.dead_letter_reasons)
    stored, outage = readings.dead_letters_stored, readings.outage_letters_stored
    for store in own:
        for name, by_minute in store.buckets.items():
            into = buckets.setdefault(name, {})
            for minute, n in by_minute.items():
                into[minute] = into.get(minute, 0) + n
        for name, n in store.totals.items():
            totals[name] = totals.get(name, 0) + n
        for reason, n in store.dead_letter_reasons.items():
            reasons[reason] = reasons.get(reason, 0) + n
        if stored is not None and store.dead_letters_stored is not None:
            stored += store.dead_letters_stored
        outage += store.outage_letters_stored
    return replace(
        readings,
        buckets=buckets,
        totals=totals,
        dead_letter_reasons=reasons,
        last_write_error=None,
        dead_letters_stored=stored,
        outage_letters_stored=outage,
    )


def _progress_total(readings: Readings) -> int:
    """What moves the queue on: points written, and with several destinations also events
    kept in a backlog (an unavailable destination does not hold the queue)."""
    if not readings.several:
        return _total(readings, "written")
    return sum(
        int(s.totals.get("written", 0)) + int(s.totals.get("backlogged", 0))
        for s in readings.destinations.values()
    )


def _store_figures(s: StoreReadings, now: float, t: Thresholds) -> PipelineFigures:
    """One destination's store figures, as the store rules see them."""

    def window(name: str) -> int:
        return r.window_count(s.buckets.get(name, {}), now, t.window_s)

    refused = window("write_errors") or window("retries")
    return PipelineFigures(
        write_errors_window=refused,
        dead_letters_window=window("dead_lettered"),
        dead_letter_reasons=s.dead_letter_reasons,
        last_write_error=s.last_write_error if refused or s.parked else None,
        dead_letters_stored=s.dead_letters_stored,
        outage_letters_stored=s.outage_letters_stored,
        dropped_window=window("dropped"),
        dropped_total=int(s.totals.get("dropped", 0)),
    )


DESTINATION_FIELDS = (
    "written", "retried", "write_errors", "dead_letters", "dropped", "backlogged",
    "write_rate_per_minute", "window_s", "written_in_window", "write_errors_in_window",
    "dead_letters_in_window", "backlogged_in_window", "last_write_error", "dead_letters_stored",
    "outage_letters_stored", "backlog_events", "parked", "lag_s",
)  # fmt: skip
"""Each destination's figures in the report's `destinations` section (core/health_report.py)."""


def _destination(
    name: str, own: StoreReadings, readings: Readings, queue: PipelineFigures, t: Thresholds
) -> tuple[dict[str, Any], PipelineFigures, BacklogFigures]:
    """One destination's section of the report, its store figures and its backlog's."""
    now = readings.now
    store = _store_figures(own, now, t)
    backlog_lag = None if own.oldest_backlog_at is None else max(0.0, now - own.oldest_backlog_at)
    backlog = BacklogFigures(
        events=own.backlog_events,
        parked=own.parked,
        added_window=r.window_count(own.buckets.get("backlogged", {}), now, t.window_s),
        lag_s=backlog_lag,
    )

    def total(counter: str) -> int:
        return int(own.totals.get(counter, 0))

    section = {
        "written": total("written"),
        "retried": total("retries"),
        "write_errors": total("write_errors"),
        "dead_letters": total("dead_lettered"),
        "dropped": total("dropped"),
        "backlogged": total("backlogged"),
        "write_rate_per_minute": r.rates(own.buckets.get("written", {}), now),
        "window_s": t.window_s,
        "written_in_window": r.window_count(own.buckets.get("written", {}), now, t.window_s),
        "write_errors_in_window": store.write_errors_window,
        "dead_letters_in_window": store.dead_letters_window,
        "backlogged_in_window": backlog.added_window,
        "last_write_error": store.last_write_error,
        "dead_letters_stored": own.dead_letters_stored,
        "outage_letters_stored": own.outage_letters_stored,
        "backlog_events": own.backlog_events,
        "parked": own.parked,
        "lag_s": _round(_lag(backlog_lag, queue)),
    }
    return section, store, backlog


def _lag(backlog_lag: float | None, queue: PipelineFigures) -> float | None:
    """How far behind a destination is: its backlog's oldest event, else the queue's (0 when
    nothing waits, so the series stays continuous; None when the queue cannot be read)."""
    if backlog_lag is not None:
        return backlog_lag
    if queue.oldest_message_age_s is not None:
        return queue.oldest_message_age_s
    pending = (queue.queue_depth or 0) + (queue.in_flight or 0)
    return 0.0 if queue.queue_depth is not None and not pending else None


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
