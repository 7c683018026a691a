"""What a worker process writes with: the sink, the Redis stores and the pipeline, built once.

Built at worker start by workers/worker_start.py (after the settings and the rules were
checked), never at import, and carried by the worker's app (`attach`, `context_of`): the bulk
takers are handed it by the consumer step, Celery's task reaches it through its app. No module
global holds it. A pool child forked from that worker builds its own on first use, since
sockets must not be shared across a fork (the Procfile's `--pool solo` never forks).
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable
from typing import Any

import redis
from celery import Celery
from redis.backoff import NoBackoff
from redis.retry import Retry

from config.destinations import Destination, Destinations
from config.redaction import scrub
from config.redis_keys import RedisKeys
from config.settings import Settings
from core.backoff import exponential_backoff
from core.enrichment import Enricher, default_steps, floor_label_steps, registry_id_tag
from core.line_protocol import encode_point
from core.rules import Rules
from workers.batch_events import BatchEvents
from workers.destinations import DestinationWriter, Drainer, FanOut
from workers.hand_back import HandBackPacer
from workers.pipeline import BatchOutcome, DeadLetterSink, IngestPipeline, TagsFor
from workers.sinks.errors import SinkError
from workers.sinks.field_types import FieldTypeCache
from workers.sinks.influx_sink import V1Sink, make_sink
from workers.sinks.victoria_sink import VictoriaSink
from workers.stores.backlog import Backlog
from workers.stores.counter_store import CounterStore
from workers.stores.dead_letters import AutoReplay, DeadLetterStore, SendMany
from workers.stores.import_runs import ImportRuns
from workers.stores.registry_cache import HomeEnrichment, HomeRegistries

log = logging.getLogger(__name__)


class WorkerContext:
    """The destinations' writers, the Redis stores and the pipeline of one worker process."""

    def __init__(
        self,
        settings: Settings,
        destinations: Destinations,
        *,
        send_many: SendMany,
        hold_limit: float = math.inf,
    ) -> None:
        keys = RedisKeys(settings.redis_prefix)
        self.stopping = threading.Event()
        """Set when the worker stops: a batch waiting for InfluxDB hands its messages back."""
        self.batch_events: BatchEvents | None = None
        """Set by the worker's consumer step: each batch is then one task in Flower."""
        self.redis = state_redis(settings)
        self._secrets = settings.secrets()
        self._settings = settings
        self._registries = HomeRegistries(self.redis, keys, ttl=settings.enrichment_cache_ttl)
        self.several = destinations.several
        self.writers = [
            self._writer(d, keys, hold_limit=0.0 if self.several else hold_limit)
            for d in destinations.all
        ]
        first = self.writers[0]
        self.sink, self.pipeline = first.sink, first.pipeline
        self.counters = CounterStore(self.redis, keys, write_error_ttl=settings.health_window)
        self.dead_letters = DeadLetterStore(
            self.redis, keys, max_len=settings.dead_letters_max, count=self.counters.add
        )
        self.pacer = HandBackPacer(
            self.stopping, cap=settings.write_retry_max_delay, sink=self.sink
        )
        self.import_runs = ImportRuns(self.redis, keys)
        self._lettered: set[int] = set()
        """ids of this batch's messages stored as dead letters (import runs count them)."""
        # The outage store of a lone destination; with several, the prefix-level one, which a
        # single `default` filled before a second destination was added (re-enqueued, those
        # events then reach every destination).
        outage = self.dead_letters if self.several else first.dead_letters
        self.auto_replay = AutoReplay(outage, self.redis, keys, send_many)
        self.fan_out: FanOut | None = None
        self.drainer: Drainer | None = None
        if self.several:
            self.fan_out = FanOut(self.writers, self._remembering(self.dead_letters))
            self.drainer = Drainer(
                self.writers,
                self.redis,
                stopping=self.stopping,
            )
            self.drainer.start()

    def _writer(
        self, destination: Destination, keys: RedisKeys, *, hold_limit: float
    ) -> DestinationWriter:
        """One destination's sink, stores and pipeline; with several destinations the pipeline
        never waits (what it cannot write goes to the destination's backlog)."""
        settings, rules = self._settings, destination.rules
        own = keys.for_destination(destination.name)
        sink = make_sink(
            destination,
            rules.precision,
            text_values_max=settings.victoria_text_values_max,
            text_window=settings.victoria_text_window,
        )
        if isinstance(sink, V1Sink):
            _ensure_database(sink)
        counters = CounterStore(self.redis, own, write_error_ttl=settings.health_window)
        dead_letters = DeadLetterStore(
            self.redis, own, max_len=settings.dead_letters_max, count=counters.add
        )
        tags_for: TagsFor | None = None
        if steps := _enrichment_steps(settings, rules):
            tags_for = HomeEnrichment(self._registries, steps).tags_for
        field_types = None
        if settings.type_shadow_fields:
            schema = sink.field_types if isinstance(sink, V1Sink) else None
            field_types = FieldTypeCache(schema)
        cap = settings.write_retry_max_delay
        secrets = self._secrets

        def note_write_error(text: str) -> None:
            """The store's own words for beat's `write_errors` reason, with no secret, and the
            settings it names as this destination's."""
            counters.note_write_error(destination.in_own_words(scrub(text, secrets)))

        pipeline = IngestPipeline(
            rules=rules,
            sink=sink,
            dead_letters=self._remembering(dead_letters),
            count=counters.add,
            note_write_error=note_write_error,
            backoff=lambda: exponential_backoff(initial=0.5, cap=cap),
            stopping=self.stopping,
            max_event_age=math.inf if self.several else settings.max_event_age,
            hold_limit=hold_limit,
            hands_back_to=f"the backlog of {destination.name}" if self.several else "the broker",
            tags_for=tags_for,
            instance_tag=settings.instance_tag,
            field_types=field_types,
            encode=sink.encode if isinstance(sink, VictoriaSink) else encode_point,
        )
        backlog = Backlog(self.redis, own) if self.several else None
        return DestinationWriter(destination.name, sink, pipeline, counters, dead_letters, backlog)

    def ingest(self, messages: list[Any]) -> BatchOutcome:
        """The pipeline, and whatever it did not foresee kept as dead letters, never raised.

        The batch is one task in Flower when the worker sends task events (batch_events).
        """
        events = self.batch_events
        if events is None:
            return self._ingest(messages)
        task = events.started(len(messages))
        outcome = None
        try:
            outcome = self._ingest(messages)
        finally:
            events.finished(task, outcome)
        return outcome

    def _ingest(self, messages: list[Any]) -> BatchOutcome:
        self._lettered = set()
        try:
            if self.fan_out is not None:
                outcome = self.fan_out.process(messages)
            else:
                outcome = self.pipeline.process(messages)
            self._count_left_out()
        except Exception as exc:
            log.exception("the batch failed unexpectedly; its events are kept as dead letters")
            if self.fan_out is not None:  # kept once, for every destination
                outcome = self.fan_out.dead_letter_all(messages, "worker_error", repr(exc))
            else:
                outcome = self.pipeline.dead_letter_all(messages, "worker_error", repr(exc))
            self.import_runs.record(messages, outcome, self._lettered)
            return outcome
        self.import_runs.record(messages, outcome, self._lettered)
        self.pacer.record(outcome)
        if outcome.written:
            self._replay_outage_letters()
        return outcome

    def _count_left_out(self) -> None:
        """Texts VictoriaMetrics' guard kept out of this batch, for /health and /metrics."""
        for writer in self.writers:
            if isinstance(writer.sink, VictoriaSink):
                writer.counters.add({"text_left_out": writer.sink.take_left_out()})

    def pause_after_hand_back(self) -> bool:
        """Called before taking a batch: after a hand-back, wait (workers/hand_back.py)
        instead of taking the same messages again at once; True when the worker is stopping."""
        return self.pacer.wait()

    def _remembering(self, store: DeadLetterStore) -> DeadLetterSink:
        """A dead-letter store that remembers which messages of the batch went there."""

        def add(letters: list[tuple[Any, str, str]]) -> object:
            stored = store.add_many(letters)
            self._lettered.update(id(raw) for raw, _, _ in letters)
            return stored

        return add

    def close(self) -> None:
        self.stopping.set()
        if self.drainer is not None:
            self.drainer.join(timeout=5)
        for writer in self.writers:
            writer.sink.close()
        self.redis.close()

    def _replay_outage_letters(self) -> None:
        """Writes succeed: enqueue again a chunk of what waited too long during an outage."""
        try:
            self.auto_replay.run_once()
        except Exception as exc:  # noqa: BLE001 - the batch is written; retry after the next one
            log.warning("could not replay outage dead letters yet (%s)", exc)


