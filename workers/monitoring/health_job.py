"""The I/O half of beat's health job: read Redis and the broker, store the report.

A few pipelined round trips per run, whatever the number of entities. The computation itself is
pure (core/health_beat.py, then the one report builder, core/health_report.py); `ha-ingestor
status` runs the same code without storing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from config.broker_kind import BrokerKind
from config.destinations import DEFAULT_NAME, load_destinations
from config.redaction import scrub
from config.redis_keys import BEAT_STATE_TTL_S, RedisKeys
from config.settings import Settings
from core import json_codec
from core.fleet_view import HOME_COUNTERS, HOME_MAPS, HomeReadings, combined
from core.health_beat import Readings, StoreReadings, beat_figures
from core.health_check import Thresholds
from core.health_report import BeatFigures, build_report
from core.listener_figures import ListenerFigures
from core.queue_trend import QueueProgress, QueueReading
from core.rates import window_count
from core.task_message import received_at_of
from workers.consumers import bulk_queue
from workers.stores.backlog import oldest_received_at
from workers.stores.dead_letters import DROPPED, TOO_OLD_DURING_OUTAGE

log = logging.getLogger(__name__)

BACKLOGGED = "backlogged"
BUCKET_COUNTERS = ("written", "retries", "write_errors", DROPPED, BACKLOGGED)
"""The workers' counters at the prefix level (the listener's are its home's: HOME_COUNTERS)."""
DEAD_LETTERED = "dead_lettered"
TOTALS = (
    "written", "retries", "write_errors", DEAD_LETTERED, DROPPED, "type_shadowed", "text_left_out",
    BACKLOGGED,
)  # fmt: skip
STORE_BUCKETS = ("written", "retries", "write_errors", DEAD_LETTERED, DROPPED, BACKLOGGED)
"""The counters a destination with keys of its own has (its share of the workers')."""
BUCKET_MINUTES = 120
"""Counters are read back two hours (their TTL): enough for "usual" after a long silence."""
MAP_MINUTES = 16
PRIORITY_SEPARATOR = "\x06\x16"
KOMBU_PRIORITY_STEPS = (3, 6, 9)


class QueueProbe(Protocol):
    def read(self) -> QueueReading: ...


class RedisQueueProbe:
    """Depth, in-flight count and oldest event of a Celery queue on a Redis broker (kombu)."""

    def __init__(
        self, client: redis.Redis, queue: str, secrets: list[str], *, bulk_take: bool = True
    ) -> None:
        self._redis = client
        self._queue = queue
        self._secrets = secrets
        self._bulk_take = bulk_take
        """Workers keep liveness keys only when they take in bulk (WORKER_BULK_TAKE)."""

    def read(self) -> QueueReading:
        queue = self._queue
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.llen(queue)
            for step in KOMBU_PRIORITY_STEPS:
                pipe.llen(f"{queue}{PRIORITY_SEPARATOR}{step}")
            pipe.zcard("unacked_index")
            pipe.lindex(queue, -1)  # kombu pushes on the left, consumers pop on the right
            pipe.zrange("unacked_index", 0, 0)
            depth, *priority, in_flight, oldest_waiting, oldest_tag = pipe.execute()
            oldest_taken = self._redis.hget("unacked", oldest_tag[0]) if oldest_tag else None
            by_consumer = bulk_queue.in_flight(self._redis)
            oldest_bulk = bulk_queue.oldest_in_flight(self._redis, by_consumer)
            given_back = bulk_queue.given_back(self._redis)
            alive = bulk_queue.alive(self._redis) if self._bulk_take else None
        except redis.RedisError as exc:
            return QueueReading(error=scrub(f"{type(exc).__name__}: {exc}", self._secrets))
        taken = (received_at_of(oldest_waiting), received_at_of(oldest_taken), *map(
            received_at_of, oldest_bulk))  # fmt: skip
        times = [t for t in taken if t]
        return QueueReading(
            depth=int(depth) + sum(int(n) for n in priority),
            in_flight=int(in_flight) + sum(by_consumer.values()),
            oldest_received_at=min(times) if times else None,
            in_flight_by_consumer=by_consumer,
            given_back=given_back,
            workers_alive=alive,
        )

    def give_back_silent(self) -> dict[str, int]:
        """Beat's sweep: the messages of workers that stopped renewing their liveness key go
        back to the queue, even when no other worker runs to do it."""
        return bulk_queue.sweep(self._redis)


