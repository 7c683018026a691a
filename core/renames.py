"""Entity renames, seen in HA's entity registry, and their points (TRACK_RENAMES). Pure.

Renaming `sensor.kitchen_temp` to `sensor.kitchen_temperature` changes the `entity_id` tag, and
InfluxDB cannot rename a tag: the history splits into two series. With TRACK_RENAMES on:

- every point carries `entity_registry_id`, the entity registry entry's `id`
  (`registry_id_tag` in core/enrichment.py). Not `unique_id`: HA keys that one by
  (domain, platform, unique_id), so two integrations may both have a `temperature`, while `id`
  is a random hex unique in the whole registry, kept across renames and given back when a
  deleted entity returns. An entity without a registry entry (YAML without `unique_id`) has
  neither, so it gets no tag. HA's own recorder does not key history by either: it listens for
  the rename event and rewrites the entity id of its past rows, which InfluxDB cannot do.
- every rename seen is a point of `ha_entity_renames` (`rename_to_point`): tags
  `entity_registry_id` and `domain`, fields `old_entity_id` and `new_entity_id` (object ids,
  without the domain, as the `entity_id` tag holds them; a rename keeps the domain) and
  `found_by`: `event` (HA announced it: `entity_registry_updated` with `old_entity_id`; time
  = the event's) or `registry` (the entity registry differs from the one stored at the
  previous fetch: a rename while the listener was away; time = the entry's `modified_at`
  where HA sends it, else when the listener found it).

A rename reaches the workers as a task message whose event is `rename_event(...)`, with an
event type HA never fires, as imported statistics rows do: the same queue, spool and
acknowledgement as a state, so a rename point has the delivery guarantee of any point.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from core.ha_event import epoch_ns, parse_ha_time
from core.rules import Rules
from core.transform import FILTERED, InvalidEvent, Point, Skipped

RENAME_EVENT: Final = "ha_ingestor.entity_renamed"
"""The `event_type` of a rename's task message (HA never fires an event of this name)."""
RENAMES_MEASUREMENT: Final = "ha_entity_renames"
REGISTRY_ID_TAG: Final = "entity_registry_id"
REGISTRY_UPDATED: Final = "entity_registry_updated"

FoundBy = Literal["event", "registry"]
FOUND_BY: Final = ("event", "registry")


@dataclass(frozen=True, slots=True)
class Rename:
    """One entity id replaced by another, for the registry entry `registry_id`."""

    registry_id: str
    old_entity_id: str
    new_entity_id: str
    time: str | float
    """When: HA's ISO time (an event's `time_fired`) or epoch seconds."""
    found_by: FoundBy


@dataclass(frozen=True, slots=True)
class Announced:
    """A rename HA announced live, before the registry saying which entry it was is fetched."""

    old_entity_id: str
    new_entity_id: str
    time: str | float


def announced_rename(event: Mapping[str, Any], now: float) -> Announced | None:
    """The rename an `entity_registry_updated` event announces (action `update` with
    `old_entity_id`, as HA's recorder reads it); None for every other registry change.
    Its time is the event's `time_fired`, else `now`."""
    if event.get("event_type") != REGISTRY_UPDATED:
        return None
    data = event.get("data")
    if not isinstance(data, Mapping) or data.get("action") != "update":
        return None
    old, new = data.get("old_entity_id"), data.get("entity_id")
    if not isinstance(old, str) or not isinstance(new, str) or not old or not new or old == new:
        return None
    fired = event.get("time_fired")
    time: str | float = fired if isinstance(fired, str) and parse_ha_time(fired) else now
    return Announced(old, new, time)


