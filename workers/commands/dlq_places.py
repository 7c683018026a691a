"""Where `ha-ingestor dlq` finds dead letters, how it labels them, and where it replays them.

Each destination has its own dead-letter store (RedisKeys.for_destination); the prefix-level
store holds what no destination could read (not an ingest task at all, an invalid event, a
batch a worker failed on unexpectedly) and, for `default`, that destination's own letters too,
since its keys are those of before destinations existed. So the prefix store is split by reason
when `default` is one of several destinations.

With one destination a replay enqueues the letters again in the broker, as always. With several,
the broker would write them to every destination again: a destination's letters go into *its*
backlog instead (workers/stores/backlog.py), which the workers' drainer writes, and only the
letters no destination read go back through the broker, to all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from config.redis_keys import RedisKeys
from workers.stores.backlog import Backlog
from workers.stores.dead_letters import UNDECODABLE, DeadLetter, DeadLetterStore, SendMany

if TYPE_CHECKING:
    import redis

    from config.destinations import Destinations

EVERY: Final = "*"
"""The label of letters no destination read: a replay sends them to every destination (no
destination name can be `*`)."""
SHARED_REASONS: Final = frozenset({UNDECODABLE, "invalid_event", "worker_error"})
"""Reasons of the letters that concern every destination when there are several: workers keep
them once, in the prefix-level store (a worker error in the first destination's store)."""
PAGE: Final = 500


def _every_reason(_: str) -> bool:
    return True


def _shared(reason: str) -> bool:
    return reason in SHARED_REASONS


def _own(reason: str) -> bool:
    return reason not in SHARED_REASONS


@dataclass(frozen=True)
class Place:
    """The letters of one destination (or of every one, labelled EVERY) in one store."""

    label: str
    store: DeadLetterStore
    backlog: Backlog | None
    """Several destinations: where a replay puts this destination's letters. None: through
    the broker."""
    holds: Callable[[str], bool] = _every_reason
    """Which of the store's letters (by reason) are this place's: the prefix store is split."""

    @property
    def whole_store(self) -> bool:
        return self.holds is _every_reason

    def letters(
        self, reason: str | None = None, *, until: str | None = None
    ) -> Iterator[list[DeadLetter]]:
        """This place's letters of `reason` (every reason: None), oldest first, in pages."""
        after: str | None = None
        while True:
            page = self.store.list(PAGE, reason, after=after, until=until)
            if not page:
                return
            after = page[-1].id
            if kept := [letter for letter in page if self.holds(letter.reason)]:
                yield kept

    def count(self) -> int:
        if self.whole_store:
            return self.store.count()
        return sum(len(page) for page in self.letters())

    def send(self, broker: Callable[[], SendMany]) -> SendMany:
        """Where replayed messages go: the backlog, or the broker (built only when needed)."""
        return self.backlog.add if self.backlog is not None else broker()

    def purge(self) -> int:
        if self.whole_store:
            return self.store.purge()
        until = self.store.last_id()
        return sum(self.store.delete(x.id for x in page) for page in self.letters(until=until))


def places(
    client: redis.Redis, prefix: str, destinations: Destinations, max_len: int | None
) -> list[Place]:
    """Every place dead letters can be, the EVERY place last; with one destination, its own
    store and the prefix store when they differ (letters kept before it was configured)."""
    keys = RedisKeys(prefix)

    def store(own: RedisKeys) -> DeadLetterStore:
        return DeadLetterStore(client, own, max_len=max_len)

    several = destinations.several
    found = []
    for destination in destinations.all:
        own = keys.for_destination(destination.name)
        backlog = Backlog(client, own) if several else None
        holds = _own if several and destination.is_default else _every_reason
        found.append(Place(destination.name, store(own), backlog, holds))
    has_default = any(d.is_default for d in destinations.all)
    if several or not has_default:
        found.append(Place(EVERY, store(keys), None, _shared if has_default else _every_reason))
    return found


def pick(found: list[Place], name: str | None) -> list[Place]:
    """The places a `--destination` names (every place without one); the name is known."""
    return found if name is None else [p for p in found if p.label == name]
