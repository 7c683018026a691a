"""One HA event → one InfluxDB point, the way HA's InfluxDB integration builds it (DESIGN §3.2).

The pure core: no I/O, no clock, no mutable globals, shared by live ingest, the snapshot,
backfill, import and replay.
It follows `event_to_json` in HA's `components/influxdb/__init__.py`, with these deliberate
differences:

- time is `new_state.last_updated` (not `time_fired`), so a re-delivered or backfilled state
  overwrites its point instead of adding one; ISO 8601 strings and epoch seconds are accepted.
- one field name never changes type (InfluxDB refuses a field that does): string fields are
  exactly `state` or end in `_str`, float fields never do. So a number under a key ending in
  `_str` or named `state`, `value` or `time` gets HA's `_` clash suffix (`time` because
  InfluxDB 1.x refuses a field of that name). HA only suffixes a key already in the fields.
- a non-finite state (`nan`, `inf`) is kept as `state` only, not written as a NaN `value`;
  a state sent as a JSON number (HA always sends text) is read as its text.
- lists and dicts become JSON (sorted keys), not Python's repr, in `<name>_str`.
- the number in a string is only looked for in strings up to 255 characters (HA's longest
  state): HA's digit-tail regex backtracks quadratically on long strings.
- at most 200 attributes per point, string fields cut at 64 KiB (UTF-8), lone surrogates
  replaced; `Point.capped` counts what was cut. Tag attributes that are None or empty are
  left out (InfluxDB refuses empty tag values).
- `state_as_number` leaves `unknown` unmapped (HA maps it to 0, but never reaches that: it
  skips `unknown`). With `unknown` taken out of `ignore_states` it is recorded as a state only,
  not as a misleading 0.
- `extra_tags` (enrichment: area, device) come first, so neither HA's `domain`/`entity_id`
  nor tag attributes nor static `tags` can be overridden by them.
- with INSTANCE_TAG, `tag_instance` adds the `instance` tag (the home a message came from) to
  any point (state, heartbeat, statistics, rename), last, so it wins over a tag attribute or
  static tag of that name: a point's home is never in doubt.

Every point has a `state` or a `value` field, so a point without fields cannot happen.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from core.ha_event import epoch_ns
from core.rules import EntityRules, Rules

INSTANCE_TAG: Final = "instance"
"""The tag naming a point's home (INSTANCE_TAG)."""
MAX_ATTRIBUTES: Final = 200
MAX_STRING_BYTES: Final = 64 * 1024
MAX_DIGIT_TAIL_CHARS: Final = 255

# homeassistant/components/influxdb/const.py
RE_DIGIT_TAIL: Final = re.compile(r"^[^\.]*\d+\.?\d+[^\.]*$")
RE_DECIMAL: Final = re.compile(r"[^\d.]+")
_SURROGATES: Final = re.compile("[\ud800-\udfff]")
# homeassistant/helpers/state.py state_as_number (minus "unknown", see the module docstring)
STATE_AS_NUMBER: Final[Mapping[str, float]] = {
    "on": 1.0,
    "locked": 1.0,
    "above_horizon": 1.0,
    "open": 1.0,
    "home": 1.0,
    "off": 0.0,
    "unlocked": 0.0,
    "below_horizon": 0.0,
    "closed": 0.0,
    "not_home": 0.0,
}
_NOT_FOR_FLOATS: Final = frozenset({"state", "value", "time"})
_MIN_NS: Final = -(2**63) + 2  # InfluxDB's valid time range
_MAX_NS: Final = 2**63 - 2
_MISSING: Final = object()


