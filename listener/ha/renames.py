"""Renames the listener sees in HA's entity registry, handed to the workers (TRACK_RENAMES).

Two ways to see one (listener/ha/registries.py `RegistryStore.watch_entities` gives each stored
entity registry with the list it replaced, read and replaced in one Redis command):

- live: `entity_registry_updated` with `old_entity_id` (`announced`, the reader's control
  handler, dated by the event). HA adds the state under the new id right after it, so when
  the last stored registry knows the entry, the renamed entry is stored in Redis and the
  rename enqueued before the listener hands on any later event (`settled`): workers then tag
  that first state. An entry the registry did not know yet waits for the debounced fetch;
- at a (re)connect: every registry fetch is compared with the list stored before it (kept a
  week in Redis, so a listener restart compares too): an entry whose entity id changed was
  renamed while the listener was away.

Each becomes a task message (core/renames.py `rename_event`) published as events are, so a
rename has the delivery guarantee of a state: the broker, else the spool.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from core import json_codec
from core.renames import (
    Announced,
    FoundBy,
    Rename,
    announced_rename,
    rename_event,
    renames_seen,
)
from listener.ha.client import ControlHandler

log = logging.getLogger(__name__)

Enqueue = Callable[[dict[str, Any], FoundBy], Awaitable[None]]
"""Hands one rename's event to the publisher (listener/service.py `Listener.on_rename`)."""


class RenameTracker:
    """Notes the renames HA announces; turns each registry store into rename messages."""

    def __init__(
        self,
        enqueue: Enqueue,
        store_rename: Callable[[str, str], Awaitable[None]],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._enqueue = enqueue
        self._store_rename = store_rename
        self._clock = clock
        self._announced: list[Announced] = []
        self._registry_ids: dict[str, str] = {}
        """entity id → registry id, as the last stored entity registry says."""
        self._pending: asyncio.Task[None] | None = None

    def announced(self, event: dict[str, Any]) -> None:
        """A registry event from the reader: note a rename, never wait for anything.

        When the last registry knows the entry, the rename is stored and enqueued at once, in
        a task that `settled` waits for: the listener hands on no later event before it, so
        workers tag the new id's first state. Otherwise the fetch that follows settles it."""
        rename = announced_rename(event, self._clock())
        if rename is None:
            return
        rid = self._registry_ids.get(rename.old_entity_id)
        if rid is None:
            self._announced.append(rename)
            return
        self._registry_ids[rename.new_entity_id] = rid
        found = Rename(rid, rename.old_entity_id, rename.new_entity_id, rename.time, "event")
        previous = self._pending
        self._pending = asyncio.create_task(self._settle(previous, found), name="rename")

    @property
    def busy(self) -> bool:
        """A rename is being stored and enqueued: the next event waits for `settled`."""
        return self._pending is not None

    async def settled(self) -> None:
        """Wait until every rename announced so far is stored and enqueued."""
        pending = self._pending
        if pending is None:
            return
        try:
            await asyncio.shield(pending)
        except Exception:  # a lost rename must not stop the events
            log.exception("could not hand on a rename; it is not recorded")
        if self._pending is pending:
            self._pending = None

    async def _settle(self, previous: asyncio.Task[None] | None, rename: Rename) -> None:
        if previous is not None:
            await previous
        await self._store_rename(rename.old_entity_id, rename.new_entity_id)
        await self._hand_on(rename)

    def then(self, handler: ControlHandler) -> ControlHandler:
        """One control handler doing both: note a rename, then `handler` (the refresh)."""

        def both(event: dict[str, Any]) -> None:
            self.announced(event)
            handler(event)

        return both

    async def entities_stored(self, previous: bytes | None, current: list[Any]) -> None:
        """The entity registry was stored: enqueue every rename since the one before."""
        await self.settled()  # renames settled from the event are in `previous` already
        announced, self._announced = self._announced, []
        before = _decoded(previous)
        for rename in renames_seen(before, current, announced, self._clock()):
            await self._hand_on(rename)
        self._registry_ids = {
            entry["entity_id"]: entry["id"]
            for entry in current
            if isinstance(entry, dict)
            and isinstance(entry.get("entity_id"), str)
            and isinstance(entry.get("id"), str)
        }

    async def _hand_on(self, rename: Rename) -> None:
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
