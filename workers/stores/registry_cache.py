"""Enrichment's Redis half: HA's registries as the listener stored them, and tags per entity.

Each home's listener stores its own registries (`RedisKeys.for_home`): a message is enriched
from the registries of the home it names (`HomeRegistries`, `HomeEnrichment`), and one without
a home (an older listener's) from the prefix-level keys, as before.

The listener stores each registry in Redis as the JSON list HA's `config/*_registry/list`
returns, and increments a version key. A worker reads them again when that version changed
(looked at twice a second) or at least once per TTL (`RegistryCache`) and turns an entity id into
tags with the pure steps of core/enrichment.py (`Enrichment`), caching the tags per entity until
the registries are read again. Redis failing only means the last registries are kept.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

import redis

from config.redis_keys import RedisKeys
from core import json_codec
from core.enrichment import REGISTRY_KINDS, Enricher, Registries, enrich

log = logging.getLogger(__name__)

_MAX_CACHED_ENTITIES: Final = 16_384


class RegistryCache:
    """The registries from Redis: read again when the listener says they changed (its version
    key, looked at most once per `check_every` seconds: one GET), and at least once per `ttl`.

    When Redis cannot be read the previous registries are kept: stale tags beat none.
    """

    def __init__(
        self,
        client: redis.Redis,
        keys: RedisKeys,
        *,
        ttl: float = 60.0,
        check_every: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = client
        self._names = [keys.registry(kind) for kind in REGISTRY_KINDS]
        self._version_key = keys.registry_version()
        self._ttl = ttl
        self._check_every = check_every
        self._clock = clock
        self._registries = Registries()
        self._expires = float("-inf")
        self._next_check = float("-inf")
        self._stored_version: bytes | None = None
        self._unknown_checked: dict[str, float] = {}
        self.version = 0
        """Incremented on every reload, so users of the registries can drop derived caches."""

    def get(self) -> Registries:
        now = self._clock()
        if now >= self._expires:
            self._reload(now)
        elif now >= self._next_check:
            self._next_check = now + self._check_every
            if self._listener_version() != self._stored_version:
                self._reload(now)
        return self._registries

    def get_for(self, entity_id: str) -> Registries:
        """`get`, but an entity the registries do not know makes the cache look at the version
        at once (at most once a second per entity): a renamed or new entity's first state
        comes right after the listener stored the registry that knows it."""
        registries = self.get()
        if entity_id in registries.entities:
            return registries
        now = self._clock()
        if now < self._unknown_checked.get(entity_id, float("-inf")) + self._check_every:
            return registries
        if len(self._unknown_checked) >= _MAX_CACHED_ENTITIES:
            self._unknown_checked.clear()
        self._unknown_checked[entity_id] = now
        if self._listener_version() != self._stored_version:
            self._reload(now)
        return self._registries

    def _listener_version(self) -> bytes | None:
        try:
            value = self._redis.get(self._version_key)
        except redis.RedisError:
            return self._stored_version  # the reload on expiry says what is wrong
        return value if isinstance(value, bytes) else None

    def _reload(self, now: float) -> None:
        self._expires = now + self._ttl
        self._next_check = now + self._check_every
        try:
            version, *raw = self._redis.mget([self._version_key, *self._names])
        except redis.RedisError as exc:
            log.warning("cannot read HA's registries from Redis (%s); keeping the last ones", exc)
            return
        self._stored_version = version if isinstance(version, bytes) else None
        lists = [_parse(value, kind) for value, kind in zip(raw, REGISTRY_KINDS, strict=True)]
        self._registries = Registries.from_lists(*lists)
        self.version += 1


class Enrichment:
    """entity_id → enrichment tags, cached per entity until the registries are read again."""

    def __init__(self, cache: RegistryCache, steps: Sequence[Enricher]) -> None:
        self._cache = cache
        self._steps = tuple(steps)
        self._tags: dict[str, Mapping[str, str]] = {}
        self._version = -1

    def tags_for(self, entity_id: str) -> Mapping[str, str]:
        registries = self._cache.get_for(entity_id)
        if self._version != self._cache.version or len(self._tags) >= _MAX_CACHED_ENTITIES:
            self._tags.clear()
            self._version = self._cache.version
        tags = self._tags.get(entity_id)
        if tags is None:
            tags = self._tags[entity_id] = MappingProxyType(
                enrich(entity_id, registries, self._steps)
            )
        return tags


class HomeRegistries:
    """One RegistryCache per home, made at its first message and shared by every destination."""

    def __init__(
        self,
        client: redis.Redis,
        keys: RedisKeys,
        *,
        ttl: float = 60.0,
        check_every: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = client
        self._keys = keys
        self._options: dict[str, Any] = {"ttl": ttl, "check_every": check_every, "clock": clock}
        self._caches: dict[str | None, RegistryCache] = {}

    def cache(self, home: str | None) -> RegistryCache:
        cache = self._caches.get(home)
        if cache is None:
            keys = self._keys.for_home(home)
            cache = self._caches[home] = RegistryCache(self._redis, keys, **self._options)
        return cache


class HomeEnrichment:
    """(entity_id, home) → enrichment tags from that home's registries: one Enrichment per home,
    so one home's areas never tag another home's points."""

    def __init__(self, registries: HomeRegistries, steps: Sequence[Enricher]) -> None:
        self._registries = registries
        self._steps = tuple(steps)
        self._homes: dict[str | None, Enrichment] = {}

    def tags_for(self, entity_id: str, home: str | None = None) -> Mapping[str, str]:
        enrichment = self._homes.get(home)
        if enrichment is None:
            cache = self._registries.cache(home)
            enrichment = self._homes[home] = Enrichment(cache, self._steps)
        return enrichment.tags_for(entity_id)


def _parse(value: Any, kind: str) -> object:
    if value is None:
        return None
    try:
        return json_codec.loads(value)
    except ValueError:
        log.warning("HA's %s registry in Redis is not JSON; enrichment skips it", kind)
        return None