@dataclass(frozen=True, slots=True)
class Point:
    """One InfluxDB point; time in nanoseconds whatever the write precision."""

    measurement: str
    tags: tuple[tuple[str, str], ...]
    """Sorted by key."""
    fields: tuple[tuple[str, float | str], ...]
    """Sorted by key; never empty."""
    time_ns: int
    capped: int = 0
    """Attributes dropped beyond MAX_ATTRIBUTES plus string fields truncated."""

    @classmethod
    def of(
        cls,
        measurement: str,
        tags: Mapping[str, str],
        fields: Mapping[str, float | str],
        time_ns: int,
        capped: int = 0,
    ) -> Point:
        """From tags and fields in any order: the point keeps both sorted by key."""
        return cls(
            measurement, tuple(sorted(tags.items())), tuple(sorted(fields.items())), time_ns, capped
        )


@dataclass(frozen=True, slots=True)
class Skipped:
    """A well-formed event that, by rule, makes no point."""

    rule: str
    """One of: not_a_state_event, no_new_state, ignored_state, filtered."""


NOT_A_STATE_EVENT: Final = Skipped("not_a_state_event")
NO_NEW_STATE: Final = Skipped("no_new_state")
IGNORED_STATE: Final = Skipped("ignored_state")
FILTERED: Final = Skipped("filtered")


class InvalidEvent(ValueError):
    """The event cannot be understood; the message says why. Callers dead-letter it."""


def event_to_point(
    event: Mapping[str, Any], rules: Rules, extra_tags: Mapping[str, str] | None = None
) -> Point | Skipped:
    """The point for a `state_changed` event, or why there is none; raises InvalidEvent.

    The steps, each a function below: the new state (or the rule that skips it) and its time,
    then the measurement, the tags and the fields; the event is checked whole before any of it.
    """
    data = _state_changed_data(event)
    if isinstance(data, Skipped):
        return data
    new_state = data.get("new_state")
    if new_state is None:
        return NO_NEW_STATE
    if not isinstance(new_state, Mapping):
        raise InvalidEvent("new_state is not an object")
    entity_id, domain, object_id = _entity_id(new_state, data)
    state = _state_text(new_state)
    if state is None or state in rules.ignore_states:
        return IGNORED_STATE
    entity = rules.for_entity(entity_id)
    if entity is None:
        return FILTERED
    attributes = _attributes(new_state)
    time_ns = _time_ns(new_state.get("last_updated"))

    measurement, measured_by = _measurement(entity_id, domain, attributes, rules, entity)
    tags = _entity_tags(domain, object_id, extra_tags)
    fields, capped = _state_fields(state)
    capped += _add_attributes(
        attributes, rules.tags_attributes, entity.ignore_attributes, measured_by, tags, fields
    )
    tags.update(rules.static_tags)
    return Point.of(measurement, tags, fields, time_ns, capped)


def tag_instance(point: Point, instance: str | None) -> Point:
    """The point with the `instance` tag naming its home; unchanged without one (a message of
    a listener older than home names)."""
    if instance is None:
        return point
    tags = dict(point.tags)
    tags[INSTANCE_TAG] = _clean(instance)
    return Point.of(point.measurement, tags, dict(point.fields), point.time_ns, point.capped)


def _state_changed_data(event: Mapping[str, Any]) -> Mapping[str, Any] | Skipped:
    """The `data` of a `state_changed` event; NOT_A_STATE_EVENT for any other event type."""
    if not isinstance(event, Mapping):
        raise InvalidEvent(f"the event is a {type(event).__name__}, not an object")
    event_type = event.get("event_type")
    if event_type != "state_changed":
        if event_type is None:
            raise InvalidEvent("event_type is missing")
        if not isinstance(event_type, str):
            raise InvalidEvent(f"event_type is a {type(event_type).__name__}, not a string")
        return NOT_A_STATE_EVENT
    data = event.get("data")
    if not isinstance(data, Mapping):
        raise InvalidEvent("data is missing" if data is None else "data is not an object")
    return data


