"""HA's area, device, entity, floor and label registries, kept in Redis for enrichment.

A registry change announced by HA is fetched again by a task, after a short debounce: the
reader must never await a command, whose reply only that same reader can read (a user editing
areas sends a burst of events, and one fetch per registry covers the burst). An HA older than
2024.4 answers `unknown_command` for floors and labels: they are stored empty (so a downgraded
HA leaves no stale floors behind) and said once, never warned about on every refresh.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis

from config.redis_keys import REGISTRY_TTL_S, RedisKeys
from core import json_codec
from listener.ha.protocol import CommandFailed

log = logging.getLogger(__name__)

REGISTRIES: dict[str, str] = {
    "areas": "config/area_registry/list",
    "devices": "config/device_registry/list",
    "entities": "config/entity_registry/list",
    "floors": "config/floor_registry/list",
    "labels": "config/label_registry/list",
}
"""Redis name → the HA command that lists it."""

SINCE_2024_4: frozenset[str] = frozenset({"floors", "labels"})
"""Registries an older HA does not have: `unknown_command` stores them empty, logged once."""

UPDATE_EVENTS: dict[str, str] = {
    "area_registry_updated": "areas",
    "device_registry_updated": "devices",
    "entity_registry_updated": "entities",
    "floor_registry_updated": "floors",
    "label_registry_updated": "labels",
}
"""HA event announcing a change → the registry to fetch again."""

EVENTS_SINCE_2024_4: frozenset[str] = frozenset(
    event for event, name in UPDATE_EVENTS.items() if name in SINCE_2024_4
)
"""Their events: outside an older HA's allowlist for non-admin tokens, so a refusal is no fault."""

Call = Callable[[str], Awaitable[Any]]

EntitiesStored = Callable[[bytes | None, list[Any]], Awaitable[None]]
"""(the entity registry stored before, as Redis held it, or None; the one just stored)."""

DEBOUNCE_S = 0.25
"""How long after a registry change to fetch it: a burst of changes costs one fetch (HA fires
one event per entry an edit touches, within milliseconds), and with the workers' look at the
version twice a second the next points carry an edit within a second."""


class RegistryStore:
    """Fetches registries from HA and stores each as the JSON list HA returned."""

    def __init__(self, client: redis.Redis, keys: RedisKeys) -> None:
        self._redis = client
        self._base = keys
        self._keys = keys
        self.fetched: dict[str, int] = {}
        self.missing: set[str] = set()
        """Registries HA does not know (before 2024.4): said once, then stored empty quietly."""
        self._entities_stored: EntitiesStored | None = None

    def for_home(self, home: str | None) -> None:
        """Store under this home's keys from now on (None: the prefix-level keys, until HA
        said the name of a home that has none yet)."""
        self._keys = self._base.for_home(home)

    def watch_entities(self, stored: EntitiesStored) -> None:
        """Call `stored(previous, current)` each time the entity registry is stored, with the
        list it replaced (Redis SET … GET: read and replaced at once); renames are found so."""
        self._entities_stored = stored

    async def rename_entity(self, old: str, new: str) -> None:
        """HA announced a rename: store the entity registry with the new id at once (the full
        fetch follows, debounced), so workers tag the new id's first states; never raises."""
        try:
            await asyncio.to_thread(self._rename_stored, old, new)
        except (redis.RedisError, ValueError) as exc:
            log.warning("could not store the rename of %s in Redis (%s)", old, exc)

    def _rename_stored(self, old: str, new: str) -> None:
        key = self._keys.registry("entities")
        raw = self._redis.get(key)
        items = json_codec.loads(raw) if isinstance(raw, bytes) else None
        if not isinstance(items, list):
            return
        renamed = [i for i in items if isinstance(i, dict) and i.get("entity_id") == old]
        for item in renamed:
            item["entity_id"] = new
        if renamed:
            self._redis.set(key, json_codec.dumps(items), ex=REGISTRY_TTL_S)
            self._bump_version()

    async def refresh(self, call: Call, names: list[str] | None = None) -> None:
        """Fetch the named registries (all by default); a failure is logged, never fatal."""
        stored = False
        for name in names or list(REGISTRIES):
            try:
                items = await call(REGISTRIES[name])
            except Exception as exc:  # noqa: BLE001 - enrichment must never stop ingestion
                if not self._absent(name, exc):
                    log.warning(
                        "could not fetch HA's %s registry (%s); tags may be stale", name, exc
                    )
                    continue
                items = []
            if not isinstance(items, list):
                continue
            payload = json_codec.dumps(items)
            watched = self._entities_stored if name == "entities" else None
            try:
                previous = await asyncio.to_thread(
                    self._redis.set,
                    self._keys.registry(name),
                    payload,
                    ex=REGISTRY_TTL_S,
                    get=watched is not None,
                )
            except redis.RedisError as exc:
                log.warning("could not store HA's %s registry in Redis (%s)", name, exc)
                continue
            if watched is not None:
                await watched(previous if isinstance(previous, bytes) else None, items)
            self.fetched[name] = len(items)
            stored = True
        if stored:
            try:
                await asyncio.to_thread(self._bump_version)
            except redis.RedisError as exc:
                log.warning("could not tell the workers HA's registries changed (%s)", exc)
        if self.fetched:
            log.info(
                "registries stored: %s",
                ", ".join(f"{n} {c}" for n, c in sorted(self.fetched.items())),
            )

    def _absent(self, name: str, exc: Exception) -> bool:
        """Whether HA lacks this registry (before 2024.4); said in an info line, once."""
        if not isinstance(exc, CommandFailed) or exc.code != "unknown_command":
            return False
        if name not in SINCE_2024_4:
            return False
        if name not in self.missing:
            self.missing.add(name)
            log.info("HA has no %s registry (it came with HA 2024.4): no %s tags", name, name[:-1])
        return True

    def _bump_version(self) -> None:
        """Workers re-read the registries when this changes (within a second)."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.incr(self._keys.registry_version())
        pipe.expire(self._keys.registry_version(), REGISTRY_TTL_S)
        pipe.execute()


class RegistryRefresher:
    """Fetches registries HA announced as changed, from a task of its own, debounced.

    `changed` is the reader's control handler: it only notes the registry and makes sure a
    refresh task runs. `current_call` gives the live connection's `call` (None while
    disconnected: the next connection fetches every registry anyway).
    """

    def __init__(
        self,
        store: RegistryStore,
        current_call: Callable[[], Call | None],
        *,
        on_refreshed: Callable[[], None] | None = None,
        debounce: float = DEBOUNCE_S,
    ) -> None:
        self._store = store
        self._current_call = current_call
        self._on_refreshed = on_refreshed
        self._debounce = debounce
        self._dirty: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def changed(self, event: dict[str, Any]) -> None:
        """HA announced a registry change: fetch that registry soon, never now."""
        kind = event.get("event_type")
        name = UPDATE_EVENTS.get(kind) if isinstance(kind, str) else None
        if name is None:
            return
        self._dirty.add(name)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="registry-refresh")

    async def _run(self) -> None:
        while self._dirty:
            await asyncio.sleep(self._debounce)
            names = sorted(self._dirty)
            self._dirty.clear()
            call = self._current_call()
            if call is None:
                return
            await self._store.refresh(call, names)
            if self._on_refreshed is not None:
                self._on_refreshed()

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
