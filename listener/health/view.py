"""The listener's `/health`: its live state and beat's latest figures, through the one builder.

What the listener knows first-hand (connection, subscription, spool) comes live from its
ListenerStats; the pipeline and the rates are beat's, read back from the report beat stores in
Redis (at most a few seconds old). Both go to core.health_report.build_report, the builder of
every health view, so /health has the shape of beat's report and of `ha-ingestor status --json`;
its fields are listed in core/health_report.py.

``GET /health`` → HTTP **200** when ``status`` is ``healthy`` or ``degraded``, **503** when
``unhealthy`` (so a load balancer or orchestrator probe needs no JSON parsing).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from config.redaction import scrub
from config.redis_keys import RedisKeys
from config.settings import Settings
from core import json_codec
from core.health_check import Thresholds
from core.health_report import BeatFigures, build_report
from listener.health.stats import ListenerStats

SUMMARY_CACHE_S = 1.0
"""/health, /metrics and the page may be polled often; beat's report changes every few s."""


def listener_health(
    stats: ListenerStats,
    now: float,
    *,
    beat: BeatFigures | None = None,
    beat_error: str | None = None,
    thresholds: Thresholds | None = None,
) -> dict[str, Any]:
    """The /health document: the live state as of `now` plus beat's figures."""
    return build_report(
        now,
        stats.snapshot(now),
        beat,
        thresholds or Thresholds(),
        beat_ran_at=None if beat is None else beat.computed_at,
        beat_error=beat_error,
    )


class HealthView:
    """Builds /health for a running listener: its stats plus beat's figures, cached briefly."""

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
        self._cached: tuple[float, BeatFigures | None, str | None] | None = None

    def report(self) -> dict[str, Any]:
        now = self._clock()
        beat, error = self._beat_figures(now)
        return listener_health(
            self._stats, now, beat=beat, beat_error=error, thresholds=self._thresholds
        )

    def _beat_figures(self, now: float) -> tuple[BeatFigures | None, str | None]:
        """Beat's figures from its stored report (None if none), or why Redis could not say."""
        cached = self._cached
        if cached is not None and now - cached[0] < SUMMARY_CACHE_S:
            return cached[1], cached[2]
        figures: BeatFigures | None = None
        error: str | None = None
        try:
            raw = self._redis.get(self._key)
            report = json_codec.loads(raw) if raw else None
            figures = BeatFigures.from_report(report, home=self._stats.instance)
        except redis.RedisError as exc:
            error = scrub(f"{type(exc).__name__}: {exc}", self._secrets)
        except ValueError:
            figures = None
        self._cached = (now, figures, error)
        return figures, error
