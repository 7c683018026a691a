"""Points → the line protocol VictoriaMetrics keeps whole.

VictoriaMetrics names a sample `{measurement}_{field}`, turns tags into labels, and stores every
non-numeric field value as 0: `state="on"` would become `state_state 0`, the text lost. So:

- numeric fields go out as they are, on one line: `sensor_value{entity_id="t"} 21.5`;
- each text field `f="v"` becomes a line of its own whose value is 1 and whose label `f`
  carries the text, the way Prometheus "info" metrics do: `state_state{entity_id="door",
  state="on"} 1`. The label is `f_text` when the point already has a tag named `f`. Text
  attributes (`<attr>_str`) follow the same mapping: nothing is zeroed, ever.
- an empty text (a tag cannot be empty) and text beyond the guard's limit are left out and
  counted; HA never sends an empty state.

The latest text of an entity is the series whose last sample is newest:
`topk(1, timestamp(last_over_time(state_state{entity_id="door"}[1d])))`.

`TextGuard` bounds the label values one series key (measurement, tags, field) may take in a
window of event time, so a free-text state cannot explode the series count. It keeps state and
is fed times by the caller (no clock here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from core.line_protocol import encode_point
from core.transform import Point

TEXT_LABEL_SUFFIX: Final = "_text"
"""Appended to a text field's label name when a tag of that name exists already."""

_SeriesKey = tuple[str, tuple[tuple[str, str], ...], str]


@dataclass(slots=True)
class _Window:
    index: int
    values: set[str] = field(default_factory=set)


class TextGuard:
    """At most `max_values` distinct texts per series key per window of `window_ns` event time."""

    def __init__(self, max_values: int, window_ns: int) -> None:
        if max_values < 1 or window_ns < 1:
            raise ValueError("a text guard needs max_values >= 1 and window_ns >= 1")
        self.max_values = max_values
        self.window_ns = window_ns
        self._seen: dict[_SeriesKey, _Window] = {}

    def admit(self, key: _SeriesKey, text: str, time_ns: int) -> bool:
        """Whether `text` may be written for `key` at `time_ns`; remembers it when it may."""
        index = time_ns // self.window_ns
        window = self._seen.get(key)
        # A late point of an earlier window counts against the newest window: judging it
        # alone would let a backfill open a fresh allowance per old window.
        if window is None or window.index < index:
            window = self._seen[key] = _Window(index)
        if text in window.values:
            return True
        if len(window.values) >= self.max_values:
            return False
        window.values.add(text)
        return True


@dataclass(frozen=True, slots=True)
class VictoriaLines:
    """The lines for one point, newline-joined ('' when everything was left out)."""

    text: str
    left_out: int
    """Text values not written: over the guard's limit, or empty."""


def encode_victoria(point: Point, guard: TextGuard, precision: str = "ns") -> VictoriaLines:
    """The point as VictoriaMetrics stores it without loss; ValueError if unwritable."""
    numbers = tuple((k, v) for k, v in point.fields if not isinstance(v, str))
    lines: list[str] = []
    if numbers:
        lines.append(encode_point(_with(point, point.tags, numbers), precision))
    tag_keys = {key for key, _ in point.tags}
    left_out = 0
    for key, value in point.fields:
        if not isinstance(value, str):
            continue
        if not value or not guard.admit((point.measurement, point.tags, key), value, point.time_ns):
            left_out += 1
            continue
        label = key + TEXT_LABEL_SUFFIX if key in tag_keys else key
        tags = tuple(sorted((*point.tags, (label, value))))
        lines.append(encode_point(_with(point, tags, ((key, 1.0),)), precision))
    return VictoriaLines("\n".join(lines), left_out)


def _with(
    point: Point, tags: tuple[tuple[str, str], ...], fields: tuple[tuple[str, float | str], ...]
) -> Point:
    return Point(point.measurement, tags, fields, point.time_ns, point.capped)
