"""The health report: one builder, one shape, for /health, the status page, `status` and beat.

Pure: figures in, a JSON-ready dict out. The listener feeds it its live `ListenerState` and
the `BeatFigures` read back from the report beat stored in Redis; beat and `ha-ingestor
status` feed it the `ListenerState` read from Redis and the figures they just computed
(core/health_beat.py). Every report has every field below, whichever view built it; a figure
nobody could know is null. Fields (a public API: /health, docs/operations.md, the Prometheus
metrics of listener/health/server.py and the Grafana dashboard derive from them):

- ``status``: ``healthy`` | ``degraded`` (events safe but something needs a look: spooled,
  queued, late, refused and waiting) | ``unhealthy`` (events are not being recorded).
- ``reasons``: one sentence per problem, worst first, each saying what to do; empty when
  healthy.
- ``checks``: the same problems for machines: ``{code, severity, area, message}``; the codes
  are listed in docs/operations.md.
- ``time``: unix time of this report; ``uptime_s``: seconds since the listener started.
- ``connection``: ``state`` (starting, connecting, authenticating, authenticated, subscribed,
  backing_off, auth_invalid, stopped), ``ha_version``, ``attempts`` (connection attempts),
  ``successful`` (authenticated connections), ``failed`` (attempts that never authenticated),
  ``reconnects`` (since start), ``reconnects_last_hour`` (from beat), ``last_error`` (text of
  the last connection error, "" if none).
- ``subscription``: ``is_subscribed``, ``active_subscriptions`` (count), ``event_types``
  (the subscribed types), ``total_events_received`` (live events since start),
  ``events_by_type`` ({event_type: count}), ``event_rate_per_minute`` ({"1m", "5m", "15m"}
  averages, from beat), ``usual_rate_per_minute`` (the hour before the last event, from beat),
  ``last_event_time`` (unix time, null before the first), ``last_event_age_s``.
- ``listener``: ``present`` (false when the listener left no state in Redis: then every other
  listener, connection and subscription figure is null), ``reported_at`` (unix time of the
  state these figures come from), ``heartbeat_age_s``, ``events_enqueued``,
  ``events_spooled``, ``events_drained`` (spool → broker), ``spool_depth``,
  ``memory_queue_depth``, ``broker_up``, ``publish_errors``, ``malformed_frames``,
  ``snapshot_states``, ``backfilled_states``, ``history_available`` (HA's history API answered;
  null until asked), ``skipped_messages`` ({reason: count} of frames and messages from HA that
  were unusable and skipped), ``read_stall_max_s`` (the longest the reader spent on one frame),
  ``registry_refreshes``, ``publisher_restarts`` (the publisher thread died and was restarted),
  ``spool_quarantined`` (spool rows that could not be read back, kept apart),
  ``auth_retry_at`` (after auth_invalid: unix time of the next login try, else null),
  ``spool_bytes`` / ``spool_max_bytes`` (SPOOL_MAX_MB) / ``spool_disk_free_bytes`` (the spool's
  size, cap and free disk), ``broker_memory_used_bytes`` / ``broker_memory_max_bytes`` (the
  broker Redis's used_memory and maxmemory, 0 = no limit; null on RabbitMQ) and
  ``broker_full`` (above BROKER_MEMORY_SPOOL_PERCENT: new events go to the spool),
  ``spool_full`` (the spool refused the last batch: reading from HA pauses).
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
  and in the window), ``last_write_error``, ``broker_error``
  (why the queue could not be read), ``write_rate_per_minute`` ({"1m", "5m", "15m"}),
  ``computed_at`` (unix time these figures were computed) and ``age_s``.
- ``rates`` (from beat): ``by_domain`` ({domain: {"1m", "5m", "15m"}}), ``top_entities``
  ([{entity_id, "1m", "5m", "15m"}], busiest first), ``history`` ([[minute start, events]]
  for the last 60 minutes, the current one last and still filling).
- ``beat``: ``last_run_at`` (unix time of beat's last stored report, null if none) and
  ``age_s``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.health_check import Check, Thresholds, ordered, overall
from core.health_rules import (
    SubscriptionFigures,
    beat_checks,
    redis_unreadable,
    subscription_checks,
)
from core.listener_state import ListenerState
from core.storage_rules import listener_storage_checks

CONNECTION_FIELDS = (
    "state", "ha_version", "attempts", "successful", "failed", "reconnects",
    "reconnects_last_hour", "last_error",
)  # fmt: skip
SUBSCRIPTION_FIELDS = (
    "is_subscribed", "active_subscriptions", "event_types", "total_events_received",
    "events_by_type", "event_rate_per_minute", "usual_rate_per_minute", "last_event_time",
    "last_event_age_s",
)  # fmt: skip
LISTENER_FIELDS = (
    "present", "reported_at", "heartbeat_age_s", "events_enqueued", "events_spooled",
    "events_drained", "spool_depth", "memory_queue_depth", "broker_up", "publish_errors",
    "malformed_frames", "snapshot_states", "backfilled_states", "history_available",
    "skipped_messages", "read_stall_max_s", "registry_refreshes", "publisher_restarts",
    "spool_quarantined", "auth_retry_at", "spool_bytes", "spool_max_bytes", "spool_disk_free_bytes",
    "broker_memory_used_bytes", "broker_memory_max_bytes", "broker_full", "spool_full",
)  # fmt: skip
PIPELINE_FIELDS = (
    "queue_depth", "in_flight", "oldest_message_age_s", "written", "retried", "write_errors",
    "dead_letters", "depth_trend_per_minute", "stalled_for_s", "window_s", "written_in_window",
    "write_errors_in_window", "dead_letters_in_window", "dead_letter_reasons_in_window",
    "last_write_error", "broker_error", "in_flight_by_consumer", "given_back", "workers_alive",
    "dead_letters_stored", "outage_letters_stored", "dropped", "dropped_in_window",
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

    @classmethod
    def from_report(cls, report: Any) -> BeatFigures | None:
        """Beat's figures in a report of this module's shape; None when it is not one."""
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
        reconnects = connection.get("reconnects_last_hour")
        read = (Check.from_dict(c) for c in checks)
        return cls(
            computed_at=computed_at,
            pipeline={name: pipeline.get(name) for name in PIPELINE_FIELDS},
            rates={name: rates.get(name, empty) for name, empty in _no_rates().items()},
            events_per_minute=subscription.get("event_rate_per_minute"),
            usual_per_minute=_number(subscription.get("usual_rate_per_minute")),
            written_per_minute=pipeline.get("write_rate_per_minute"),
            reconnects_last_hour=reconnects if _is_count(reconnects) else None,
            checks=tuple(c for c in read if c is not None and c.area == "pipeline"),
        )


def build_report(
    now: float,
    listener: ListenerState | None,
    beat: BeatFigures | None,
    t: Thresholds,
    *,
    beat_ran_at: float | None,
    beat_error: str | None = None,
) -> dict[str, Any]:
    """The report (fields in the module docstring) as of `now`.

    `listener`: its state (None when it left none); `beat`: beat's figures (None when there are
    none); `beat_ran_at`: when beat last stored a report, to tell whether beat runs;
    `beat_error`: why beat's report could not be read at all.
    """
    figures = subscription_figures(listener, now, beat)
    checks = subscription_checks(figures, t)
    if figures.heartbeat_age_s is not None and figures.heartbeat_age_s <= t.listener_stale_s:
        checks.extend(listener_storage_checks(figures, t))
    if beat is not None:
        checks.extend(beat.checks)
    beat_age = None if beat_ran_at is None else max(0.0, now - beat_ran_at)
    if beat_error is not None:
        checks.append(redis_unreadable(beat_error))
    else:
        checks.extend(beat_checks(beat_age, t))
    checks = ordered(checks)
    return {
        "status": overall(checks),
        "reasons": [c.message for c in checks],
        "checks": [c.as_dict() for c in checks],
        "time": round(now, 3),
        "uptime_s": None if listener is None else _round(now - listener.started_at),
        "connection": _connection(listener, beat),
        "subscription": _subscription(listener, beat, now),
        "listener": _listener(listener, now),
        "pipeline": _pipeline(beat, now),
        "rates": _no_rates() if beat is None else dict(beat.rates),
        "beat": {"last_run_at": beat_ran_at, "age_s": _round(beat_age)},
    }


def subscription_figures(
    listener: ListenerState | None, now: float, beat: BeatFigures | None
) -> SubscriptionFigures:
    """The subscription rules' figures: the listener's state as of `now`, with beat's history."""
    if listener is None:
        return SubscriptionFigures(connection_state="unknown", heartbeat_age_s=None)
    last_event_at = listener.last_event_at
    return SubscriptionFigures(
        connection_state=listener.connection_state,
        heartbeat_age_s=max(0.0, now - listener.reported_at),
        attempts=listener.connect_attempts,
        failed=listener.connects_failed,
        last_error=listener.last_error,
        subscribed_types=tuple(listener.subscriptions),
        uptime_s=now - listener.started_at,
        last_event_age_s=None if last_event_at is None else max(0.0, now - last_event_at),
        usual_rate_per_min=None if beat is None else beat.usual_per_minute,
        reconnects_last_hour=None if beat is None else beat.reconnects_last_hour,
        broker_up=listener.broker_up,
        spool_depth=listener.spool_depth,
        history_available=listener.history_available,
        spool_quarantined=listener.spool_quarantined,
        spool_bytes=listener.spool_bytes,
        spool_max_bytes=listener.spool_max_bytes,
        spool_disk_free_bytes=listener.spool_disk_free_bytes,
        broker_memory_used_bytes=listener.broker_memory_used_bytes,
        broker_memory_max_bytes=listener.broker_memory_max_bytes,
        broker_full=listener.broker_full,
        spool_full=listener.spool_full,
    )