def state_redis(settings: Settings) -> redis.Redis:
    """The state Redis (counters, dead letters, registries) with a deadline on every call: a
    try and one retry of REDIS_SOCKET_TIMEOUT each, and a PING before reusing a connection
    idle for 30 s, so a half-open connection fails fast instead of blocking a batch."""
    timeout = settings.redis_socket_timeout
    return redis.Redis.from_url(
        settings.state_redis_url(),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 1),
    )


def _ensure_database(sink: V1Sink) -> None:
    """CREATE DATABASE once; when that fails, writes wait for it (and say how to fix it)."""
    try:
        sink.ensure_database()
    except SinkError as exc:
        log.warning("%s", exc)


class ProcessContext:
    """The worker context of this process: built at worker start, again in a forked pool child.

    The worker's start-up step makes one and hangs it on the app (`attach`); whoever needs the
    context asks the app for it (`context_of(app).current()`)."""

    def __init__(self, build: Callable[[], WorkerContext]) -> None:
        self._build = build
        self._context = build()
        self._pid = os.getpid()

    def current(self) -> WorkerContext:
        """This process's context; a forked child builds its own on its first batch."""
        if self._pid != os.getpid():
            self._context = self._build()
            self._pid = os.getpid()
        return self._context

    def on_shutting_down(self, **_: Any) -> None:
        """The worker stops (Celery's worker_shutting_down): a batch waiting for InfluxDB gives
        its messages back instead of blocking the shutdown."""
        if self._pid == os.getpid():
            self._context.stopping.set()


def attach(app: Celery, holder: ProcessContext) -> None:
    """The worker's app carries its context from now on (the start-up step calls this)."""
    app.worker_context = holder


def context_of(app: Celery) -> ProcessContext:
    """The context the worker's start-up step hung on `app`; RuntimeError saying how to get one
    outside a worker."""
    holder = getattr(app, "worker_context", None)
    if isinstance(holder, ProcessContext):
        return holder
    raise RuntimeError(
        "no worker context: the ingest task runs in a worker started with "
        "`celery -A config.celery_app worker`, whose start-up builds it "
        "(workers/worker_start.py)"
    )


def _enrichment_steps(settings: Settings, rules: Rules) -> tuple[Enricher, ...]:
    """Area and device tags (and floor and labels, as chosen) with ENRICHMENT_ENABLED; the
    stable id with TRACK_RENAMES, which needs the registries even when the other tags are off."""
    steps: tuple[Enricher, ...] = ()
    if settings.enrichment_enabled:
        steps = default_steps(rules.tags_attributes) + floor_label_steps(
            floor=settings.enrichment_floor, labels=settings.enrichment_labels
        )
    if settings.track_renames:
        steps = (*steps, registry_id_tag)
    return steps
