"""The baselines' Celery: the same settings as the real app, one task that does nothing.

`celery -A bench.bare_app worker` with the worker flags of the Procfile is Celery's own cost per
message, on kombu's stock Redis transport (what a worker with WORKER_BULK_TAKE=false runs);
`bench.delay_loop` publishes with `task.delay()` through it. A message carrying
`probe_sent_at` (the latency baseline) has its delay recorded, nothing else does.
"""

from __future__ import annotations

import time
from typing import Any

import redis
from celery import Celery

from config.celery_app import celery_config
from config.settings import get_settings
from core.task_message import INGEST_TASK

LATENCY_KEY = "bench:bare_latency"

_settings = get_settings()
_config = celery_config(_settings)
for _key in ("beat_scheduler", "beat_schedule"):
    _config.pop(_key, None)

app = Celery("bench_bare", set_as_current=True)
app.conf.update(_config)
_redis: redis.Redis | None = None


@app.task(  # type: ignore[untyped-decorator]
    name=INGEST_TASK,
    acks_late=True,
    ignore_result=True,
    shared=False,
)
def noop(message: Any) -> None:
    """Celery's bare per-message cost (the probe branch runs only in the latency baseline)."""
    if type(message) is dict and "probe_sent_at" in message:
        global _redis
        if _redis is None:
            _redis = redis.Redis.from_url(_settings.celery_broker_url.get_secret_value())
        _redis.rpush(LATENCY_KEY, time.time() - float(message["probe_sent_at"]))
