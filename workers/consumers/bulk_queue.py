"""A Redis queue taken from in bulk, with an in-flight list per consumer: the Redis half of
workers/consumers/redis_taker.py.

Why. kombu takes one message per round trip and keeps three Redis records per message (95% of
a worker's CPU, measured). Here one Lua script moves up to N messages from the queue
into this consumer's in-flight list and returns them; one more removes the batch once it is
written. A message is always in Redis: in the queue or in one consumer's in-flight list.

Liveness. A consumer keeps a key with a short TTL alive (from a thread of its own, so a batch
stuck in InfluxDB retries does not stop it); any consumer, and beat, moves the in-flight
messages of a consumer whose key ran out back to the head of the queue (`sweep`).

Out of memory. Redis at `maxmemory` with `noeviction` refuses "denyoom" commands (LPUSH, LMOVE,
BLMOVE, SET) and scripts that could write, unless a script declares `allow-oom` (Redis 7
function flags, `#!lua flags=allow-oom`). Every script here only moves or deletes what is
already stored (plus one small liveness key and a counter), so each declares it: at a full
broker workers keep taking and acknowledging, which is what frees memory. BLMOVE, used to wait
on an empty queue, is refused then; the caller falls back to polling (an empty queue is never
the full one).

Lost replies. `take` returns the whole in-flight list, not only what it just moved: messages
whose reply a broken connection lost (a take, or a BLMOVE) come back with the next take,
instead of waiting in a live consumer's list.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import redis

from config.redis_keys import broker_alive, broker_consumers, broker_given_back, broker_inflight

_FLAGS = "#!lua flags=allow-oom\n"

# KEYS: queue, in-flight. ARGV: how many at most, how many of the in-flight list the caller
# holds already (the first ones). Oldest first (the queue's right end). Only what the caller
# does not hold comes back: returning the whole list on every take of a batch filling up at a
# live rate made the batch quadratic (182 µs of Redis CPU per event at 2,000 events/s).
_TAKE = (
    _FLAGS
    + """
local want = tonumber(ARGV[1]) - redis.call('LLEN', KEYS[2])
for _ = 1, want do
  if not redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'RIGHT') then break end
end
return redis.call('LRANGE', KEYS[2], tonumber(ARGV[2]), -1)
"""
)

# KEYS: queue, in-flight. ARGV: messages to give back (to the queue's tail, as a rejection
# with requeue does). The batch is done: the in-flight list goes.
_FINISH = (
    _FLAGS
    + """
for i = 1, #ARGV do redis.call('LPUSH', KEYS[1], ARGV[i]) end
redis.call('DEL', KEYS[2])
return #ARGV
"""
)

# KEYS: liveness key, consumers hash. ARGV: TTL (s), consumer id, queue.
_RENEW = (
    _FLAGS
    + """
redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
"""
)

# KEYS: in-flight, liveness key, queue, consumers hash, given-back counter. ARGV: consumer id.
# A consumer whose liveness key exists is left alone (-1). Messages go back to the head of the
# queue (the right end, taken next), oldest last so it is taken first.
_SWEEP = (
    _FLAGS
    + """
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
local moved = 0
while redis.call('LMOVE', KEYS[1], KEYS[3], 'RIGHT', 'RIGHT') do moved = moved + 1 end
redis.call('HDEL', KEYS[4], ARGV[1])
if moved > 0 then redis.call('INCRBY', KEYS[5], moved) end
return moved
"""
)


MIN_REDIS_VERSION = (7, 0)
"""Script flags (`#!lua flags=allow-oom`) arrived in Redis 7.0; older servers refuse the scripts."""


def too_old_for_bulk_take(info: Mapping[str, Any]) -> tuple[str, str] | None:
    """(what is wrong, what to do) when the Redis whose INFO this is cannot run the bulk take's
    scripts; None when it can, or does not say its version. The one reader of the version:
    the worker's start-up refuses with it, `ha-ingestor check` reports it."""
    version = str(info.get("redis_version", ""))
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if not parts or parts >= MIN_REDIS_VERSION:
        return None
    wanted = ".".join(map(str, MIN_REDIS_VERSION))
    return (
        f"runs Redis {version}, and the workers' bulk take needs Redis {wanted} or newer (its "
        "scripts declare allow-oom, so a full Redis still drains)",
        f"Upgrade the broker's Redis to {wanted} or newer (Debian 12 ships 7.0), or set "
        "WORKER_BULK_TAKE=false: Celery's stock consumer, over 10x the CPU per event, and a "
        "killed worker's messages come back only after WORKER_HOLD_TIMEOUT",
    )


