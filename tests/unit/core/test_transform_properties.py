"""Properties of the core over any HA-shaped input: it never crashes, a field never changes
type, NaN/inf never reach InfluxDB, and every line parses back to its point."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.line_protocol import encode_point
from core.rules import PRECISIONS, Rules
from core.transform import InvalidEvent, Point, Skipped, _as_float, event_to_point

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- a strict line-protocol parser (InfluxDB 2.x rules), for checking the encoder ------------

_FLOAT = re.compile(r"-?\d+(\.\d+)?(e[+-]\d+)?")
_TIMESTAMP = re.compile(r"-?\d+")
_NAME_ESCAPABLE = {",", " ", "\\"}
_KEY_ESCAPABLE = {",", "=", " ", "\\"}


class ParseError(AssertionError):
    pass


def _read(line: str, i: int, stops: set[str], escapable: set[str]) -> tuple[str, int]:
    """Up to an unescaped stop character; a backslash before anything else is literal."""
    out = []
    while i < len(line):
        char = line[i]
        if char == "\\" and i + 1 < len(line) and line[i + 1] in escapable:
            out.append(line[i + 1])
            i += 2
            continue
        if char in stops:
            break
        out.append(char)
        i += 1
    return "".join(out), i


def _expect(line: str, i: int, char: str) -> int:
    if i >= len(line) or line[i] != char:
        raise ParseError(f"expected {char!r} at {i} in {line!r}")
    return i + 1


def parse_line(line: str) -> tuple[str, dict[str, str], dict[str, float | str], int]:
    """measurement, tags, fields, timestamp, or ParseError."""
    if "\n" in line or "\r" in line:
        raise ParseError("a raw line break inside a line")
    if line.startswith("#"):
        raise ParseError("a comment line")
    measurement, i = _read(line, 0, {",", " "}, _NAME_ESCAPABLE)
    if not measurement:
        raise ParseError("empty measurement")
    tags: dict[str, str] = {}
    while i < len(line) and line[i] == ",":
        key, i = _read(line, i + 1, {"=", ",", " "}, _KEY_ESCAPABLE)
        i = _expect(line, i, "=")
        value, i = _read(line, i, {",", " ", "="}, _KEY_ESCAPABLE)
        if not key or not value:
            raise ParseError(f"empty tag key or value in {line!r}")
        tags[key] = value
    i = _expect(line, i, " ")
    fields: dict[str, float | str] = {}
    while True:
        key, i = _read(line, i, {"=", ",", " "}, _KEY_ESCAPABLE)
        i = _expect(line, i, "=")
        if not key:
            raise ParseError("empty field key")
        if i < len(line) and line[i] == '"':
            i += 1
            out = []
            while True:
                if i >= len(line):
                    raise ParseError("unterminated string")
                char = line[i]
                if char == "\\" and i + 1 < len(line) and line[i + 1] in ('"', "\\"):
                    out.append(line[i + 1])
                    i += 2
                elif char == '"':
                    i += 1
                    break
                else:
                    out.append(char)
                    i += 1
            fields[key] = "".join(out)
        else:
            raw, i = _read(line, i, {",", " "}, set())
            if not _FLOAT.fullmatch(raw):
                raise ParseError(f"{raw!r} is not a float literal")
            fields[key] = float(raw)
        if i < len(line) and line[i] == ",":
            i += 1
            continue
        break
    i = _expect(line, i, " ")
    if not _TIMESTAMP.fullmatch(line[i:]):
        raise ParseError(f"bad timestamp {line[i:]!r}")
    return measurement, tags, fields, int(line[i:])


def stored_name(text: str) -> str:
    """What InfluxDB keeps of a name or tag value: line breaks and tabs as `\\n` `\\r` `\\t`."""
    return text.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def stored_string(text: str) -> str:
    return text.replace("\n", "\\n").replace("\r", "\\r")


def assert_round_trips(point: Point, precision: str) -> None:
    measurement, tags, fields, timestamp = parse_line(encode_point(point, precision))
    assert measurement == stored_name(point.measurement)
    assert tags == {stored_name(k): stored_name(v) for k, v in point.tags if k and v}
    expected: dict[str, float | str] = {
        stored_name(k): stored_string(v) if isinstance(v, str) else v for k, v in point.fields
    }
    assert fields == expected
    assert all(type(fields[k]) is type(v) for k, v in expected.items())
    assert timestamp == point.time_ns // PRECISIONS[precision]


def test_the_parser_is_strict() -> None:
    for bad in [
        "m value=1i 1",
        "m value=true 1",
        "m value=nan 1",
        'm value="x 1',
        "m,t= value=1.0 1",
        "m value=1.0",
        "m  value=1.0 1",
        "m value=1.0 1\nm value=2.0 2",
        "#m value=1.0 1",
    ]:
        with pytest.raises(ParseError):
            parse_line(bad)
    assert parse_line('a\\ b,t\\=k=v\\,w f\\ k="q\\"\\\\",g=-1.5e-07 -3') == (
        "a b",
        {"t=k": "v,w"},
        {"f k": 'q"\\', "g": -1.5e-07},
        -3,
    )


# --- HA-shaped events -------------------------------------------------------------------------

WORDS = ["on", "off", "home", "unknown", "unavailable", "", "away", "nan", "inf", "-inf"]
NUMERIC_TEXT = st.from_regex(r"-?\d{1,7}(\.\d{1,4})?", fullmatch=True)
TRICKY_TEXT = st.sampled_from(
    ["v1.2", "Level 12", "1,234 W", "1.2.3", "x5", "12:30", "1e400", "1_000", " 7 ", "١٢", "é✓"]
)
TEXT = st.text(max_size=12) | st.sampled_from(WORDS) | NUMERIC_TEXT | TRICKY_TEXT
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.just(10**400)
    | st.floats()
    | TEXT
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
KEYS = st.sampled_from(
    [
        "state",
        "value",
        "time",
        "value_",
        "unit_of_measurement",
        "device_class",
        "friendly_name",
        "level",
        "level_str",
        "x_str",
        "",
    ]
) | st.text(max_size=8)
ATTRIBUTES = st.dictionaries(KEYS, VALUES, max_size=8)
ENTITY_IDS = st.sampled_from(
    ["sensor.a", "sensor.b_c", "light.kitchen", "binary_sensor.door", "sensor.x.y", "sensor.a b"]
)
ZONES = st.sampled_from([None, UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))])
ISO_TIMES = st.builds(
    lambda moment, zone: moment.replace(tzinfo=zone).isoformat(),
    st.datetimes(min_value=datetime(1678, 1, 1), max_value=datetime(2262, 1, 1)),  # noqa: DTZ001
    ZONES,
)
TIMES = ISO_TIMES | st.floats(min_value=-1e10, max_value=1e10) | st.integers(-(10**10), 10**10)
STATES = st.sampled_from(WORDS) | NUMERIC_TEXT | TRICKY_TEXT | st.text(max_size=12)

RULES = [
    Rules(),
    Rules.from_mapping(
        {
            "measurement_attr": "domain__device_class",
            "tags_attributes": ["friendly_name", "level"],
            "ignore_states": [],
            "tags": {"site": "home"},
        }
    ),
    Rules.from_mapping(
        {
            "measurement_attr": "entity_id",
            "ignore_attributes": ["x_str"],
            "component_config_glob": {"sensor.*": {"override_measurement": "sensors"}},
            "include": {"domains": ["sensor", "light"]},
            "exclude": {"entities": ["sensor.b_c"]},
        }
    ),
    Rules.from_mapping({"default_measurement": "ha", "ignore_states": ["away"]}),
]


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    """state_changed events as HA sends them, with any attributes and any state text."""
    entity_id = draw(ENTITY_IDS)
    return {
        "event_type": "state_changed",
        "data": {
            "entity_id": entity_id,
            "old_state": None,
            "new_state": {
                "entity_id": entity_id,
                "state": draw(STATES),
                "attributes": draw(ATTRIBUTES),
                "last_updated": draw(ISO_TIMES),
            },
        },
    }


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return strategy | st.none() | VALUES


@st.composite
def any_events(draw: st.DrawFn) -> Any:
    """Anything shaped more or less like an HA event: keys missing, wrong types, odd values."""
    new_state = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "entity_id": _maybe(ENTITY_IDS | st.text(max_size=6)),
                "state": _maybe(STATES),
                "attributes": _maybe(ATTRIBUTES),
                "last_updated": _maybe(TIMES | st.text(max_size=8)),
            },
        )
    )
    data = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "entity_id": _maybe(ENTITY_IDS),
                "new_state": st.just(new_state) | st.none() | VALUES,
                "old_state": VALUES,
            },
        )
    )
    event = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "event_type": st.sampled_from(["state_changed", "call_service"]) | VALUES,
                "data": st.just(data) | VALUES,
                "time_fired": TIMES,
            },
        )
    )
    return draw(st.just(event) | VALUES)


def check_point(point: Point) -> None:
    """The invariants every point holds on its own."""
    assert point.measurement
    assert point.fields
    assert point.capped >= 0
    assert [k for k, _ in point.tags] == sorted(k for k, _ in point.tags)
    assert [k for k, _ in point.fields] == sorted(k for k, _ in point.fields)
    for tag, tag_value in point.tags:
        assert isinstance(tag, str)
        assert tag
        assert isinstance(tag_value, str)
        assert tag_value
    for key, value in point.fields:
        assert key
        if isinstance(value, str):
            assert key == "state" or key.endswith("_str"), key
        else:
            assert type(value) is float, (key, value)
            assert math.isfinite(value), (key, value)
            assert key != "state"
            assert not key.endswith("_str"), key
    for text in [point.measurement, *(k + v for k, v in point.tags), *(k for k, _ in point.fields)]:
        text.encode()  # no lone surrogates: the sink can always encode the line


@SETTINGS
@given(event=any_events(), rules=st.sampled_from(RULES))
def test_any_event_gives_a_point_a_skip_or_invalid_event(event: Any, rules: Rules) -> None:
    result: Point | Skipped | InvalidEvent
    try:
        result = event_to_point(event, rules)
    except InvalidEvent as exc:
        result = exc
    if isinstance(result, InvalidEvent):
        assert str(result), "an InvalidEvent says why"
    elif isinstance(result, Skipped):
        assert result.rule in {"not_a_state_event", "no_new_state", "ignored_state", "filtered"}
    else:
        assert isinstance(result, Point)
        check_point(result)


@settings(SETTINGS, max_examples=120)
@given(events=st.lists(valid_events(), min_size=1, max_size=20), rules=st.sampled_from(RULES))
def test_a_field_name_never_changes_type(events: list[dict[str, Any]], rules: Rules) -> None:
    seen: dict[str, type] = {}
    for event in events:
        result = event_to_point(event, rules)
        if isinstance(result, Point):
            check_point(result)
            for key, value in result.fields:
                assert seen.setdefault(key, type(value)) is type(value), key


@SETTINGS
@given(
    event=valid_events(),
    rules=st.sampled_from(RULES),
    precision=st.sampled_from(sorted(PRECISIONS)),
    extra=st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
)
def test_every_point_from_an_event_encodes_to_a_line_that_parses_back(
    event: dict[str, Any], rules: Rules, precision: str, extra: dict[str, str]
) -> None:
    result = event_to_point(event, rules, extra)
    if isinstance(result, Point):
        assert_round_trips(result, precision)


NAMES = st.text(min_size=1, max_size=10) | st.sampled_from(
    ["a,b", "a b", "a=b", "a\\", "\\", "\\,", '"', "x\ny", "\\n", "\t", "é ✓"]
)


@st.composite
def points(draw: st.DrawFn) -> Point:
    tags = draw(st.dictionaries(NAMES, NAMES, max_size=4))
    fields = draw(
        st.dictionaries(
            NAMES,
            st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10) | NAMES,
            min_size=1,
            max_size=4,
        )
    )
    return Point(
        measurement=draw(NAMES.filter(lambda name: not name.startswith("#"))),
        tags=tuple(sorted(tags.items())),
        fields=tuple(sorted(fields.items())),
        time_ns=draw(st.integers(min_value=-(2**63) + 2, max_value=2**63 - 2)),
    )


@SETTINGS
@given(point=points(), precision=st.sampled_from(sorted(PRECISIONS)))
def test_any_point_encodes_to_a_line_that_parses_back(point: Point, precision: str) -> None:
    assert_round_trips(point, precision)


@SETTINGS
@given(text=st.text(max_size=10) | TEXT)
def test_the_fast_float_check_agrees_with_float(text: str) -> None:
    try:
        expected: float | None = float(text)
    except ValueError:
        expected = None
    got = _as_float(text)
    if expected is None or got is None:
        assert got is expected is None
    else:
        assert got == expected or (math.isnan(got) and math.isnan(expected))