class AmqpQueueProbe:
    """Depth of a RabbitMQ queue (the broker does not say how old its messages are)."""

    def __init__(self, url: str, queue: str, secrets: list[str]) -> None:
        self._url = url
        self._queue = queue
        self._secrets = secrets

    def read(self) -> QueueReading:
        from kombu.connection import Connection

        try:
            with Connection(self._url, connect_timeout=3) as connection:  # type: ignore[no-untyped-call]
                _, depth, consumers = connection.default_channel.queue_declare(
                    queue=self._queue, passive=True
                )
        except Exception as exc:  # noqa: BLE001 - any failure is reported, never raised
            return QueueReading(error=scrub(f"{type(exc).__name__}: {exc}", self._secrets))
        return QueueReading(depth=int(depth), workers_alive=int(consumers))


def quick_client(url: str, timeout: float) -> redis.Redis:
    """A client that fails at once instead of retrying: a health check reports, it waits not."""
    return redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )


def queue_probe(settings: Settings) -> QueueProbe:
    """The probe for the configured broker."""
    url = settings.celery_broker_url.get_secret_value()
    secrets = settings.secrets()
    if settings.broker_kind is BrokerKind.REDIS:
        return RedisQueueProbe(
            quick_client(url, 3.0),
            settings.celery_queue,
            secrets,
            bulk_take=settings.worker_bulk_take,
        )
    return AmqpQueueProbe(url, settings.celery_queue, secrets)


