"""Line protocol as InfluxDB 3 reads it: one line in, a parsed point or the engine's message out.

Pure: no clock and no store. The messages are the ones InfluxDB 3 Core puts in `error_message`
(see tests/fixtures/README.md), so a client can be tested against their wording.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["FieldKind", "LineError", "ParsedLine", "parse_line", "render_line"]

FieldKind = Literal["float", "integer", "uinteger", "string", "boolean"]
FieldValue = float | int | str | bool
NO_FIELDS = "No fields were provided"
_TRUE = {"t", "T", "true", "True", "TRUE"}
_FALSE = {"f", "F", "false", "False", "FALSE"}


class LineError(ValueError):
    """A line the engine cannot parse; the message is the engine's `error_message`."""


@dataclass(frozen=True)
class ParsedLine:
    """One point: its table, tags, typed fields and raw timestamp (None: the server's clock)."""

    measurement: str
    tags: tuple[tuple[str, str], ...]
    fields: tuple[tuple[str, FieldKind, FieldValue], ...]
    timestamp: int | None


def _split_unescaped(text: str, separator: str, *, quotes: bool = False) -> list[str]:
    """Split on a separator not escaped by a backslash (nor inside quotes when asked)."""
    parts: list[str] = []
    current: list[str] = []
    escaped = in_quotes = False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            current.append(char)
            escaped = True
        elif quotes and char == '"':
            current.append(char)
            in_quotes = not in_quotes
        elif char == separator and not in_quotes:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    """Drop the backslash before an escaped comma, equals sign, space or backslash."""
    out: list[str] = []
    index = 0
    while index < len(text):
        if text[index] == "\\" and index + 1 < len(text) and text[index + 1] in ',= \\"':
            out.append(text[index + 1])
            index += 2
        else:
            out.append(text[index])
            index += 1
    return "".join(out)


def _field_value(raw: str) -> tuple[FieldKind, FieldValue]:
    """The type and value of a field as the suffix or quoting says (float when bare)."""
    if len(raw) >= 2 and raw.startswith('"') and raw.endswith('"'):
        return "string", raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if raw in _TRUE or raw in _FALSE:
        return "boolean", raw in _TRUE
    try:
        if raw.endswith("i"):
            return "integer", int(raw[:-1])
        if raw.endswith("u") and not raw.startswith("-"):
            return "uinteger", int(raw[:-1])
        return "float", float(raw)
    except ValueError:
        raise LineError(f"Unable to parse field value: `{raw}`") from None


def _head(head: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Measurement and tags from the part before the first unescaped space."""
    measurement, *tag_parts = _split_unescaped(head, ",")
    if not measurement:
        raise LineError("Expected measurement name")
    tags: list[tuple[str, str]] = []
    for part in tag_parts:
        key, sep, value = _split_unescaped(part, "=")[0], "=" in part, part.partition("=")[2]
        if not sep:
            raise LineError(f"Tag set malformed: could not find equals sign in `{part}`")
        if not key:
            raise LineError(f"Expected tag key, got `{part}`")
        if not value:
            raise LineError(f"Expected tag value, got `{part}`")
        tags.append((_unescape(key), _unescape(value)))
    return _unescape(measurement), tuple(tags)


def _fields(text: str) -> tuple[tuple[str, FieldKind, FieldValue], ...]:
    """The field set; a missing or empty one is the engine's 'No fields were provided'."""
    fields: list[tuple[str, FieldKind, FieldValue]] = []
    seen: set[str] = set()
    for part in _split_unescaped(text, ",", quotes=True):
        key, _, raw = part.partition("=")
        if not key or not raw:
            raise LineError(NO_FIELDS)
        name = _unescape(key)
        if name in seen:
            raise LineError(f"invalid line protocol - multiple instances of '{name}' field found")
        seen.add(name)
        fields.append((name, *_field_value(raw)))
    return tuple(fields)


def parse_line(line: str) -> ParsedLine:
    """Parse one non-empty, non-comment line or raise LineError with the engine's words."""
    sections = _split_unescaped(line, " ", quotes=True)
    head, rest = sections[0], sections[1:]
    measurement, tags = _head(head)
    if not rest or not rest[0]:
        raise LineError(NO_FIELDS)
    fields = _fields(rest[0])
    timestamp: int | None = None
    if len(rest) > 1:
        trailing = " ".join(rest[1:])
        try:
            timestamp = int(rest[1])
        except ValueError:
            raise LineError(
                f"Could not parse entire line. Found trailing content: `{trailing}`"
            ) from None
        if len(rest) > 2:
            raise LineError(
                f"Could not parse entire line. Found trailing content: `{' '.join(rest[2:])}`"
            )
    return ParsedLine(measurement, tags, fields, timestamp)


def render_line(line: ParsedLine, raw: str) -> str:
    """The line as a refused-line entry shows it: string field values without their quotes.

    The documented type-conflict example shows `temp="hi"` as `temp=hi`; only that much of
    the engine's rendering is known, so the raw head and timestamp are kept.
    """
    sections = _split_unescaped(raw, " ", quotes=True)
    fields = ",".join(
        f"{_split_unescaped(part, '=')[0]}={part.partition('=')[2].strip(chr(34))}"
        for part in _split_unescaped(sections[1], ",", quotes=True)
    )
    return " ".join([sections[0], fields, *sections[2:]]) if line.fields else raw
