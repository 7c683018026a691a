"""The listener's `/health`: its own live figures plus beat's latest pipeline summary.

What the listener knows first-hand (connection, subscription, spool) is read live from its
counters; rates and the pipeline come from beat's summary in Redis (at most a few seconds old).
The rules are core.health_rules (subscription, shared with beat) and beat's pipeline checks.

``GET /health`` → HTTP **200** when ``status`` is ``healthy`` or ``degraded``, **503** when
``unhealthy`` (so a load balancer or orchestrator probe needs no JSON parsing). Body (JSON):

- ``status``: ``healthy`` | ``degraded`` (events safe but something needs a look: spooled,
  queued, late, refused and waiting) | ``unhealthy`` (events are not being recorded).
- ``reasons``: one sentence per problem, worst first, each saying what to do; empty when
  healthy.
- ``checks``: the same problems for machines: ``{code, severity, area, message}``; codes:
  ``listener_down``, ``listener_stale``, ``auth_invalid``, ``not_subscribed``,
  ``subscriptions_missing``, ``no_events``, ``reconnects``, ``broker_down``,
  ``spool_draining``, ``no_recorder``, ``beat_missing``, ``beat_stale``, ``redis_unreadable``,
  ``broker_unreadable``, ``stalled``, ``queue_age``, ``backlog``, ``write_errors``,
  ``dead_letters``.
- ``time``: unix time of this answer; ``uptime_s``: seconds since the listener started.
- ``connection``: ``state`` (starting, connecting, authenticating, authenticated, subscribed,
  backing_off, auth_invalid, stopped), ``ha_version``, ``attempts`` (connection attempts),
  ``successful`` (authenticated connections), ``failed`` (attempts that never authenticated),
  ``reconnects`` (since start), ``reconnects_last_hour`` (from beat; null without it),
  ``last_error`` (text of the last connection error, "" if none).
- ``subscription``: ``is_subscribed``, ``active_subscriptions`` (count), ``event_types``
  (the subscribed types), ``total_events_received`` (live events since start),
  ``events_by_type`` ({event_type: count}), ``event_rate_per_minute`` ({"1m", "5m", "15m"}
  averages from beat; null without it), ``usual_rate_per_minute`` (the hour before the last
  event), ``last_event_time`` (unix time, null before the first), ``last_event_age_s``.
- ``listener``: ``events_enqueued``, ``events_spooled``, ``events_drained`` (spool → broker),
  ``spool_depth``, ``memory_queue_depth``, ``broker_up``, ``publish_errors``,
  ``malformed_frames``, ``snapshot_states``, ``backfilled_states``.
- ``pipeline`` (from beat; every figure null when beat has not run): ``queue_depth`` (messages
  waiting in the broker), ``in_flight`` (taken by workers, not yet acknowledged),
  ``oldest_message_age_s`` (age of the oldest event not yet written), ``written``,
  ``retried``, ``write_errors``, ``dead_letters`` (totals), ``write_rate_per_minute``
  ({"1m", "5m", "15m"}), ``depth_trend_per_minute``, ``stalled_for_s``, ``computed_at``
  (unix time of beat's run) and ``age_s``.
- ``rates`` (from beat): ``by_domain`` ({domain: {"1m", "5m", "15m"}}), ``top_entities``
  ([{entity_id, "1m", "5m", "15m"}], busiest first), ``history`` ([[minute start, events]]
  for the last 60 minutes, the current one last and still filling).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from config.redaction import scrub
from config.redis_keys import RedisKeys
from config.settings import Settings
from core.health_rules import (
    Check,
    SubscriptionFigures,
    Thresholds,
    beat_checks,
    ordered,
    overall,
    subscription_checks,
)
from listener.listener_stats import ListenerStats

SUMMARY_CACHE_S = 1.0
"""/health, /metrics and the page may be polled often; beat's summary changes every few s."""


