"""Enrichment's pure half: tags from HA's area, device and entity registries (DESIGN §3.2).

An entity id becomes tags through small ordered steps, each a pure function of the entity id
and the registries (as HA's `config/*_registry/list` returns them):

- `area_tag`: `area` = the area's name; the entity's own area, else its device's (as HA does);
- `device_tag`: `device` = the device's name as the user sees it (`name_by_user`, else `name`);
- `registry_id_tag`: `entity_registry_id` = the registry entry's `id`, which survives renames;
  added after the default steps when TRACK_RENAMES is on (core/renames.py);
- `friendly_name_tag`: only when the rules promote `friendly_name` to a tag (HA's
  `tags_attributes`), the name HA would give the entity, so a state without attributes (a
  minimal history row) stays in its series. The state's own `friendly_name` still wins, since
  enrichment tags come first in the core.

Nothing here stops ingestion: missing or malformed registries only mean fewer tags. Where the
registries come from (Redis, read at most once per TTL) is workers/stores/registry_cache.py's
business.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from core.renames import REGISTRY_ID_TAG

REGISTRY_KINDS: Final = ("areas", "devices", "entities")


@dataclass(frozen=True, slots=True)
class Device:
    name: str | None
    area_id: str | None


@dataclass(frozen=True, slots=True)
class Entity:
    area_id: str | None
    device_id: str | None
    name: str | None
    """The user's name for the entity (registry `name`), which HA prefers."""
    original_name: str | None
    has_entity_name: bool
    registry_id: str | None = None
    """The registry entry's `id`: kept across renames (core/renames.py says why this one)."""


@dataclass(frozen=True, slots=True)
class Registries:
    """HA's three registries, indexed by id."""

    areas: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """area_id → name"""
    devices: Mapping[str, Device] = field(default_factory=lambda: MappingProxyType({}))
    entities: Mapping[str, Entity] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_lists(
        cls, areas: object = None, devices: object = None, entities: object = None
    ) -> Registries:
        """From the lists HA returns; entries that are not what HA sends are skipped."""
        area_names = {
            a["area_id"]: a["name"]
            for a in _objects(areas)
            if _is_text(a.get("area_id")) and _is_text(a.get("name"))
        }
        device_map = {
            d["id"]: Device(
                name=_text_or_none(d.get("name_by_user")) or _text_or_none(d.get("name")),
                area_id=_text_or_none(d.get("area_id")),
            )
            for d in _objects(devices)
            if _is_text(d.get("id"))
        }
        entity_map = {
            e["entity_id"]: Entity(
                area_id=_text_or_none(e.get("area_id")),
                device_id=_text_or_none(e.get("device_id")),
                name=_text_or_none(e.get("name")),
                original_name=_text_or_none(e.get("original_name")),
                has_entity_name=e.get("has_entity_name") is True,
                registry_id=_text_or_none(e.get("id")),
            )
            for e in _objects(entities)
            if _is_text(e.get("entity_id"))
        }
        return cls(
            MappingProxyType(area_names),
            MappingProxyType(device_map),
            MappingProxyType(entity_map),
        )

    def device_of(self, entity_id: str) -> Device | None:
        entity = self.entities.get(entity_id)
        if entity is None or entity.device_id is None:
            return None
        return self.devices.get(entity.device_id)


Enricher = Callable[[str, Registries], Mapping[str, str]]
"""One step: (entity_id, registries) → tags to add (may be empty)."""


def area_tag(entity_id: str, registries: Registries) -> Mapping[str, str]:
    """`area`: the entity's area, else its device's area (HA's rule for an entity's area)."""
    entity = registries.entities.get(entity_id)
    if entity is None:
        return {}
    area_id = entity.area_id
    if area_id is None and (device := registries.device_of(entity_id)) is not None:
        area_id = device.area_id
    name = registries.areas.get(area_id) if area_id else None
    return {"area": name} if name else {}


def device_tag(entity_id: str, registries: Registries) -> Mapping[str, str]:
    """`device`: the name of the entity's device, as the user named it if they did."""
    device = registries.device_of(entity_id)
    return {"device": device.name} if device is not None and device.name else {}


def friendly_name_tag(entity_id: str, registries: Registries) -> Mapping[str, str]:
    """`friendly_name` as HA computes it (`Entity._friendly_name_internal`, registry name first).

    Only used when the rules make `friendly_name` a tag; see the module docstring.
    """
    entity = registries.entities.get(entity_id)
    if entity is None:
        return {}
    name = entity.name
    if name is None:
        name = entity.original_name
        device = registries.device_of(entity_id)
        if entity.has_entity_name and device is not None and device.name:
            name = f"{device.name} {name}" if name else device.name
    return {"friendly_name": name} if name else {}


def registry_id_tag(entity_id: str, registries: Registries) -> Mapping[str, str]:
    """`entity_registry_id`: the one tag a rename keeps (TRACK_RENAMES; core/renames.py)."""
    entity = registries.entities.get(entity_id)
    if entity is None or entity.registry_id is None:
        return {}
    return {REGISTRY_ID_TAG: entity.registry_id}


def default_steps(tags_attributes: frozenset[str]) -> tuple[Enricher, ...]:
    """The steps for these rules, in order: area, device, then friendly_name if it is a tag."""
    steps: list[Enricher] = [area_tag, device_tag]
    if "friendly_name" in tags_attributes:
        steps.append(friendly_name_tag)
    return tuple(steps)


def enrich(entity_id: str, registries: Registries, steps: Sequence[Enricher]) -> dict[str, str]:
    """Run the steps in order; a later step's tag replaces an earlier one of the same name."""
    tags: dict[str, str] = {}
    for step in steps:
        tags.update(step(entity_id, registries))
    return tags


def _objects(value: object) -> list[Mapping[str, Any]]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def _is_text(value: object) -> bool:
    return isinstance(value, str) and bool(value)


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