def renames_seen(
    before: object, after: object, announced: Iterable[Announced], now: float
) -> list[Rename]:
    """The renames between two fetches of the entity registry (HA's list, or None when there
    was no earlier fetch): first those HA announced, then any other entry whose entity id
    changed (time: its `modified_at`, else `now`)."""
    old_ids, _ = _entity_ids(before)
    new_ids, new_times = _entity_ids(after)
    old_by_entity = {entity_id: rid for rid, entity_id in old_ids.items()}
    new_by_entity = {entity_id: rid for rid, entity_id in new_ids.items()}
    renames: list[Rename] = []
    explained: set[str] = set()
    for rename in announced:
        rid = new_by_entity.get(rename.new_entity_id) or old_by_entity.get(rename.old_entity_id)
        if rid is None:
            continue  # gone from the registry before it was fetched: no id to tie it to
        renames.append(
            Rename(rid, rename.old_entity_id, rename.new_entity_id, rename.time, "event")
        )
        explained.add(rid)
    for rid, entity_id in new_ids.items():
        was = old_ids.get(rid)
        if was is None or was == entity_id or rid in explained:
            continue
        renames.append(Rename(rid, was, entity_id, new_times.get(rid, now), "registry"))
    return renames


def rename_event(rename: Rename) -> dict[str, Any]:
    """The event of the task message for one rename: only what its point needs."""
    return {
        "event_type": RENAME_EVENT,
        "data": {
            "registry_id": rename.registry_id,
            "old_entity_id": rename.old_entity_id,
            "new_entity_id": rename.new_entity_id,
            "time": rename.time,
            "found_by": rename.found_by,
        },
    }


def rename_to_point(
    event: Mapping[str, Any], rules: Rules, extra_tags: Mapping[str, str] | None = None
) -> Point | Skipped:
    """The `ha_entity_renames` point of a rename, or FILTERED when the rules record neither
    name; raises InvalidEvent. Static tags apply, as to every point; enrichment does not."""
    data = event.get("data")
    if not isinstance(data, Mapping):
        raise InvalidEvent("rename data is missing or not an object")
    registry_id = data.get("registry_id")
    if not isinstance(registry_id, str) or not registry_id:
        raise InvalidEvent("rename registry_id is missing")
    old_domain, old_object = _split(data.get("old_entity_id"), "old_entity_id")
    new_domain, new_object = _split(data.get("new_entity_id"), "new_entity_id")
    found_by = data.get("found_by")
    if found_by not in FOUND_BY:
        raise InvalidEvent(f"rename found_by {found_by!r} is not one of {', '.join(FOUND_BY)}")
    time_ns = _time_ns(data.get("time"))
    old_id, new_id = f"{old_domain}.{old_object}", f"{new_domain}.{new_object}"
    if rules.for_entity(old_id) is None and rules.for_entity(new_id) is None:
        return FILTERED
    tags = {REGISTRY_ID_TAG: registry_id, "domain": new_domain, **rules.static_tags}
    fields: dict[str, float | str] = {
        "old_entity_id": old_object,
        "new_entity_id": new_object,
        "found_by": found_by,
    }
    return Point.of(RENAMES_MEASUREMENT, tags, fields, time_ns)


def _entity_ids(entities: object) -> tuple[dict[str, str], dict[str, float]]:
    """registry id → entity id, and registry id → `modified_at` (epoch s) where HA sends it."""
    ids: dict[str, str] = {}
    times: dict[str, float] = {}
    if not isinstance(entities, list):
        return ids, times
    for entry in entities:
        if not isinstance(entry, Mapping):
            continue
        rid, entity_id = entry.get("id"), entry.get("entity_id")
        if isinstance(rid, str) and isinstance(entity_id, str) and rid and entity_id:
            ids[rid] = entity_id
            modified = entry.get("modified_at")
            if isinstance(modified, int | float) and not isinstance(modified, bool):
                times[rid] = float(modified)
    return ids, times


def _split(entity_id: object, name: str) -> tuple[str, str]:
    if not isinstance(entity_id, str):
        raise InvalidEvent(f"rename {name} is missing")
    domain, dot, object_id = entity_id.partition(".")
    if not domain or not dot or not object_id:
        raise InvalidEvent(f"rename {name} {entity_id[:100]!r} is not an entity id")
    return domain, object_id


def _time_ns(value: object) -> int:
    moment = parse_ha_time(value)
    if moment is None:
        raise InvalidEvent(f"rename time {str(value)[:64]!r} is not a time")
    return epoch_ns(moment)
