"""Celery tasks: thin adapters from messages to the pipeline (STYLE rule 3).

`ingest_event` is a celery-batches task: Celery delivers one message per HA event, and the
worker hands them over in batches (up to BATCH_SIZE, or whatever arrived within
BATCH_INTERVAL). Messages are acknowledged only after the batch returns, that is after every
point was written or dead-lettered.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from typing import Any

import redis
from celery.signals import worker_shutting_down
from celery_batches import Batches, SimpleRequest

from config.celery_app import app
from config.messages import INGEST_TASK
from config.redis_keys import RedisKeys
from config.settings import Settings, get_settings
from workers.dead_letters import DeadLetterStore
from workers.influx_sink import Sink, V1Sink, V2Sink
from workers.pipeline import IngestPipeline, ShutdownRequested
from workers.rules import Rules
from workers.rules_file import load_rules
from workers.stats import CounterStore

log = logging.getLogger(__name__)

_settings = get_settings()
_stopping = threading.Event()


@worker_shutting_down.connect
def _on_shutdown(**_: Any) -> None:
    """Let a batch that is waiting for InfluxDB give its messages back instead of blocking."""
    _stopping.set()


def make_sink(settings: Settings, precision: str) -> Sink:
    """The InfluxDB sink the settings ask for."""
    if settings.influxdb_api_version == 2:
        assert settings.influxdb_token is not None  # checked by the settings
        return V2Sink(
            settings.influxdb_url,
            token=settings.influxdb_token.get_secret_value(),
            org=settings.influxdb_org or "",
            bucket=settings.influxdb_bucket,
            precision=precision,
            timeout=settings.influxdb_timeout,
        )
    password = settings.influxdb_password
    return V1Sink(
        settings.influxdb_url,
        settings.influxdb_database,
        username=settings.influxdb_username,
        password=password.get_secret_value() if password else None,
        retention_policy=settings.influxdb_retention_policy,
        precision=precision,
        timeout=settings.influxdb_timeout,
    )


class WorkerContext:
    """Everything a worker process builds once: rules, sink, Redis stores, the pipeline."""

    def __init__(self, settings: Settings) -> None:
        keys = RedisKeys(settings.redis_prefix)
        self.redis = redis.Redis.from_url(settings.state_redis_url())
        rules: Rules = load_rules(settings.ha_ingestor_config)
        self.sink = make_sink(settings, rules.precision)
        self.dead_letters = DeadLetterStore(self.redis, keys)
        self.counters = CounterStore(self.redis, keys)
        self.pipeline = IngestPipeline(
            rules=rules,
            sink=self.sink,
            dead_letters=self.dead_letters.add_many,
            backoff=functools.partial(_write_backoff, settings.write_retry_max_delay),
            stopping=_stopping,
        )


def _write_backoff(cap: float) -> Any:
    from config.backoff import exponential_backoff

    return exponential_backoff(initial=0.5, cap=cap)


@functools.cache
def worker_context() -> WorkerContext:
    """Built on first use in each worker process (after fork), never at import."""
    return WorkerContext(_settings)


@app.task(
    base=Batches,
    name=INGEST_TASK,
    flush_every=_settings.batch_size,
    flush_interval=_settings.batch_interval,
    acks_late=True,
    ignore_result=True,
)
def ingest_event(requests: list[SimpleRequest]) -> None:
    """Write a batch of HA events to InfluxDB."""
    context = worker_context()
    messages = [request.args[0] if request.args else None for request in requests]
    try:
        outcome = context.pipeline.process(messages)
    except ShutdownRequested:
        _hand_back(messages)
        return
    context.counters.add(outcome.counters())


def _hand_back(messages: list[Any]) -> None:
    """Re-queue a batch that could not be written before shutdown, so acking it loses nothing."""
    try:
        with app.producer_or_acquire() as producer:
            for message in messages:
                app.send_task(INGEST_TASK, args=[message], producer=producer)
    except Exception:  # noqa: BLE001 - any failure here must not lead to an ack
        log.critical(
            "InfluxDB and the broker are both unreachable while stopping: exiting without "
            "acknowledging %d messages; the broker redelivers them after the visibility timeout",
            len(messages),
        )
        os._exit(1)
    log.warning("stopping during an InfluxDB outage: %d events handed back", len(messages))
