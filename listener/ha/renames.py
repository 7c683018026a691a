"""Renames the listener sees in HA's entity registry, handed to the workers (TRACK_RENAMES).

Two ways to see one, both settled when the entity registry is stored (listener/ha/registries.py
`RegistryStore.watch_entities`, which gives the list stored before, read and replaced in one
Redis command):

- live: `entity_registry_updated` with `old_entity_id` (`announced`, the reader's control
  handler: it only notes the rename, dated by the event; the debounced fetch that follows
  ties it to its registry entry);
- at a (re)connect: every registry fetch is compared with the list stored before it (kept a
  week in Redis, so a listener restart compares too): an entry whose entity id changed was
  renamed while the listener was away.

Each becomes a task message (core/renames.py `rename_event`) published as events are, so a
rename has the delivery guarantee of a state: the broker, else the spool.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from core import json_codec
from core.renames import Announced, FoundBy, announced_rename, rename_event, renames_seen
from listener.ha.client import ControlHandler

log = logging.getLogger(__name__)

Enqueue = Callable[[dict[str, Any], FoundBy], Awaitable[None]]
"""Hands one rename's event to the publisher (listener/service.py `Listener.on_rename`)."""


class RenameTracker:
    """Notes the renames HA announces; turns each registry store into rename messages."""

    def __init__(self, enqueue: Enqueue, *, clock: Callable[[], float] = time.time) -> None:
        self._enqueue = enqueue
        self._clock = clock
        self._announced: list[Announced] = []

    def announced(self, event: dict[str, Any]) -> None:
        """A registry event from the reader: note a rename, never wait for anything."""
        rename = announced_rename(event, self._clock())
        if rename is not None:
            self._announced.append(rename)

    def then(self, handler: ControlHandler) -> ControlHandler:
        """One control handler doing both: note a rename, then `handler` (the refresh)."""

        def both(event: dict[str, Any]) -> None:
            self.announced(event)
            handler(event)

        return both

    async def entities_stored(self, previous: bytes | None, current: list[Any]) -> None:
        """The entity registry was stored: enqueue every rename since the one before."""
        announced, self._announced = self._announced, []
        before = _decoded(previous)
        for rename in renames_seen(before, current, announced, self._clock()):
            log.info(
                "entity renamed: %s → %s (registry id %s, found by %s)",
                rename.old_entity_id,
                rename.new_entity_id,
                rename.registry_id,
                rename.found_by,
            )
            await self._enqueue(rename_event(rename), rename.found_by)


def _decoded(stored: bytes | None) -> object:
    """The registry list stored before, or None: nothing to compare with is no rename."""
    if stored is None:
        return None
    try:
        return json_codec.loads(stored)
    except ValueError:
        log.warning("the entity registry stored in Redis is not JSON; renames are not compared")
        return None
