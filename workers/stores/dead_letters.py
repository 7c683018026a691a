"""Dead letters: what could not be written, kept in Redis with the reason, never dropped silently.

Two Redis streams, whose ordered ids list, replay and delete by:

- the dead letters proper (invalid events, points InfluxDB rejects, ...), waiting for a person
  (`ha-ingestor dlq`). Nothing is deleted to make room unless the user set a cap
  (DEAD_LETTERS_MAX): then the oldest go beyond it, and each one dropped is counted
  (`dropped`), which makes health `unhealthy` with reason `dropping`;
- the outage store: events that waited longer than MAX_EVENT_AGE for an unavailable InfluxDB
  (AUTO_REPLAY_REASONS). Nothing is wrong with them, so no cap ever applies: a worker replays
  them by itself, oldest first, once InfluxDB takes writes again (`AutoReplay`).

A set of ids marking outage letters in the first stream is what versions before the outage
store kept; AutoReplay still empties it.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import redis

from config.redis_keys import RedisKeys
from core import json_codec
from core.task_message import Undecodable

log = logging.getLogger(__name__)

List = list  # `list` is also a method name below

UNDECODABLE: Final = "undecodable"
"""A message a worker took that is no ingest task: its letter's error says what is wrong with
it (core/task_message.py Undecodable), its message is the start of what was taken."""
TOO_OLD_DURING_OUTAGE: Final = "too_old_during_outage"
AUTO_REPLAY_REASONS: Final = frozenset({TOO_OLD_DURING_OUTAGE})
"""Reasons that say nothing is wrong with the event itself: it is replayed without a person."""

SendMany = Callable[[Sequence[Any]], object]
"""Enqueues task messages (a list of task arguments) for the workers; raises when it cannot."""

CountSink = Callable[[Mapping[str, int]], object]
"""Adds to named counters (workers/stores/counter_store.py CounterStore.add); must not raise."""

DROPPED: Final = "dropped"
"""Counter of dead letters deleted to keep within DEAD_LETTERS_MAX (health reason `dropping`)."""

# KEYS: stream. ARGV: cap, then the fields. Returns how many letters the cap removed.
_ADD_CAPPED: Final = """
local before = redis.call('XLEN', KEYS[1])
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', unpack(ARGV, 2))
return before + 1 - redis.call('XLEN', KEYS[1])
"""


def _no_count(_: Mapping[str, int]) -> None:
    return None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message that could not be written, and why."""

    id: str
    reason: str
    error: str
    message: Any
    at: float


