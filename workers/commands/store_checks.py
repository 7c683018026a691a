"""`ha-ingestor check`'s checks of the stores the workers use: the broker, Redis and InfluxDB.

Each goes through the workers' own adapters where they have one (the InfluxDB sinks' empty
write, the bulk take's Redis version rule), so a pass here means the workers will work.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import redis
from kombu.connection import Connection

from config.broker_kind import BrokerKind
from config.check_outcome import CHECK_TIMEOUT_S, Outcome
from config.redaction import redact_url
from workers.consumers.bulk_queue import too_old_for_bulk_take
from workers.sinks.errors import SinkUnavailable
from workers.sinks.influx_sink import make_sink
from workers.sinks.victoria_sink import looks_like_victoria

if TYPE_CHECKING:
    from config.destinations import Destination
    from config.settings import Settings


def check_broker(settings: Settings) -> Outcome:
    url = settings.celery_broker_url.get_secret_value()
    if settings.broker_kind is BrokerKind.REDIS:
        return _check_redis_url("broker", url, "CELERY_BROKER_URL", settings, queue=True)
    try:
        with Connection(url, connect_timeout=CHECK_TIMEOUT_S) as connection:  # type: ignore[no-untyped-call]
            connection.ensure_connection(max_retries=1)
    except Exception as exc:  # noqa: BLE001 - kombu raises many kinds; all mean "unreachable"
        return Outcome(
            "broker",
            False,
            f"cannot connect to {redact_url(url)}: {type(exc).__name__}: {exc}",
            "check the host, port, user, password and vhost in CELERY_BROKER_URL and that the "
            "broker runs",
        )
    return Outcome("broker", True, f"{redact_url(url)} accepts connections")


def check_redis(settings: Settings) -> Outcome:
    variable = "REDIS_URL" if settings.redis_url is not None else "CELERY_BROKER_URL"
    return _check_redis_url("Redis", settings.state_redis_url(), variable, settings)


def _check_redis_url(
    name: str, url: str, variable: str, settings: Settings, *, queue: bool = False
) -> Outcome:
    shown = redact_url(url)
    client = redis.Redis.from_url(url, socket_timeout=CHECK_TIMEOUT_S, socket_connect_timeout=5)
    probe = f"{settings.redis_prefix}check:{uuid.uuid4().hex}"
    try:
        client.ping()
        client.set(probe, "1", ex=10)
        client.delete(probe)
        depth = int(client.llen(settings.celery_queue)) if queue else None
        info = client.info()
    except redis.RedisError as exc:
        detail, fix = _redis_refusal(
            exc, shown, variable, has_password=bool(urlsplit(url).password)
        )
        return Outcome(name, False, detail, fix)
    finally:
        client.close()
    version = str(info.get("redis_version", "?"))
    problem = _broker_problem(info, settings, shown, version) if queue else None
    if problem is not None:
        detail, fix = problem
        return Outcome(name, False, detail, fix)
    waiting = f"; queue {settings.celery_queue}: {depth:,} waiting" if depth is not None else ""
    memory = f"; memory {memory_text(info)}" if queue else ""
    return Outcome(
        name, True, f"{shown} (Redis {version}) answers and accepts writes{waiting}{memory}"
    )


def _redis_refusal(
    exc: redis.RedisError, shown: str, variable: str, *, has_password: bool
) -> tuple[str, str]:
    """What a Redis error during the check means, and what to do about it."""
    needs_password = (f"{shown} requires a password", f"add it to {variable}: " + _URL_FORM)
    if isinstance(exc, redis.AuthenticationError):
        if not has_password:
            return needs_password
        return (
            f"{shown} refused the credentials ({exc})",
            f"put the right password in {variable} ({_URL_FORM})",
        )
    if isinstance(exc, redis.ResponseError):
        if "NOAUTH" in str(exc):
            return needs_password
        if "READONLY" in str(exc):
            return f"{shown} is a read-only replica", f"point {variable} at the primary"
        return f"{shown}: {exc}", f"check {variable}"
    if isinstance(exc, redis.ConnectionError):
        return (
            f"cannot connect to {shown} ({exc})",
            f"start Redis or correct the host and port in {variable}",
        )
    return f"{shown}: {type(exc).__name__}: {exc}", f"check {variable}"


def _broker_problem(
    info: Mapping[str, Any], settings: Settings, shown: str, version: str
) -> tuple[str, str] | None:
    """Why the broker's Redis will not do (too old for the bulk take, which names the version
    itself, or could lose waiting events), and the fix; None when it will."""
    too_old = too_old_for_bulk_take(info) if settings.worker_bulk_take else None
    if too_old is not None:
        detail, fix = too_old
        return f"{shown} {detail}", fix
    problem = durability_problem(info)
    if problem is None:
        return None
    detail, fix = problem
    return f"{shown} (Redis {version}) {detail}", fix


_URL_FORM = "redis://:PASSWORD@host:6379/0"


def durability_problem(info: Mapping[str, Any]) -> tuple[str, str] | None:
    """Why the broker's Redis could lose waiting events, and the fix; None when it cannot.

    The queue is where events wait while InfluxDB is down: an eviction policy other than
    `noeviction` deletes them when memory is full, and without the append-only file a Redis
    restart loses them all.
    """
    policy = str(info.get("maxmemory_policy", "noeviction"))
    if policy != "noeviction":
        return (
            f"evicts keys when its memory is full (maxmemory-policy {policy}): waiting events "
            "would be deleted",
            "set `maxmemory-policy noeviction` in redis.conf (now: `redis-cli CONFIG SET "
            "maxmemory-policy noeviction`); when full, the listener then keeps events in its spool",
        )
    if str(info.get("aof_enabled", "0")) != "1":
        return (
            "keeps the queue in memory only (appendonly no): a Redis restart loses every "
            "waiting event",
            "turn on append-only persistence: `appendonly yes` in redis.conf (now: `redis-cli "
            "CONFIG SET appendonly yes`)",
        )
    return None


def memory_text(info: Mapping[str, Any]) -> str:
    """`12 MB of 1,024 MB (1%)`, or `12 MB, no maxmemory` when Redis may grow unbounded."""
    used = int(info.get("used_memory", 0)) / 2**20  # MB as Redis counts them (maxmemory 64mb)
    limit = int(info.get("maxmemory", 0)) / 2**20
    if not limit:
        return f"{used:,.0f} MB, no maxmemory set (Redis grows until the host runs out)"
    return f"{used:,.0f} MB of {limit:,.0f} MB ({100 * used / limit:.0f}%)"


def check_destinations(settings: Settings) -> list[Outcome]:
    """Each destination's check; none when the destinations cannot be read (the configuration
    check says why)."""
    from config.destinations import load_destinations
    from core.rules import RulesError

    try:
        destinations = load_destinations(settings)
    except RulesError:
        return []
    return [check_destination(d, alone=not destinations.several) for d in destinations.all]


def check_destination(destination: Destination, *, alone: bool = True) -> Outcome:
    """Reachable, credentials accepted, and allowed to write: the sink's empty write, whose
    refusals say what to fix exactly as the workers' errors do. `alone`: the only destination
    (named as before destinations existed, its fixes naming INFLUXDB_*)."""
    d = destination
    product = "VictoriaMetrics" if d.kind == "victoriametrics" else "InfluxDB"
    name = product if alone else f"{product} {d.name}"
    where = "INFLUXDB_URL" if d.is_default else f"the url of destination {d.name!r}"
    sink = make_sink(d, "ns")
    try:
        refusal = sink.probe()
    except SinkUnavailable as exc:
        return Outcome(
            name, False, str(exc), f"start {product} or correct {where} (scheme, host and port)"
        )
    finally:
        sink.close()
    if refusal is not None:
        return Outcome(name, False, d.in_own_words(refusal.problem), d.in_own_words(refusal.fix))
    url = redact_url(d.url)
    if d.kind == "influxdb3":
        return Outcome(
            name, True, f"{url} (InfluxDB 3) answers /health and takes the token; writes go to "
            f"{sink.target}",
        )  # fmt: skip
    if d.kind == "influxdb" and looks_like_victoria(d.url, timeout=CHECK_TIMEOUT_S):
        # It accepts the writes, and stores every text field (on/off, home/away) as 0.
        fix = (
            "set INFLUXDB_KIND=victoriametrics"
            if d.is_default
            else f"set `kind: victoriametrics` on destination {d.name!r}"
        )
        return Outcome(
            name,
            False,
            f"{url} is VictoriaMetrics, not InfluxDB: it would store every text state as 0",
            f"{fix} (texts are then written as labels)",
        )
    return Outcome(name, True, f"{url} accepts writes to {sink.target}")