class Monitor:
    """Reads, computes and (for beat) stores the health summary."""

    def __init__(
        self,
        settings: Settings,
        client: redis.Redis,
        probe: QueueProbe,
        clock: Callable[[], float] = time.time,
        *,
        destinations: tuple[str, ...] = (DEFAULT_NAME,),
    ) -> None:
        self._redis = client
        self._keys = RedisKeys(settings.redis_prefix)
        self._destinations = destinations
        """The configured destinations' names: each one's counters, stores and backlog."""
        self._probe = probe
        self._clock = clock
        self._secrets = settings.secrets()
        self.thresholds = Thresholds.from_settings(settings)

    @classmethod
    def from_settings(cls, settings: Settings) -> Monitor:
        return cls(
            settings,
            quick_client(settings.state_redis_url(), 5.0),
            queue_probe(settings),
            destinations=load_destinations(settings).names(),
        )

    def run(self) -> dict[str, Any]:
        """Beat's job: give back what silent workers held, then compute and store the report,
        the rates and beat's record of the queue."""
        self._give_back_silent()
        readings, figures, progress = self._figures()
        report = self._report(readings, figures, beat_ran_at=readings.now)
        ttl = int(10 * self.thresholds.beat_interval_s + 60)
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(self._keys.health(), json_codec.dumps(report), ex=ttl)
        pipe.set(self._keys.rates(), json_codec.dumps(_rates(figures)), ex=ttl)
        pipe.set(
            self._keys.beat_state(), json_codec.dumps(progress.to_document()), ex=BEAT_STATE_TTL_S
        )
        pipe.execute()
        return report

    def _give_back_silent(self) -> None:
        sweep = getattr(self._probe, "give_back_silent", None)
        if sweep is None:
            return
        try:
            given = sweep()
        except redis.RedisError as exc:
            log.warning("beat: could not sweep silent workers yet (%s)", type(exc).__name__)
            return
        for consumer, count in given.items():
            log.warning(
                "beat: %d messages taken by worker %s, which stopped responding, are back in "
                "the queue",
                count,
                consumer,
            )

    def compute(self) -> tuple[dict[str, Any], QueueProgress]:
        """Beat's report as of now and its next record of the queue, storing neither."""
        readings, figures, progress = self._figures()
        return self._report(readings, figures, beat_ran_at=readings.now), progress

    def status(self) -> dict[str, Any]:
        """The report afresh, judging beat by the report it last stored (`ha-ingestor status`)."""
        stored = BeatFigures.from_report(_json(self._redis.get(self._keys.health())))
        readings, figures, _ = self._figures()
        return self._report(readings, figures, beat_ran_at=stored.computed_at if stored else None)

    def _figures(self) -> tuple[Readings, BeatFigures, QueueProgress]:
        readings, progress = self.read()
        figures, progress = beat_figures(readings, progress, self.thresholds)
        return readings, figures, progress

    def _report(
        self, readings: Readings, figures: BeatFigures, *, beat_ran_at: float | None
    ) -> dict[str, Any]:
        return build_report(
            readings.now, readings.listener, figures, self.thresholds, beat_ran_at=beat_ran_at
        )

    def read(self) -> tuple[Readings, QueueProgress | None]:
        """Everything the computation needs, in a few pipelined round trips, whatever the
        number of homes (every home's keys are read in one pipeline)."""
        keys = self._keys
        queue = self._probe.read()
        now = self._clock()
        minute = int(now // 60)
        minutes = list(range(minute - BUCKET_MINUTES + 1, minute + 1))
        homes = self._read_homes(minutes)
        fleet = combined(homes) if homes else self._read_home(keys, minutes)
        names = (*BUCKET_COUNTERS, DEAD_LETTERED)
        pipe = self._redis.pipeline(transaction=False)
        pipe.mget([keys.counter_bucket(n, m) for n in names for m in minutes])
        pipe.mget([keys.counter(n) for n in TOTALS])
        pipe.get(keys.last_write_error())
        pipe.get(keys.beat_state())
        pipe.xlen(keys.dead_letters())
        pipe.xlen(keys.outage_letters())
        bucket_values, total_values, last_error, memory_raw, stored, outage = pipe.execute()
        buckets = {name: dict(by_minute) for name, by_minute in fleet.buckets.items()}
        values = iter(bucket_values)
        for name in names:
            buckets[name] = {m: int(v) for m, v in zip(minutes, values, strict=False) if v}
        readings = Readings(
            now=now,
            listener=fleet.listener,
            buckets=buckets,
            maps=fleet.maps,
            homes=homes,
            totals={n: int(v or 0) for n, v in zip(TOTALS, total_values, strict=True)},
            dead_letter_reasons=self._dead_letter_reasons(buckets[DEAD_LETTERED], now, keys),
            queue=queue,
            last_write_error=scrub(_text(last_error), self._secrets) if last_error else None,
            dead_letters_stored=int(stored),
            outage_letters_stored=int(outage),
        )
        shared = readings.prefix_store()
        readings = replace(
            readings,
            destinations=self._store_readings(shared, minutes, now),
            shared_store=next(
                (n for n in self._destinations if keys.for_destination(n) == keys), None
            ),
        )
        progress = QueueProgress.from_document(json_codec.loads(memory_raw)) if memory_raw else None
        return readings, progress

    def _read_homes(self, minutes: list[int]) -> dict[str, HomeReadings]:
        """Every home of the `homes` hash, read under its own keys in one pipelined round trip
        (empty when none is listed: a listener of before home names writes at the prefix
        level)."""
        listed = sorted((_text(name), _seen(seen)) for name, seen in self._redis.hgetall(
            self._keys.homes()).items())  # fmt: skip
        if not listed:
            return {}
        pipe = self._redis.pipeline(transaction=False)
        for name, _ in listed:
            self._ask_home(pipe, self._keys.for_home(name), minutes)
        replies = iter(pipe.execute(raise_on_error=False))
        return {
            name: replace(self._home_from(replies, minutes), last_seen_at=seen)
            for name, seen in listed
        }

    def _read_home(self, keys: RedisKeys, minutes: list[int]) -> HomeReadings:
        """The prefix-level listener keys (a listener of before home names), as one home's."""
        pipe = self._redis.pipeline(transaction=False)
        self._ask_home(pipe, keys, minutes)
        return self._home_from(iter(pipe.execute(raise_on_error=False)), minutes)

    @staticmethod
    def _ask_home(pipe: redis.client.Pipeline, keys: RedisKeys, minutes: list[int]) -> None:
        """One home's state, its counters' buckets and its map buckets, added to `pipe`."""
        pipe.get(keys.listener_state())
        pipe.mget([keys.counter_bucket(n, m) for n in HOME_COUNTERS for m in minutes])
        for name in HOME_MAPS:
            for m in minutes[-MAP_MINUTES:]:
                pipe.hgetall(keys.counter_map_bucket(name, m))

    @staticmethod
    def _home_from(replies: Iterator[Any], minutes: list[int]) -> HomeReadings:
        """One home's readings from its share of the replies (`_ask_home`'s order)."""
        map_minutes = minutes[-MAP_MINUTES:]
        count = 2 + len(HOME_MAPS) * len(map_minutes)
        state, bucket_values, *map_values = _results([next(replies) for _ in range(count)])
        values = iter(bucket_values)
        buckets = {
            name: {m: int(v) for m, v in zip(minutes, values, strict=False) if v}
            for name in HOME_COUNTERS
        }
        maps: dict[str, dict[int, dict[str, int]]] = {}
        hashes = iter(map_values)
        for name in HOME_MAPS:
            maps[name] = {}
            for m in map_minutes:
                counts = {_text(k): int(v) for k, v in next(hashes).items()}
                if counts:
                    maps[name][m] = counts
        return HomeReadings(ListenerFigures.from_json(state), None, buckets, maps)

    def _store_readings(
        self, shared: StoreReadings, minutes: list[int], now: float
    ) -> dict[str, StoreReadings]:
        """Each destination's counters, stores and backlog, in one pipelined round trip (the
        prefix-level counters, read already, are those of the destination whose keys they
        are)."""
        pipe = self._redis.pipeline(transaction=False)
        scoped = [(name, self._keys.for_destination(name)) for name in self._destinations]
        for _, keys in scoped:
            pipe.get(keys.backlog_events())
            pipe.exists(keys.parked())
            pipe.lindex(keys.backlog(), 0)
            if keys == self._keys:
                continue
            pipe.mget([keys.counter_bucket(n, m) for n in STORE_BUCKETS for m in minutes])
            pipe.mget([keys.counter(n) for n in STORE_BUCKETS])
            pipe.get(keys.last_write_error())
            pipe.xlen(keys.dead_letters())
            pipe.xlen(keys.outage_letters())
        replies = iter(pipe.execute())
        out: dict[str, StoreReadings] = {}
        for name, keys in scoped:
            events, parked, oldest = next(replies), next(replies), next(replies)
            own = shared if keys == self._keys else self._own_readings(keys, replies, minutes, now)
            out[name] = replace(
                own,
                backlog_events=int(events or 0),
                parked=bool(parked),
                oldest_backlog_at=oldest_received_at(oldest),
            )
        return out

    def _own_readings(
        self, keys: RedisKeys, replies: Iterator[Any], minutes: list[int], now: float
    ) -> StoreReadings:
        """A destination's counters and stores, from its share of the pipeline's replies."""
        bucket_values, total_values, last_error, stored, outage = (next(replies) for _ in range(5))
        values = iter(bucket_values)
        buckets = {
            n: {m: int(v) for m, v in zip(minutes, values, strict=False) if v}
            for n in STORE_BUCKETS
        }
        return StoreReadings(
            buckets=buckets,
            totals={n: int(v or 0) for n, v in zip(STORE_BUCKETS, total_values, strict=True)},
            dead_letter_reasons=self._dead_letter_reasons(buckets[DEAD_LETTERED], now, keys),
            last_write_error=scrub(_text(last_error), self._secrets) if last_error else None,
            dead_letters_stored=int(stored),
            outage_letters_stored=int(outage),
        )

    def _dead_letter_reasons(
        self, buckets: dict[int, int], now: float, keys: RedisKeys
    ) -> dict[str, int]:
        """Dead letters per reason in the window; looked up only when there are any."""
        window = self.thresholds.window_s
        if not window_count(buckets, now, window):
            return {}
        prefix = keys.counter(f"{DEAD_LETTERED}:")
        reasons = sorted(
            reason
            for key in self._redis.scan_iter(f"{prefix}*", count=500)
            if (reason := _text(key)[len(prefix) :]) != TOO_OLD_DURING_OUTAGE
        )
        minute = int(now // 60)
        minutes = list(range(int((now - window) // 60), minute + 1))
        out: dict[str, int] = {}
        for reason in reasons:
            name = f"{DEAD_LETTERED}:{reason}"
            values = self._redis.mget([keys.counter_bucket(name, m) for m in minutes])
            count = sum(int(v or 0) for v in values)
            if count:
                out[reason] = count
        return out


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _results(results: list[Any]) -> list[Any]:
    """The pipeline's replies, the listener's state first. A listener older than its JSON state
    leaves a hash there (WRONGTYPE): that reads as no state until it is upgraded; any other
    error is raised."""
    state, *rest = results
    for reply in rest:
        if isinstance(reply, Exception):
            raise reply
    if isinstance(state, redis.ResponseError):
        state = None
    elif isinstance(state, Exception):
        raise state
    return [state, *rest]


def _seen(raw: bytes | str) -> float | None:
    """A home's last report time as the `homes` hash holds it."""
    try:
        return float(_text(raw))
    except ValueError:
        return None


def _json(raw: bytes | str | None) -> Any:
    try:
        return json_codec.loads(raw) if raw else None
    except ValueError:
        return None


def _rates(figures: BeatFigures) -> dict[str, Any]:
    """The `rates` key: beat's event rates on their own (as they always were)."""
    return {
        "computed_at": figures.computed_at,
        "events_per_minute": figures.events_per_minute,
        "usual_per_minute": figures.usual_per_minute,
        **figures.rates,
        "written_per_minute": figures.written_per_minute,
    }
