"""Beat jobs: thin tasks that read counters from Redis, compute figures and store them."""

from __future__ import annotations

import json
import time

import redis

from config.celery_app import BEAT_PERIOD_S, app
from config.redis_keys import RedisKeys
from config.settings import get_settings
from workers.rates import WINDOWS_MIN, per_minute_rates

RATE_COUNTERS = ("written", "dead_lettered", "retries")


@app.task(name="ha_ingestor.compute_pipeline_stats", ignore_result=True)
def compute_pipeline_stats() -> None:
    """Store per-minute rates of the pipeline's counters under the `rates` key."""
    settings = get_settings()
    keys = RedisKeys(settings.redis_prefix)
    client = redis.Redis.from_url(settings.state_redis_url())
    now_minute = int(time.time() // 60)
    minutes = list(range(now_minute - max(WINDOWS_MIN), now_minute))
    figures: dict[str, dict[str, float]] = {}
    for name in RATE_COUNTERS:
        values = client.mget([keys.counter_bucket(name, m) for m in minutes])
        buckets = {m: int(v) for m, v in zip(minutes, values, strict=True) if v is not None}
        figures[name] = per_minute_rates(buckets, now_minute)
    payload = {"computed_at": time.time(), "per_minute": figures}
    client.set(keys.rates(), json.dumps(payload), ex=int(6 * BEAT_PERIOD_S))