def listener_health(
    stats: ListenerStats,
    now: float,
    *,
    summary: Mapping[str, Any] | None = None,
    summary_error: str | None = None,
    thresholds: Thresholds | None = None,
) -> dict[str, Any]:
    """The /health document (fields in the module docstring): live figures + beat's summary."""
    t = thresholds or Thresholds()
    beat_listener = (summary or {}).get("listener") or {}
    rates = (summary or {}).get("rates") or {}
    pipeline = (summary or {}).get("pipeline") or {}
    computed_at = (summary or {}).get("computed_at")
    summary_age = None if computed_at is None else max(0.0, now - float(computed_at))
    last_event_age = None if stats.last_event_at is None else max(0.0, now - stats.last_event_at)
    figures = SubscriptionFigures(
        connection_state=stats.connection_state,
        heartbeat_age_s=0.0,
        attempts=stats.connect_attempts,
        failed=stats.connects_failed,
        last_error=stats.last_error,
        subscribed_types=tuple(stats.subscriptions),
        uptime_s=now - stats.started_at,
        last_event_age_s=last_event_age,
        usual_rate_per_min=rates.get("usual_per_minute"),
        reconnects_last_hour=beat_listener.get("reconnects_last_hour"),
        broker_up=stats.broker_up,
        spool_depth=stats.spool_depth,
        history_available=stats.history_available,
    )
    checks = subscription_checks(figures, t)
    if summary_error is not None:
        checks.append(
            Check(
                "redis_unreadable",
                "degraded",
                "beat",
                f"cannot read beat's figures from Redis ({summary_error}) — check REDIS_URL "
                "(or CELERY_BROKER_URL) and that Redis runs",
            )
        )
    else:
        checks.extend(beat_checks(summary_age, t))
    checks.extend(
        Check(c["code"], c["severity"], c["area"], c["message"])
        for c in (summary or {}).get("checks", [])
        if c.get("area") == "pipeline"
    )
    checks = ordered(checks)
    return {
        "status": overall(checks),
        "reasons": [c.message for c in checks],
        "checks": [c.as_dict() for c in checks],
        "time": round(now, 3),
        "uptime_s": round(now - stats.started_at, 3),
        "connection": {
            "state": stats.connection_state,
            "ha_version": stats.ha_version,
            "attempts": stats.connect_attempts,
            "successful": stats.connects_ok,
            "failed": stats.connects_failed,
            "reconnects": stats.reconnects,
            "reconnects_last_hour": figures.reconnects_last_hour,
            "last_error": stats.last_error,
        },
        "subscription": {
            "is_subscribed": stats.connection_state == "subscribed",
            "active_subscriptions": len(stats.subscriptions),
            "event_types": sorted(stats.subscriptions),
            "total_events_received": stats.events_received,
            "events_by_type": dict(stats.events_by_type),
            "event_rate_per_minute": rates.get("events_per_minute"),
            "usual_rate_per_minute": rates.get("usual_per_minute"),
            "last_event_time": stats.last_event_at,
            "last_event_age_s": None if last_event_age is None else round(last_event_age, 3),
        },
        "listener": {
            "events_enqueued": stats.events_enqueued,
            "events_spooled": stats.events_spooled,
            "events_drained": stats.events_drained,
            "spool_depth": stats.spool_depth,
            "memory_queue_depth": stats.memory_queue_depth,
            "broker_up": stats.broker_up,
            "publish_errors": stats.publish_errors,
            "malformed_frames": stats.malformed_frames,
            "snapshot_states": stats.snapshot_states,
            "backfilled_states": stats.backfilled_states,
        },
        "pipeline": {
            "queue_depth": pipeline.get("queue_depth"),
            "in_flight": pipeline.get("in_flight"),
            "oldest_message_age_s": pipeline.get("oldest_message_age_s"),
            "written": pipeline.get("written"),
            "retried": pipeline.get("retried"),
            "write_errors": pipeline.get("write_errors"),
            "dead_letters": pipeline.get("dead_letters"),
            "write_rate_per_minute": rates.get("written_per_minute"),
            "depth_trend_per_minute": pipeline.get("depth_trend_per_minute"),
            "stalled_for_s": pipeline.get("stalled_for_s"),
            "computed_at": computed_at,
            "age_s": None if summary_age is None else round(summary_age, 3),
        },
        "rates": {
            "by_domain": rates.get("by_domain", {}),
            "top_entities": rates.get("top_entities", []),
            "history": rates.get("history", []),
        },
    }


class HealthView:
    """Builds /health for a running listener: its stats plus beat's summary, cached briefly."""

    def __init__(
        self,
        settings: Settings,
        stats: ListenerStats,
        client: redis.Redis | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._stats = stats
        # Its own client with short timeouts: a probe must get an answer even when Redis hangs.
        self._redis = client or redis.Redis.from_url(
            settings.state_redis_url(),
            socket_timeout=1,
            socket_connect_timeout=1,
            retry=Retry(NoBackoff(), 0),
        )
        self._key = RedisKeys(settings.redis_prefix).health()
        self._thresholds = Thresholds.from_settings(settings)
        self._secrets = settings.secrets()
        self._clock = clock
        self._cached: tuple[float, dict[str, Any] | None, str | None] | None = None

    def report(self) -> dict[str, Any]:
        now = self._clock()
        summary, error = self._summary(now)
        return listener_health(
            self._stats, now, summary=summary, summary_error=error, thresholds=self._thresholds
        )

    def _summary(self, now: float) -> tuple[dict[str, Any] | None, str | None]:
        cached = self._cached
        if cached is not None and now - cached[0] < SUMMARY_CACHE_S:
            return cached[1], cached[2]
        summary: dict[str, Any] | None = None
        error: str | None = None
        try:
            raw = self._redis.get(self._key)
            summary = json.loads(raw) if raw else None
        except redis.RedisError as exc:
            error = scrub(f"{type(exc).__name__}: {exc}", self._secrets)
        except ValueError:
            summary = None
        self._cached = (now, summary, error)
        return summary, error