def _connection(li: ListenerState | None, beat: BeatFigures | None) -> dict[str, Any]:
    section: dict[str, Any] = dict.fromkeys(CONNECTION_FIELDS)
    if li is not None:
        section.update(
            state=li.connection_state,
            ha_version=li.ha_version,
            attempts=li.connect_attempts,
            successful=li.connects_ok,
            failed=li.connects_failed,
            reconnects=li.reconnects,
            last_error=li.last_error,
        )
    if beat is not None:
        section["reconnects_last_hour"] = beat.reconnects_last_hour
    return section


def _subscription(li: ListenerState | None, beat: BeatFigures | None, now: float) -> dict[str, Any]:
    section: dict[str, Any] = dict.fromkeys(SUBSCRIPTION_FIELDS)
    if li is not None:
        last_event_at = li.last_event_at
        age = None if last_event_at is None else max(0.0, now - last_event_at)
        section.update(
            is_subscribed=li.connection_state == "subscribed",
            active_subscriptions=len(li.subscriptions),
            event_types=sorted(li.subscriptions),
            total_events_received=li.events_received,
            events_by_type=dict(li.events_by_type),
            last_event_time=last_event_at,
            last_event_age_s=_round(age),
        )
    if beat is not None:
        section["event_rate_per_minute"] = beat.events_per_minute
        section["usual_rate_per_minute"] = beat.usual_per_minute
    return section