def _entity_id(new_state: Mapping[str, Any], data: Mapping[str, Any]) -> tuple[str, str, str]:
    """(entity id, domain, object id) of the state; the event's entity id if the state has none."""
    entity_id = new_state.get("entity_id") or data.get("entity_id")
    if not isinstance(entity_id, str):
        raise InvalidEvent("new_state.entity_id is missing")
    domain, dot, object_id = entity_id.partition(".")
    if not domain or not dot:
        raise InvalidEvent(f"entity_id {entity_id[:100]!r} has no domain")
    if not object_id:
        raise InvalidEvent(f"entity_id {entity_id[:100]!r} has no object id")
    return entity_id, domain, object_id


def _state_text(new_state: Mapping[str, Any]) -> str | None:
    """The state as text (a JSON number read as its text); None for a null state."""
    state = new_state.get("state", _MISSING)
    if state is _MISSING:
        raise InvalidEvent("new_state.state is missing")
    if state is None or isinstance(state, str):
        return state
    if isinstance(state, bool) or not isinstance(state, int | float):
        raise InvalidEvent(f"new_state.state is a {type(state).__name__}, not a string")
    return str(state)


def _attributes(new_state: Mapping[str, Any]) -> Mapping[Any, Any]:
    """The state's attributes; none when HA sent null."""
    attributes = new_state.get("attributes")
    if attributes is None:
        return {}
    if not isinstance(attributes, Mapping):
        raise InvalidEvent("new_state.attributes is not an object")
    return attributes


def _measurement(
    entity_id: str,
    domain: str,
    attributes: Mapping[Any, Any],
    rules: Rules,
    entity: EntityRules,
) -> tuple[str, str | None]:
    """The measurement, the first choice that applies (DESIGN §3.2), and the attribute it was
    taken from, if any: as in HA, that attribute is then not also a field."""
    if entity.override_measurement:
        return _clean(entity.override_measurement), None
    if rules.override_measurement:
        return _clean(rules.override_measurement), None
    if rules.measurement_attr == "entity_id":
        return _clean(entity_id), None
    if rules.measurement_attr == "domain__device_class":
        device_class = attributes.get("device_class")
        if device_class is None:
            return _clean(domain), None
        return _clean(f"{domain}__{_text(device_class)}"), "device_class"
    unit = attributes.get("unit_of_measurement")
    if unit is None or unit == "":
        return _clean(rules.default_measurement or entity_id), None
    return _clean(_text(unit)), "unit_of_measurement"


def _entity_tags(
    domain: str, object_id: str, extra_tags: Mapping[str, str] | None
) -> dict[str, str]:
    """Enrichment tags first, then HA's `domain` and `entity_id` (the object id) over them."""
    tags: dict[str, str] = {}
    if extra_tags:
        for key, value in extra_tags.items():
            if key and value:
                tags[_clean(str(key))] = _clean(str(value))
    tags["domain"] = _clean(domain)
    tags["entity_id"] = _clean(object_id)
    return tags


def _state_fields(state: str) -> tuple[dict[str, float | str], int]:
    """The state's fields and 1 if its text was cut: `value` for a number; else `state`, plus
    `value` where HA's `state_as_number` maps it to one."""
    number = _as_float(state)
    if number is not None and math.isfinite(number):
        return {"value": number}, 0
    text, cut = _capped_text(state)
    fields: dict[str, float | str] = {"state": text}
    if (as_number := STATE_AS_NUMBER.get(text)) is not None:
        fields["value"] = as_number
    return fields, cut


def _add_attributes(
    attributes: Mapping[Any, Any],
    tags_attributes: frozenset[str],
    ignore_attributes: frozenset[str],
    measured_by: str | None,
    tags: dict[str, str],
    fields: dict[str, float | str],
) -> int:
    """Each attribute into `tags` (HA's `tags_attributes`) or `fields` (the others, but the
    ignored ones, the one the measurement was taken from and those beyond MAX_ATTRIBUTES);
    returns how many were dropped or cut."""
    capped = kept = 0
    for key, value in attributes.items():
        if not isinstance(key, str):
            key = str(key)  # only from non-JSON callers
        if not key:
            continue
        if key in tags_attributes:
            if value is not None and (text := _clean(_text(value))):
                tags[_clean(key)] = text
            continue
        if key == measured_by or key in ignore_attributes:
            continue
        kept += 1
        if kept > MAX_ATTRIBUTES:
            capped += 1
            continue
        capped += _add_attribute_fields(_clean(key), value, fields)
    return capped


