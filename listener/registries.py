"""HA's area, device and entity registries, kept in Redis for the workers' enrichment."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis

from config.redis_keys import REGISTRY_TTL_S, RedisKeys

log = logging.getLogger(__name__)

REGISTRIES: dict[str, str] = {
    "areas": "config/area_registry/list",
    "devices": "config/device_registry/list",
    "entities": "config/entity_registry/list",
}
"""Redis name → the HA command that lists it."""

UPDATE_EVENTS: dict[str, str] = {
    "area_registry_updated": "areas",
    "device_registry_updated": "devices",
    "entity_registry_updated": "entities",
}
"""HA event announcing a change → the registry to fetch again."""

Call = Callable[[str], Awaitable[Any]]


class RegistryStore:
    """Fetches registries from HA and stores each as the JSON list HA returned."""

    def __init__(self, client: redis.Redis, keys: RedisKeys) -> None:
        self._redis = client
        self._keys = keys
        self.fetched: dict[str, int] = {}

    async def refresh(self, call: Call, names: list[str] | None = None) -> None:
        """Fetch the named registries (all by default); a failure is logged, never fatal."""
        for name in names or list(REGISTRIES):
            try:
                items = await call(REGISTRIES[name])
            except Exception as exc:  # noqa: BLE001 - enrichment must never stop ingestion
                log.warning("could not fetch HA's %s registry (%s); tags may be stale", name, exc)
                continue
            if not isinstance(items, list):
                continue
            payload = json.dumps(items, ensure_ascii=False)
            try:
                await asyncio.to_thread(
                    self._redis.set, self._keys.registry(name), payload, ex=REGISTRY_TTL_S
                )
            except redis.RedisError as exc:
                log.warning("could not store HA's %s registry in Redis (%s)", name, exc)
                continue
            self.fetched[name] = len(items)
        if self.fetched:
            log.info(
                "registries stored: %s",
                ", ".join(f"{n} {c}" for n, c in sorted(self.fetched.items())),
            )