def _listener(li: ListenerState | None, now: float) -> dict[str, Any]:
    section: dict[str, Any] = dict.fromkeys(LISTENER_FIELDS)
    section["present"] = li is not None
    if li is not None:
        section.update(
            reported_at=li.reported_at,
            heartbeat_age_s=_round(max(0.0, now - li.reported_at)),
            events_enqueued=li.events_enqueued,
            events_spooled=li.events_spooled,
            events_drained=li.events_drained,
            spool_depth=li.spool_depth,
            memory_queue_depth=li.memory_queue_depth,
            broker_up=li.broker_up,
            publish_errors=li.publish_errors,
            malformed_frames=li.malformed_frames,
            snapshot_states=li.snapshot_states,
            backfilled_states=li.backfilled_states,
            history_available=li.history_available,
            skipped_messages=dict(li.skipped_messages),
            read_stall_max_s=_round(li.read_stall_max_s),
            registry_refreshes=li.registry_refreshes,
            publisher_restarts=li.publisher_restarts,
            spool_quarantined=li.spool_quarantined,
            auth_retry_at=li.auth_retry_at,
            spool_bytes=li.spool_bytes,
            spool_max_bytes=li.spool_max_bytes,
            spool_disk_free_bytes=li.spool_disk_free_bytes,
            broker_memory_used_bytes=li.broker_memory_used_bytes,
            broker_memory_max_bytes=li.broker_memory_max_bytes,
            broker_full=li.broker_full,
            spool_full=li.spool_full,
        )
    return section


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
