"""A destination's backlog: what waits for it alone while it is unavailable and others are not.

With several destinations the broker's message is acknowledged once every destination has it:
written, skipped, dead-lettered, or kept here. A destination that cannot take writes is
*parked*: workers add each batch's messages for it here instead of waiting, so the others keep
their latency, and the drainer (workers/destinations.py) writes them oldest first once it
answers again.

Kept as economically as the outage store: one Redis list entry per batch, the batch's task
messages as one zlib-compressed JSON array (a batch of similar events compresses far better
together than each alone). Nothing is ever trimmed. A counter beside the list says how many
messages it holds, for /health and `status` without reading the list.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import redis

from config.redis_keys import RedisKeys
from core import json_codec
from core.task_message import Undecodable

COMPRESSION_LEVEL: Final = 6

# KEYS: list, events counter, parked flag. Unparks only an empty backlog, atomically, so a
# batch added in between is never left behind an unparked destination unseen.
_UNPARK_IF_EMPTY: Final = """
if redis.call('LLEN', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[3])
  redis.call('SET', KEYS[2], 0)
  return 1
end
return 0
"""

# KEYS: list, events counter; ARGV: the chunk as read, messages gone from it, [its new form].
# Only while the chunk is still first: a drainer whose lock lapsed during a slow write must not
# overwrite or remove the chunk after it (another drainer finished its own meanwhile).
_SETTLE_FIRST: Final = """
if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[1] then
  return 0
end
if ARGV[3] then
  redis.call('LSET', KEYS[1], 0, ARGV[3])
else
  redis.call('LPOP', KEYS[1])
end
redis.call('DECRBY', KEYS[2], ARGV[2])
return 1
"""


@dataclass(frozen=True, slots=True)
class Chunk:
    """The oldest batch of a backlog, as added."""

    raw: bytes
    """Its stored form: what `finish` and `replace` compare to, so a chunk is only changed by
    the drainer that read it."""
    messages: list[Any]


def oldest_received_at(raw: bytes | None) -> float | None:
    """When the first event of a stored chunk (the backlog's oldest) was received; None when
    there is no chunk or it cannot be read (beat's `lag_s`, never a failure)."""
    if raw is None:
        return None
    try:
        messages = json_codec.loads(zlib.decompress(raw))
        times = [float(m["received_at"]) for m in messages if isinstance(m, dict)]
    except (ValueError, KeyError, TypeError, zlib.error):
        return None
    return min(times) if times else None


class Backlog:
    """One destination's backlog and its parked flag."""

    def __init__(self, client: redis.Redis, keys: RedisKeys) -> None:
        self._redis = client
        self._list = keys.backlog()
        self._events = keys.backlog_events()
        self._parked = keys.parked()
        self.lock_key = keys.drain_lock()
        """Held by the one worker draining this backlog (workers/destinations.py Drainer)."""
        self._unpark = client.register_script(_UNPARK_IF_EMPTY)
        self._settle = client.register_script(_SETTLE_FIRST)

    def add(self, messages: Sequence[Any]) -> None:
        """Keep these messages for the destination (raises redis errors: then nothing was)."""
        if not messages:
            return
        plain = [m.excerpt if isinstance(m, Undecodable) else m for m in messages]
        packed = zlib.compress(json_codec.dumps(plain, default=str), COMPRESSION_LEVEL)
        pipe = self._redis.pipeline(transaction=True)
        pipe.rpush(self._list, packed)
        pipe.incrby(self._events, len(plain))
        pipe.execute()

    def park(self, why: str) -> None:
        """From now on every worker adds batches here until the drainer empties it."""
        self._redis.set(self._parked, json_codec.dumps({"since": time.time(), "why": why[:500]}))

    def parked(self) -> bool:
        return bool(self._redis.exists(self._parked))

    def oldest(self) -> Chunk | None:
        raw: Any = self._redis.lindex(self._list, 0)
        if raw is None:
            return None
        return Chunk(raw, json_codec.loads(zlib.decompress(raw)))

    def finish(self, chunk: Chunk) -> None:
        """The chunk is written (or dead-lettered): remove it (if still first)."""
        self._settle(keys=[self._list, self._events], args=[chunk.raw, len(chunk.messages)])

    def replace(self, chunk: Chunk, unfinished: Sequence[Any]) -> Chunk:
        """Part of the chunk is written: keep only the rest, in its place (if still first)."""
        packed = zlib.compress(json_codec.dumps(list(unfinished), default=str), COMPRESSION_LEVEL)
        gone = len(chunk.messages) - len(unfinished)
        self._settle(keys=[self._list, self._events], args=[chunk.raw, gone, packed])
        return Chunk(packed, list(unfinished))

    def unpark_if_empty(self) -> bool:
        """Writes go straight to the destination again, if nothing waits any more."""
        return bool(self._unpark(keys=[self._list, self._events, self._parked]))

    def events(self) -> int:
        """Messages waiting (the counter; 0 when there is none)."""
        return int(self._redis.get(self._events) or 0)

    def chunks(self) -> int:
        return int(self._redis.llen(self._list))

    def bytes_used(self) -> int:
        """Redis' own count of the list's memory (MEMORY USAGE), for the bench."""
        return int(self._redis.memory_usage(self._list, samples=0) or 0)
