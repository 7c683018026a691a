"""Field types the store already holds, and the shadow field a value moves to when its own type
would clash with them: InfluxDB refuses a point whose field has another type than the one stored.

Pure: the workers learn the types (workers/sinks/field_types.py: `SHOW FIELD KEYS` on InfluxDB
1.x, the text of a refused write where there is no schema query) and ask `shadow` what to write.

Our points hold two field types (core/transform.py): strings, named `state` or `<key>_str`, and
floats, named anything else. Other writers (an older HA, Node-RED, Telegraf) may have stored a
name with another type first. Then:

- text meeting a number or boolean goes to `<field>_str`, HA's own name for text;
- a number meeting an integer, text or boolean goes to `<field>_float`. Not HA's `_` clash
  suffix: `value_` is already HA's float field for an attribute called `value`, and `state_`
  could meet one called `state`. `_float` is never a string name of ours (those are `state` or
  end in `_str`), never one of the names `_float_key` keeps off floats, and says what it holds.

A shadow name the point already uses gets HA's `_` suffix until it is free. A shadow the store
holds with another type cannot take the value: the field stays, InfluxDB refuses the point, and
it is dead-lettered with the store's own words, as before.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Final

from core.transform import Point

FLOAT: Final = "float"
STRING: Final = "string"
FIELD_TYPES: Final = frozenset({FLOAT, "integer", "unsigned", STRING, "boolean"})
"""InfluxDB's names for its field types, as `SHOW FIELD KEYS` and its refusals spell them."""

FieldTypes = Mapping[str, str]
"""Field name → the type the store holds it with, for one measurement."""

# InfluxDB 1.x tsdb/shard.go (2.x and the 1.8 v2 API quote the same text, sometimes with a
# prefix); the quotes may come JSON-escaped when the text is a raw response body.
_CONFLICT: Final = re.compile(
    r'input field \\?"(?P<field>.+?)\\?" on measurement \\?"(?P<measurement>.+?)\\?" '
    r"is type (?P<given>\w+), already exists as type (?P<held>\w+)"
)


# InfluxDB 3 (influxdb3_write's validator): the measurement is not named, the refused line is.
_COLUMN_CONFLICT: Final = re.compile(
    r"invalid column type for column '(?P<field>.+?)', "
    r"expected iox::column_type::field::(?P<held>\w+), got iox::column_type::field::(?P<given>\w+)"
)
_IOX_TYPES: Final = {
    "float": FLOAT,
    "integer": "integer",
    "uinteger": "unsigned",
    "string": STRING,
    "boolean": "boolean",
}
"""InfluxDB 3's column type names → the InfluxDB names the rest of this module speaks."""


@dataclass(frozen=True, slots=True)
class Conflict:
    """One field InfluxDB refused for its type: what was written, what it holds."""

    measurement: str
    field: str
    given: str
    held: str


@dataclass(frozen=True, slots=True)
class Shadowed:
    """A point with its clashing values moved, and which moved where."""

    point: Point
    moved: tuple[tuple[str, str], ...] = ()
    """(field, shadow) for each value moved."""


def conflicts_in(text: str) -> list[Conflict]:
    """The field type conflicts a refused write's text names (none for any other refusal)."""
    return [
        Conflict(m["measurement"], m["field"], m["given"], m["held"])
        for m in _CONFLICT.finditer(text)
        if m["held"] in FIELD_TYPES
    ]


def column_conflict(measurement: str, text: str) -> Conflict | None:
    """The type conflict in InfluxDB 3's refusal of one line of `measurement`, if it is one."""
    found = _COLUMN_CONFLICT.search(text)
    if found is None:
        return None
    held, given = _IOX_TYPES.get(found["held"]), _IOX_TYPES.get(found["given"])
    if held is None or given is None:
        return None
    return Conflict(measurement, found["field"], given, held)


def type_of(value: float | str) -> str:
    """The type a value of ours is written with (core/line_protocol.py: never an integer)."""
    return STRING if isinstance(value, str) else FLOAT


def shadow(point: Point, held: FieldTypes) -> Shadowed:
    """The point with each value whose field the store holds with another type moved to its
    shadow; the same point when nothing clashes."""
    if not held:
        return Shadowed(point)
    clashing = [
        key
        for key, value in point.fields
        if (stored := held.get(key)) is not None and stored != type_of(value)
    ]
    if not clashing:
        return Shadowed(point)
    fields = dict(point.fields)
    moved: list[tuple[str, str]] = []
    for key in clashing:
        value = fields[key]
        name = shadow_name(key, value)
        while name in fields:
            name += "_"
        if held.get(name, type_of(value)) != type_of(value):
            continue  # the shadow clashes too: InfluxDB refuses the point
        del fields[key]
        fields[name] = value
        moved.append((key, name))
    if not moved:
        return Shadowed(point)
    return Shadowed(replace(point, fields=tuple(sorted(fields.items()))), tuple(moved))


def shadow_name(key: str, value: float | str) -> str:
    """Where a value goes when `key` holds another type: `<key>_str` for text (HA's name for
    text), `<key>_float` for a number."""
    return f"{key}_str" if isinstance(value, str) else f"{key}_float"
