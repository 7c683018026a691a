"""Points → InfluxDB line protocol, the text both the v1 `/write` and v2 write APIs take.

Escaping follows influxdb-client (the v2 client): in names a backslash is doubled and commas,
spaces (and in keys and tag values equals signs) are backslash-escaped; string field values
escape backslashes and double quotes. Newlines, carriage returns (and tabs in names) are
written as the two characters `\\n`, `\\r`, `\\t`, so one point is always one line; InfluxDB
stores those two characters. Floats are written with repr(), which round-trips exactly and
never gives an integer (`1i`) or boolean.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Final

from core.rules import PRECISIONS
from core.transform import Point

_MEASUREMENT: Final = str.maketrans(
    {"\\": "\\\\", ",": "\\,", " ": "\\ ", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
)
_KEY: Final = str.maketrans(
    {"\\": "\\\\", ",": "\\,", "=": "\\=", " ": "\\ ", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
)
_STRING: Final = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"})
# translate() is slow; most names need no escaping, and a search says so much faster.
_MEASUREMENT_SPECIAL: Final = re.compile(r"[\\, \n\r\t]")
_KEY_SPECIAL: Final = re.compile(r"[\\,= \n\r\t]")
_STRING_SPECIAL: Final = re.compile(r'[\\"\n\r]')


def _escape_key(text: str) -> str:
    return text.translate(_KEY) if _KEY_SPECIAL.search(text) else text


def encode_point(point: Point, precision: str = "ns") -> str:
    """One line for the point, its time in `precision` units; ValueError if unwritable."""
    try:
        divisor = PRECISIONS[precision]
    except KeyError:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}") from None
    if not point.measurement:
        raise ValueError("a point needs a measurement")
    if not point.fields:
        raise ValueError(f"a point needs at least one field ({point.measurement})")
    measurement = point.measurement
    if _MEASUREMENT_SPECIAL.search(measurement):
        measurement = measurement.translate(_MEASUREMENT)
    parts = [measurement]
    for key, value in point.tags:
        if key and value:  # InfluxDB refuses empty tags; influxdb-client leaves them out too
            parts.append(f",{_escape_key(key)}={_escape_key(value)}")
    separator = " "
    for key, field in point.fields:
        if not key:
            raise ValueError(f"a field needs a name ({point.measurement})")
        if isinstance(field, str):
            text = field.translate(_STRING) if _STRING_SPECIAL.search(field) else field
            encoded = f'"{text}"'
        else:
            number = float(field)
            if not math.isfinite(number):
                raise ValueError(f"field {key!r} is {number}, which InfluxDB cannot store")
            encoded = repr(number)
        parts.append(f"{separator}{_escape_key(key)}={encoded}")
        separator = ","
    parts.append(f" {point.time_ns // divisor}")
    return "".join(parts)


def encode_points(points: Iterable[Point], precision: str = "ns") -> str:
    """Lines for many points, newline-separated (no trailing newline)."""
    return "\n".join(encode_point(point, precision) for point in points)