class DeadLetterStore:
    """Adds, lists and removes dead letters (one stream) and outage letters (another)."""

    def __init__(
        self,
        client: redis.Redis,
        keys: RedisKeys,
        *,
        max_len: int | None = None,
        count: CountSink = _no_count,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = client
        self._key = keys.dead_letters()
        self._outage_key = keys.outage_letters()
        self._auto_key = keys.dead_letters_auto_replay()
        self._max_len = max_len
        self._count = count
        self._clock = clock
        self._add_capped = client.register_script(_ADD_CAPPED)

    @property
    def max_len(self) -> int | None:
        """DEAD_LETTERS_MAX: None (the default) keeps every letter."""
        return self._max_len

    def add_many(self, letters: Iterable[tuple[Any, str, str]]) -> int:
        """Store (message, reason, error) triples; returns how many were stored."""
        now = self._clock()
        pipe = self._redis.pipeline(transaction=False)
        count = capped = 0
        for message, reason, error in letters:
            if isinstance(message, Undecodable):
                message = message.excerpt
            text = json_codec.dumps(message, default=str).decode()
            if reason in AUTO_REPLAY_REASONS:
                # A long outage moves most events here: compressed, and without the error text
                # (the same for all, in the worker's log), they take less RAM than in the queue.
                outage = {"reason": reason, "z": zlib.compress(text.encode(), 6), "at": repr(now)}
                pipe.xadd(self._outage_key, outage)  # type: ignore[arg-type]
                count += 1
                continue
            fields = {"reason": reason, "error": error[:4000], "message": text, "at": repr(now)}
            if self._max_len is None:
                pipe.xadd(self._key, fields)  # type: ignore[arg-type]
            else:
                args: list[str | int] = [self._max_len, *(v for kv in fields.items() for v in kv)]
                self._add_capped(keys=[self._key], args=args, client=pipe)
                capped += 1
            count += 1
        if count:
            if capped:
                pipe.xlen(self._key)
            results = pipe.execute()
            if capped:
                self._note_cap(results, int(results[-1]))
        return count

    def _note_cap(self, results: list[Any], length: int) -> None:
        """Count and say what the user's cap removed; warn before it starts to."""
        assert self._max_len is not None
        dropped = sum(int(r) for r in results[:-1] if isinstance(r, int) and r > 0)
        if dropped:
            self._count({DROPPED: dropped})
            log.error(
                "dead letters: %d of the oldest DELETED to keep within DEAD_LETTERS_MAX=%d. "
                "Unset DEAD_LETTERS_MAX to keep every letter; look at them with "
                "`ha-ingestor dlq list`, fix the cause, then `ha-ingestor dlq replay --all`.",
                dropped,
                self._max_len,
            )
        elif length >= 0.8 * self._max_len:
            log.warning(
                "dead letters: %d of at most %d kept (DEAD_LETTERS_MAX); beyond that the oldest "
                "are deleted. Look at them with `ha-ingestor dlq list`, fix the cause, then "
                "`ha-ingestor dlq replay --all` or `ha-ingestor dlq purge`.",
                length,
                self._max_len,
            )

    def count(self) -> int:
        return int(self._redis.xlen(self._key))

    def outage_count(self) -> int:
        """Events kept in the outage store, waiting for InfluxDB (and for AutoReplay)."""
        return int(self._redis.xlen(self._outage_key))

    def outage_letters(self, limit: int) -> List[DeadLetter]:
        """The oldest `limit` letters of the outage store."""
        found: Any = self._redis.xrange(self._outage_key, count=limit)
        return [_decode(entry_id, fields) for entry_id, fields in found]

    def delete_outage(self, ids: Iterable[str]) -> int:
        ids = List(ids)
        return int(self._redis.xdel(self._outage_key, *ids)) if ids else 0

    def list(
        self,
        limit: int = 100,
        reason: str | None = None,
        *,
        after: str | None = None,
        until: str | None = None,
    ) -> List[DeadLetter]:
        """The oldest dead letters first, optionally of one reason only, with ids in
        (`after`, `until`]."""
        out: List[DeadLetter] = []
        start = "(" + after if after else "-"
        while len(out) < limit:
            batch: Any = self._redis.xrange(self._key, min=start, max=until or "+", count=500)
            if not batch:
                break
            for entry_id, fields in batch:
                letter = _decode(entry_id, fields)
                if reason is None or letter.reason == reason:
                    out.append(letter)
                    if len(out) >= limit:
                        break
            start = "(" + _text(batch[-1][0])
        return out

    def last_id(self) -> str | None:
        """The newest letter's id, to bound a replay that runs while new letters arrive."""
        newest: Any = self._redis.xrevrange(self._key, count=1)
        return _text(newest[0][0]) if newest else None

    def get(self, ids: Iterable[str]) -> List[DeadLetter]:
        """The letters with these ids that still exist, in the order asked."""
        ids = List(ids)
        if not ids:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for entry_id in ids:
            pipe.xrange(self._key, min=entry_id, max=entry_id)
        out: List[DeadLetter] = []
        for found in pipe.execute():
            out.extend(_decode(i, f) for i, f in found)
        return out

    def delete(self, ids: Iterable[str]) -> int:
        """Remove letters (and their auto-replay marks); returns how many existed."""
        ids = List(ids)
        if not ids:
            return 0
        pipe = self._redis.pipeline(transaction=False)
        pipe.xdel(self._key, *ids)
        pipe.srem(self._auto_key, *ids)
        return int(pipe.execute()[0])

    def purge(self) -> int:
        """Delete every dead letter (not the outage store: those events are fine and are
        written once InfluxDB is back); returns how many there were."""
        count = self.count()
        self._redis.delete(self._key, self._auto_key)
        return count

    def legacy_auto_replay_ids(self, limit: int) -> List[str]:
        """Up to `limit` ids of outage letters a version before the outage store marked."""
        found: Any = self._redis.srandmember(self._auto_key, limit)
        return sorted(_text(i) for i in found or ())

    def auto_replay_pending(self) -> int:
        """Letters AutoReplay still has to enqueue again."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.xlen(self._outage_key)
        pipe.scard(self._auto_key)
        return sum(int(n) for n in pipe.execute())


def as_replay(message: Any) -> Any:
    """The task message to enqueue again: the same event, marked `source: replay`.

    A heartbeat stays one: its source is what gives its point the heartbeat's time and tag.
    """
    if isinstance(message, dict) and isinstance(message.get("event"), dict):
        if message.get("source") == "heartbeat":
            return message
        return {**message, "source": "replay"}
    return message  # not a valid message: the worker dead-letters it again with the reason


def replay(store: DeadLetterStore, letters: Sequence[DeadLetter], send_many: SendMany) -> int:
    """Enqueue the letters' messages again, then delete them; returns how many were replayed.

    Deleted only after the broker took them: a failure in between replays some twice, which is
    harmless (a point is identified by its series and time).
    """
    if not letters:
        return 0
    send_many([as_replay(letter.message) for letter in letters])
    store.delete(letter.id for letter in letters)
    return len(letters)


class AutoReplay:
    """Replays the outage store once InfluxDB takes writes again, oldest first, a chunk a call.

    Called by a worker after each batch that wrote something, so the replay starts with the
    first event written after the outage (a home that sends nothing at all waits for its next
    event). `send_many` puts them where workers take next (workers/consumers/task_sender.py), so the
    oldest events are written first. One worker at a time holds a short lock so two workers do
    not send the same letters; a worker that dies holding it only delays the replay by the
    lock's TTL, and one that dies between sending and deleting sends a chunk twice (harmless:
    a point is identified by its series and time).
    """

    def __init__(
        self,
        store: DeadLetterStore,
        client: redis.Redis,
        keys: RedisKeys,
        send_many: SendMany,
        *,
        chunk: int = 1000,
        lock_ttl: int = 120,
    ) -> None:
        self._store = store
        self._redis = client
        self._lock = keys.dead_letters_replay_lock()
        self._send_many = send_many
        self._chunk = chunk
        self._lock_ttl = lock_ttl

    def run_once(self) -> int:
        """Replay up to one chunk; returns how many letters were enqueued again."""
        if not self._store.auto_replay_pending():
            return 0
        if not self._redis.set(self._lock, "1", nx=True, ex=self._lock_ttl):
            return 0
        try:
            letters = self._store.outage_letters(self._chunk)
            if letters:
                self._send_many([as_replay(letter.message) for letter in letters])
                replayed = self._store.delete_outage(letter.id for letter in letters)
            else:
                ids = self._store.legacy_auto_replay_ids(self._chunk)
                replayed = replay(self._store, self._store.get(ids), self._send_many)
                self._store.delete(ids)  # also the marks of letters trimmed from the stream
        finally:
            self._redis.delete(self._lock)
        if replayed:
            log.info(
                "InfluxDB takes writes again: %d events that waited too long during the outage "
                "were enqueued again (%d still to go)",
                replayed,
                self._store.auto_replay_pending(),
            )
        return replayed


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decode(entry_id: Any, fields: dict[Any, Any]) -> DeadLetter:
    packed = fields.get(b"z", fields.get("z"))
    data = {_text(k): _text(v) for k, v in fields.items() if k not in (b"z", "z")}
    text = zlib.decompress(packed).decode() if packed is not None else data.get("message", "null")
    return DeadLetter(
        id=_text(entry_id),
        reason=data.get("reason", ""),
        error=data.get("error", ""),
        message=json_codec.loads(text),
        at=float(data.get("at", "0")),
    )
