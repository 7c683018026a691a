"""Celery tasks: thin adapters from messages to the pipeline (STYLE rule 3).

`ingest_event` is a celery-batches task: Celery delivers one message per HA event, and the
worker hands them over in batches (up to BATCH_SIZE, or whatever arrived within
BATCH_INTERVAL). A message is acknowledged only after its batch returns, that is after its
point was written or dead-lettered. Messages the pipeline hands back (worker stopping, or
InfluxDB unavailable for the hold limit) are rejected with requeue: the broker keeps them, at
the back of the queue, and no copy is made.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Collection, Sequence
from typing import Any

import redis
from celery.signals import worker_shutting_down
from celery_batches import Batches, SimpleRequest
from celery_batches.trace import apply_batches_task

from config.celery_app import app, batch_hold_limit
from config.redis_keys import RedisKeys
from config.rules_file import load_rules
from config.settings import Settings, get_settings
from core.backoff import exponential_backoff
from core.rules import Rules
from core.task_message import INGEST_TASK
from workers.counter_store import CounterStore
from workers.dead_letters import AutoReplay, DeadLetterStore
from workers.enrichment import Enrichment, RegistryCache, default_steps
from workers.errors import SinkError
from workers.influx_sink import Sink, V1Sink, V2Sink
from workers.pipeline import BatchOutcome, IngestPipeline, TagsFor

log = logging.getLogger(__name__)

_settings = get_settings()
_hold_limit = batch_hold_limit(_settings)  # refuses incoherent timing at worker start
_rules: Rules = load_rules(_settings.ha_ingestor_config)  # a bad rules file fails the start
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


def send_many(messages: Sequence[Any]) -> None:
    """Enqueue task messages on one producer connection (replays)."""
    with app.producer_or_acquire() as producer:
        for message in messages:
            app.send_task(INGEST_TASK, args=[message], producer=producer)


class WorkerContext:
    """Everything a worker process builds once: rules, sink, Redis stores, the pipeline."""

    def __init__(self, settings: Settings) -> None:
        keys = RedisKeys(settings.redis_prefix)
        self.redis = redis.Redis.from_url(settings.state_redis_url())
        rules = _rules
        self.sink = make_sink(settings, rules.precision)
        if isinstance(self.sink, V1Sink):
            _ensure_database(self.sink)
        self.dead_letters = DeadLetterStore(self.redis, keys, max_len=settings.dead_letters_max)
        self.counters = CounterStore(self.redis, keys)
        self.auto_replay = AutoReplay(self.dead_letters, self.redis, keys, send_many)
        tags_for: TagsFor | None = None
        if settings.enrichment_enabled:
            cache = RegistryCache(self.redis, keys, ttl=settings.enrichment_cache_ttl)
            tags_for = Enrichment(cache, default_steps(rules.tags_attributes)).tags_for
        cap = settings.write_retry_max_delay
        self.pipeline = IngestPipeline(
            rules=rules,
            sink=self.sink,
            dead_letters=self.dead_letters.add_many,
            count=self.counters.add,
            backoff=lambda: exponential_backoff(initial=0.5, cap=cap),
            stopping=_stopping,
            max_event_age=settings.max_event_age,
            hold_limit=_hold_limit,
            tags_for=tags_for,
        )

    def ingest(self, messages: list[Any]) -> BatchOutcome:
        """The pipeline, and whatever it did not foresee kept as dead letters, never raised."""
        try:
            outcome = self.pipeline.process(messages)
        except Exception as exc:
            log.exception("the batch failed unexpectedly; its events are kept as dead letters")
            return self.pipeline.dead_letter_all(messages, "worker_error", repr(exc))
        if outcome.written:
            self._replay_outage_letters()
        return outcome

    def _replay_outage_letters(self) -> None:
        """Writes succeed: enqueue again a chunk of what waited too long during an outage."""
        try:
            replayed = self.auto_replay.run_once()
        except Exception as exc:  # noqa: BLE001 - the batch is written; retry after the next one
            log.warning("could not replay outage dead letters yet (%s)", exc)
            return
        if replayed:
            self.counters.add({"replayed": replayed})


def _ensure_database(sink: V1Sink) -> None:
    """CREATE DATABASE once; when that fails, writes wait for it (and say how to fix it)."""
    try:
        sink.ensure_database()
    except SinkError as exc:
        log.warning("%s", exc)


@functools.cache
def worker_context() -> WorkerContext:
    """Built on first use in each worker process (after fork), never at import."""
    return WorkerContext(_settings)


class IngestBatches(Batches):  # type: ignore[misc]
    """celery-batches with two changes.

    - A batch may give messages back instead of acknowledging them: the task returns the ids
      of the requests to requeue; every other request is acknowledged. Anything else coming
      back (the pool lost the batch) requeues the whole batch: a message is never acknowledged
      unless its batch said it was done.
    - The periodic flush survives a broker reconnect. Celery restarts its consumer then, which
      clears the consumer's timer and the flush with it, while celery-batches still believes
      its timer runs: a partial batch (a lone event) would wait until BATCH_SIZE more arrived.
    """

    _tref: Any
    _buffer: Any

    def Strategy(self, task: Any, app: Any, consumer: Any) -> Any:
        """Called on every consumer (re)start: arm the flush on the new consumer's timer."""
        if self._tref is not None:
            self._tref.cancel()
            self._tref = None
        strategy = super().Strategy(task, app, consumer)
        if not self._buffer.empty():  # requests taken before the reconnect: flush them too
            self._tref = consumer.timer.call_repeatedly(self.flush_interval, self._do_flush)
        return strategy

    def flush(self, requests: Collection[Any]) -> Any:
        serializable = ([SimpleRequest.from_request(r) for r in requests],)

        def on_return(result: Any) -> None:
            requeue = _requeue_ids(result)
            for request in requests:
                if requeue is None or request.id in requeue:
                    request.reject(requeue=True)
                else:
                    request.acknowledge()

        return self._pool.apply_async(
            apply_batches_task, (self, serializable, 0, None), callback=on_return
        )


def _requeue_ids(result: Any) -> set[str] | None:
    if isinstance(result, dict) and isinstance(result.get("requeue"), list):
        return set(result["requeue"])
    return None


@app.task(
    base=IngestBatches,
    name=INGEST_TASK,
    flush_every=_settings.batch_size,
    flush_interval=_settings.batch_interval,
    acks_late=True,
    ignore_result=True,
)
def ingest_event(requests: list[SimpleRequest]) -> dict[str, list[str]]:
    """Write a batch of HA events to InfluxDB; returns the ids of requests to requeue."""
    messages = [request.args[0] if request.args else None for request in requests]
    outcome = worker_context().ingest(messages)
    return {"requeue": [requests[i].id for i in outcome.handed_back]}