def is_oom(exc: redis.ResponseError) -> bool:
    """Redis refused a command because it is at maxmemory (noeviction)."""
    return isinstance(exc, redis.exceptions.OutOfMemoryError) or "maxmemory" in str(exc)


class BulkQueue:
    """One consumer's view of a queue: take in bulk, finish a batch, stay alive, sweep."""

    def __init__(self, client: redis.Redis, queue: str, consumer_id: str, ttl: float) -> None:
        self.client = client
        self.queue = queue
        self.consumer_id = consumer_id
        self.ttl = max(1, round(ttl))
        self.inflight_key = broker_inflight(consumer_id)
        self.alive_key = broker_alive(consumer_id)
        self._take = client.register_script(_TAKE)
        self._finish = client.register_script(_FINISH)
        self._renew = client.register_script(_RENEW)
        self._sweep = client.register_script(_SWEEP)

    def take(self, most: int, have: int = 0) -> list[bytes]:
        """The in-flight list past the `have` messages the caller holds, after moving up to
        `most` in all into it, oldest first: with have=0, also any left there by a lost
        reply."""
        return cast(
            list[bytes], self._take(keys=[self.queue, self.inflight_key], args=[most, have])
        )

    def wait(self, timeout: float) -> bool:
        """Block until a message arrives (moved into the in-flight list) or `timeout` passes.
        False also when Redis is out of memory (BLMOVE is refused): the caller polls then."""
        try:
            # redis-py types the timeout as int; Redis takes decimal seconds (6.0+).
            moved = self.client.execute_command(  # type: ignore[no-untyped-call]
                "BLMOVE", self.queue, self.inflight_key, "RIGHT", "RIGHT", max(0.01, timeout)
            )
        except redis.ResponseError as exc:
            if not is_oom(exc):
                raise
            return False
        return moved is not None

    def finish(self, give_back: list[bytes]) -> None:
        """The batch is done: drop it from the in-flight list, `give_back` to the queue."""
        self._finish(keys=[self.queue, self.inflight_key], args=give_back)

    def renew(self) -> None:
        """This consumer is alive for another TTL."""
        self._renew(
            keys=[self.alive_key, broker_consumers()],
            args=[self.ttl, self.consumer_id, self.queue],
        )

    def retire(self) -> int:
        """This consumer stops: its in-flight messages (normally none) go back."""
        self.client.delete(self.alive_key)
        return sweep_one(self.client, self.consumer_id, self.queue, self._sweep)


def sweep_one(client: redis.Redis, consumer: str, queue: str, script: Any = None) -> int:
    """Give back what `consumer` has in flight if its liveness key ran out; -1 if alive."""
    run = script or client.register_script(_SWEEP)
    keys = [broker_inflight(consumer), broker_alive(consumer), queue, broker_consumers(),
            broker_given_back()]  # fmt: skip
    return int(run(keys=keys, args=[consumer]))


def sweep(client: redis.Redis, skip: str | None = None) -> dict[str, int]:
    """Give back the in-flight messages of every consumer that stopped renewing its liveness
    key; returns consumer id → messages given back (only those that gave some back)."""
    script = client.register_script(_SWEEP)
    given: dict[str, int] = {}
    for raw_id, raw_queue in client.hgetall(broker_consumers()).items():
        consumer = _text(raw_id)
        if consumer == skip:
            continue
        moved = sweep_one(client, consumer, _text(raw_queue), script)
        if moved > 0:
            given[consumer] = moved
    return given


def in_flight(client: redis.Redis) -> dict[str, int]:
    """Consumer id → messages in its in-flight list, for every registered consumer."""
    consumers = [_text(c) for c in client.hkeys(broker_consumers())]
    pipe = client.pipeline(transaction=False)
    for consumer in consumers:
        pipe.llen(broker_inflight(consumer))
    return {c: int(n) for c, n in zip(consumers, pipe.execute(), strict=True)}


def oldest_in_flight(client: redis.Redis, counts: dict[str, int]) -> list[bytes]:
    """The oldest message in each non-empty in-flight list (for the age of the oldest event)."""
    busy = [c for c, n in counts.items() if n]
    if not busy:
        return []
    pipe = client.pipeline(transaction=False)
    for consumer in busy:
        pipe.lindex(broker_inflight(consumer), 0)
    return [raw for raw in pipe.execute() if raw is not None]


def alive(client: redis.Redis) -> int:
    """Registered consumers whose liveness key is set: the workers taking from Redis now."""
    consumers = [_text(c) for c in client.hkeys(broker_consumers())]
    if not consumers:
        return 0
    return int(client.exists(*[broker_alive(c) for c in consumers]))


def given_back(client: redis.Redis) -> int:
    """Messages sweeps gave back since the broker's Redis was created."""
    return int(client.get(broker_given_back()) or 0)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