def _add_attribute_fields(key: str, value: Any, fields: dict[str, float | str]) -> int:
    """A float field for a number; else `<key>_str`, and the number of a string that ends in
    digits as `<key>`. A key already taken gets HA's `_` suffix. Returns 1 if text was cut."""
    if key in fields:
        key += "_"
    cut = 0
    number = _as_float(value)
    if number is None:
        text, cut = _capped_text(_text(value))
        fields[key + "_str"] = text
        if len(text) <= MAX_DIGIT_TAIL_CHARS and RE_DIGIT_TAIL.match(text):
            number = _as_float(RE_DECIMAL.sub("", text))
    if number is not None and math.isfinite(number):
        fields[_float_key(key)] = number
    return cut


def _as_float(value: Any) -> float | None:
    """float(value) as HA tries it, or None. Words are answered without float() raising,
    which is costly: after optional spaces a float starts with a sign, digit, dot, inf or nan."""
    if value is None or (isinstance(value, str) and value[:1].isalpha() and value[0] not in "iInN"):
        return None
    try:
        return float(value)
    except (ValueError, TypeError, OverflowError):
        return None


def _float_key(key: str) -> str:
    """The name for a float field, never one that is (or could be) a string field's."""
    if key in _NOT_FOR_FLOATS or key.endswith("_str"):
        return key + "_"
    return key


def _text(value: object) -> str:
    """A non-number as HA would store it, but JSON for lists and dicts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list | dict | tuple):
        try:
            # The stored text users query (stdlib: ", " separators, sorted keys): never changes.
            return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
        except (TypeError, ValueError, RecursionError):  # mixed key types, cycles: not JSON
            return f"<unserialisable {type(value).__name__}>"
    return str(value)


def _clean(text: str) -> str:
    """The text without lone surrogates, which cannot be encoded as UTF-8."""
    if text.isascii():
        return text
    return _SURROGATES.sub("\ufffd", text)


def _capped_text(text: str) -> tuple[str, int]:
    """The text cleaned and cut to MAX_STRING_BYTES of UTF-8; 1 if it was cut."""
    if text.isascii():
        if len(text) <= MAX_STRING_BYTES:
            return text, 0
        return text[:MAX_STRING_BYTES], 1
    text = _SURROGATES.sub("\ufffd", text)
    if len(text) <= MAX_STRING_BYTES // 4:
        return text, 0
    raw = text.encode()
    if len(raw) <= MAX_STRING_BYTES:
        return text, 0
    return raw[:MAX_STRING_BYTES].decode(errors="ignore"), 1


def _time_ns(value: object) -> int:
    """Nanoseconds since the epoch from an ISO 8601 string (naive = UTC) or epoch seconds."""
    if value is None:
        raise InvalidEvent("new_state.last_updated is missing")
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            ns = epoch_ns(moment)
        except (ValueError, OverflowError):
            raise InvalidEvent(
                f"new_state.last_updated {value[:64]!r} is not an ISO 8601 timestamp"
            ) from None
    elif isinstance(value, int) and not isinstance(value, bool):
        ns = value * 1_000_000_000
    elif isinstance(value, float) and math.isfinite(value):
        # Rounded to the microsecond through the decimal text, so an epoch float from the
        # history API gives the same nanoseconds as the ISO string of the same state.
        ns = round(Decimal(repr(value)) * 1_000_000) * 1_000
    else:
        raise InvalidEvent(
            f"new_state.last_updated is a {type(value).__name__}, "
            "not an ISO 8601 string or epoch seconds"
        )
    if not _MIN_NS <= ns <= _MAX_NS:
        raise InvalidEvent(
            f"new_state.last_updated {value!r} is outside InfluxDB's time range (1677..2262)"
        )
    return ns
