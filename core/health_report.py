"""The health report: one builder, one shape, for /health, the status page, `status` and beat.

Pure: figures in, a JSON-ready dict out. The listener feeds it a snapshot of its live
`ListenerFigures` and the `BeatFigures` read back from the report beat stored in Redis; beat
and `ha-ingestor status` feed it the `ListenerFigures` read from Redis and the figures they
just computed (core/health_beat.py). Every report has every field below, whichever view built
it; a figure nobody could know is null. Fields (a public API: /health, docs/operations.md, the
Prometheus metrics of listener/health/server.py and the Grafana dashboard use them):

- ``status``: ``healthy`` | ``degraded`` (events safe but something needs a look: spooled,
  queued, late, refused and waiting) | ``unhealthy`` (events are not being recorded).
- ``reasons``: one sentence per problem, worst first, each saying what to do; empty when
  healthy.
- ``checks``: the same problems for machines: ``{code, severity, area, message}``, and
  ``destination`` in a destination's own check when there are several (see ``destinations``),
  ``home`` in a home's own check when there are several homes (see ``homes``);
  the codes are listed in docs/operations.md.
- ``time``: unix time of this report; ``uptime_s``: seconds since the listener started.
- ``connection``, ``subscription``, ``listener``: every field of the listener's figures
  (core/listener_figures.py, where each is described), in the section and under the key its
  `Figure` names — ``connection``: ``state``, ``ha_version``, ``attempts``, ``successful``,
  ``failed``, ``reconnects``, ``last_error``, …; ``subscription``: ``total_events_received``,
  ``events_by_type``, ``last_event_time``, ``subscription_ids``, …; ``listener``: the rest,
  named like the fields (``started_at``, ``reported_at``, ``events_enqueued``, ``spool_depth``,
  ``broker_up``, ``spool_quarantined``, …). A new field appears there by itself. Besides them:
  ``connection.reconnects_last_hour`` (from beat); ``subscription.is_subscribed``,
  ``active_subscriptions`` (count), ``event_types`` (the subscribed types, sorted),
  ``event_rate_per_minute`` ({"1m", "5m", "15m"} averages, from beat),
  ``usual_rate_per_minute`` (the hour before the last event, from beat),
  ``last_event_age_s``; ``listener.present`` (false when the listener left no state in Redis:
  then every other listener, connection and subscription figure is null) and
  ``heartbeat_age_s`` (seconds since ``reported_at``).
- ``pipeline`` (from beat; every figure null when beat has not run): ``queue_depth`` (messages
  waiting in the broker), ``in_flight`` (taken by workers, not yet acknowledged),
  ``in_flight_by_consumer`` ({consumer id: messages} of the workers' bulk consumers; null on
  RabbitMQ), ``given_back`` (messages sweeps gave back from workers that stopped renewing their
  liveness, total; null on RabbitMQ), ``workers_alive`` (workers taking the queue: bulk
  consumers with a live liveness key on Redis, the queue's consumers on RabbitMQ; null with
  WORKER_BULK_TAKE=false on Redis),
  ``oldest_message_age_s`` (age of the oldest event not yet written), ``written``,
  ``retried``, ``write_errors``, ``dead_letters`` (totals), ``depth_trend_per_minute``,
  ``stalled_for_s``, ``window_s`` (HEALTH_WINDOW) with ``written_in_window``,
  ``write_errors_in_window``, ``dead_letters_in_window`` and
  ``dead_letter_reasons_in_window`` ({reason: count}), ``dead_letters_stored`` (letters in the
  dead-letter store now), ``outage_letters_stored`` (events in the outage store, waiting for
  InfluxDB), ``dropped`` / ``dropped_in_window`` (dead letters DEAD_LETTERS_MAX deleted, total
  and in the window), ``type_shadowed`` (points written with a value in a shadow field
  because its own field holds another type in InfluxDB, total), ``text_left_out`` (texts a
  VictoriaMetrics destination did not write: over VICTORIA_TEXT_VALUES_MAX, or empty;
  total), ``last_write_error``,
  ``broker_error`` (why the queue could not be read), ``write_rate_per_minute``
  ({"1m", "5m", "15m"}),
  ``computed_at`` (unix time these figures were computed) and ``age_s``.
- ``rates`` (from beat): ``by_domain`` ({domain: {"1m", "5m", "15m"}}), ``top_entities``
  ([{entity_id, "1m", "5m", "15m"}], busiest first), ``history`` ([[minute start, events]]
  for the last 60 minutes, the current one last and still filling).
- ``destinations`` (from beat; empty when beat has not run): {name: figures} for every
  destination, in the configured order (the one destination is named ``default``): ``written``,
  ``retried``, ``write_errors``, ``dead_letters``, ``dropped``, ``backlogged`` (totals of its own
  counters; ``backlogged``: events ever put in its backlog), ``write_rate_per_minute``
  ({"1m", "5m", "15m"}), ``window_s`` with ``written_in_window``, ``write_errors_in_window``,
  ``dead_letters_in_window``, ``backlogged_in_window``, ``last_write_error`` (its store's
  words, secrets scrubbed, while it refuses), ``dead_letters_stored``,
  ``outage_letters_stored``, ``backlog_events`` (events waiting in its backlog now), ``parked``
  (true while it cannot take writes and workers keep its batches in its backlog) and ``lag_s``
  (how far behind it is: the age of the oldest event in its backlog, else that of the oldest
  event in the queue). With one destination its figures are the pipeline's and the pipeline's
  reasons speak for it, worded as always; with several the pipeline's totals add up every
  destination's (its ``last_write_error`` is then null: each destination quotes its own) and
  each destination's problems are reasons of their own: the same codes
  (``write_errors``, ``dead_letters``, ``dropping``, ``dead_letter_store``,
  ``outage_store``) and ``destination_parked``, one check per destination, with its name in
  the check's ``destination`` field (absent from every other check) and in its message
  ("destination archive refused 3 batches…"): a person reads which, a machine (and /metrics'
  ``destination`` label) filters on the field.
- ``homes`` (from beat; empty when beat has not run or no listener names its home): {name:
  figures} for every home listed in Redis (core/fleet_view.py describes them: its status and
  worst reason, subscribed, events per second, lag, reconnects, silent); ``fleet``: the
  totals (null when empty). With several homes each home's problems are checks with ``home``
  (a home that stopped reporting: ``home_silent``), beat's report has no one listener (its
  ``connection``, ``subscription`` and ``listener`` figures are null, its rates the fleet's),
  and a listener's /health keeps its own figures and problems, with its home's event rates.
- ``beat``: ``last_run_at`` (unix time of beat's last stored report, null if none) and
  ``age_s``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.health_check import Check, Thresholds, ordered, overall
from core.health_rules import beat_checks, redis_unreadable, subscription_checks
from core.listener_figures import DESCRIBED, Figure, ListenerFigures, Section, section_keys
from core.storage_rules import listener_storage_checks

PIPELINE_FIELDS = (
    "queue_depth", "in_flight", "oldest_message_age_s", "written", "retried", "write_errors",
    "dead_letters", "depth_trend_per_minute", "stalled_for_s", "window_s", "written_in_window",
    "write_errors_in_window", "dead_letters_in_window", "dead_letter_reasons_in_window",
    "last_write_error", "broker_error", "in_flight_by_consumer", "given_back", "workers_alive",
    "dead_letters_stored", "outage_letters_stored", "dropped", "dropped_in_window",
    "type_shadowed", "text_left_out",
)  # fmt: skip
"""Beat's pipeline figures; the report's section adds write_rate_per_minute, computed_at, age_s."""


@dataclass(frozen=True)
class BeatFigures:
    """What beat computed from Redis and the broker: the pipeline, the event rates, its checks.

    Beat builds them from its readings (core.health_beat); the listener reads them back from
    the report beat stored (`from_report`).
    """

    computed_at: float
    pipeline: Mapping[str, Any]
    """PIPELINE_FIELDS → JSON-ready values."""
    rates: Mapping[str, Any]
    """by_domain, top_entities, history (as in the report's `rates` section)."""
    events_per_minute: Mapping[str, float] | None = None
    usual_per_minute: float | None = None
    written_per_minute: Mapping[str, float] | None = None
    reconnects_last_hour: int | None = None
    checks: tuple[Check, ...] = ()
    """The pipeline rules' verdict."""
    destinations: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Destination name → its figures (the report's `destinations` section)."""
    homes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Home name → its figures (the report's `homes` section, core/fleet_view.py)."""
    fleet: Mapping[str, Any] | None = None
    """The fleet's totals (the report's `fleet` section); None when no home is named."""

    @property
    def several_homes(self) -> bool:
        return len(self.homes) > 1

    @classmethod
    def from_report(cls, report: Any, home: str | None = None) -> BeatFigures | None:
        """Beat's figures in a report of this module's shape; None when it is not one.

        `home`: the listener reading them back: its own event rates and reconnects are then
        its home's (from the `homes` section), not the fleet's."""
        if not isinstance(report, Mapping):
            return None
        computed_at = _number(report.get("time"))
        connection, subscription, pipeline, rates = (
            _mapping(report.get(name))
            for name in ("connection", "subscription", "pipeline", "rates")
        )
        checks = report.get("checks")
        if computed_at is None or not isinstance(checks, list):
            return None
        if connection is None or subscription is None or pipeline is None or rates is None:
            return None
        homes = {
            str(name): dict(figures)
            for name, figures in (_mapping(report.get("homes")) or {}).items()
            if isinstance(figures, Mapping)
        }
        own = homes.get(home) if home is not None else None
        if own is not None:
            subscription = own
            connection = own
        reconnects = connection.get("reconnects_last_hour")
        read = (Check.from_dict(c) for c in checks)
        destinations = _mapping(report.get("destinations")) or {}
        return cls(
            computed_at=computed_at,
            pipeline={name: pipeline.get(name) for name in PIPELINE_FIELDS},
            rates={name: rates.get(name, empty) for name, empty in _no_rates().items()},
            events_per_minute=subscription.get("event_rate_per_minute"),
            usual_per_minute=_number(subscription.get("usual_rate_per_minute")),
            written_per_minute=pipeline.get("write_rate_per_minute"),
            reconnects_last_hour=reconnects if _is_count(reconnects) else None,
            checks=tuple(c for c in read if c is not None and c.area == "pipeline"),
            destinations={
                str(name): dict(figures)
                for name, figures in destinations.items()
                if isinstance(figures, Mapping)
            },
            homes=homes,
            fleet=_mapping(report.get("fleet")),
        )


def build_report(
    now: float,
    listener: ListenerFigures | None,
    beat: BeatFigures | None,
    t: Thresholds,
    *,
    beat_ran_at: float | None,
    beat_error: str | None = None,
) -> dict[str, Any]:
    """The report (fields in the module docstring) as of `now`.

    `listener`: its figures (None when it left none); `beat`: beat's figures (None when there
    are none); `beat_ran_at`: when beat last stored a report, to tell whether beat runs;
    `beat_error`: why beat's report could not be read at all.
    """
    checks = ordered(_checks(now, listener, beat, t, beat_ran_at, beat_error))
    beat_age = None if beat_ran_at is None else max(0.0, now - beat_ran_at)
    parts = _listener_parts(listener)
    return {
        "status": overall(checks),
        "reasons": [c.message for c in checks],
        "checks": [c.as_dict() for c in checks],
        "time": round(now, 3),
        "uptime_s": None if listener is None else _round(now - listener.started_at),
        "connection": _connection(parts["connection"], beat),
        "subscription": _subscription(parts["subscription"], listener, beat, now),
        "listener": _listener(parts["listener"], listener, now),
        "pipeline": _pipeline(beat, now),
        "rates": _no_rates() if beat is None else dict(beat.rates),
        "destinations": {} if beat is None else {n: dict(f) for n, f in beat.destinations.items()},
        "homes": {} if beat is None else {n: dict(f) for n, f in beat.homes.items()},
        "fleet": None if beat is None or beat.fleet is None else dict(beat.fleet),
        "beat": {"last_run_at": beat_ran_at, "age_s": _round(beat_age)},
    }


def _checks(
    now: float,
    listener: ListenerFigures | None,
    beat: BeatFigures | None,
    t: Thresholds,
    beat_ran_at: float | None,
    beat_error: str | None,
) -> list[Check]:
    """The listener's rules on its figures, beat's pipeline verdict, and beat's freshness.

    Beat's fleet view of several homes has no one listener: each home's problems are among
    beat's checks instead (core/fleet_view.py)."""
    checks: list[Check] = []
    if listener is not None or beat is None or not beat.several_homes:
        checks = subscription_checks(
            listener,
            now,
            t,
            usual_rate_per_min=None if beat is None else beat.usual_per_minute,
            reconnects_last_hour=None if beat is None else beat.reconnects_last_hour,
        )
    if listener is not None and now - listener.reported_at <= t.listener_stale_s:
        checks.extend(listener_storage_checks(listener, t))
    if beat is not None:
        checks.extend(beat.checks)
    if beat_error is not None:
        checks.append(redis_unreadable(beat_error))
    else:
        beat_age = None if beat_ran_at is None else max(0.0, now - beat_ran_at)
        checks.extend(beat_checks(beat_age, t))
    return checks


def _listener_parts(li: ListenerFigures | None) -> dict[Section, dict[str, Any]]:
    """Each section's share of the listener's fields, under their keys (null when absent)."""
    parts: dict[Section, dict[str, Any]] = {
        section: dict.fromkeys(section_keys(section))
        for section in ("connection", "subscription", "listener")
    }
    if li is not None:
        for described in DESCRIBED:
            value = _reported(getattr(li, described.name), described.figure)
            parts[described.figure.section][described.key] = value
    return parts


def _reported(value: Any, figure: Figure) -> Any:
    """A field's value as the report shows it: JSON-ready, a duration to the millisecond."""
    if isinstance(value, Mapping):
        return dict(value)
    return _round(value) if figure.rounded else value


def _connection(part: dict[str, Any], beat: BeatFigures | None) -> dict[str, Any]:
    return {**part, "reconnects_last_hour": None if beat is None else beat.reconnects_last_hour}


def _subscription(
    part: dict[str, Any], li: ListenerFigures | None, beat: BeatFigures | None, now: float
) -> dict[str, Any]:
    """The listener's subscription fields with what is derived from them, and beat's rates."""
    last_event_at = None if li is None else li.last_event_at
    last_event_age = None if last_event_at is None else max(0.0, now - last_event_at)
    return {
        "is_subscribed": None if li is None else li.connection_state == "subscribed",
        "active_subscriptions": None if li is None else len(li.subscriptions),
        "event_types": None if li is None else sorted(li.subscriptions),
        **part,
        "event_rate_per_minute": None if beat is None else beat.events_per_minute,
        "usual_rate_per_minute": None if beat is None else beat.usual_per_minute,
        "last_event_age_s": _round(last_event_age),
    }


def _listener(part: dict[str, Any], li: ListenerFigures | None, now: float) -> dict[str, Any]:
    heartbeat_age = None if li is None else _round(max(0.0, now - li.reported_at))
    return {"present": li is not None, "heartbeat_age_s": heartbeat_age, **part}


def _pipeline(beat: BeatFigures | None, now: float) -> dict[str, Any]:
    if beat is None:
        return dict.fromkeys((*PIPELINE_FIELDS, "write_rate_per_minute", "computed_at", "age_s"))
    return {
        **{name: beat.pipeline.get(name) for name in PIPELINE_FIELDS},
        "write_rate_per_minute": beat.written_per_minute,
        "computed_at": beat.computed_at,
        "age_s": _round(max(0.0, now - beat.computed_at)),
    }


def _no_rates() -> dict[str, Any]:
    return {"by_domain": {}, "top_entities": [], "history": []}


def _number(value: Any) -> float | None:
    """A finite JSON number, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _mapping(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
