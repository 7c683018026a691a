"""Line protocol: escaping, number formatting and precision, exactly as InfluxDB reads them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.line_protocol import encode_point, encode_points
from core.rules import Rules
from core.transform import Point, event_to_point

FIXTURES = Path(__file__).parents[2] / "fixtures"
NS = 1_795_731_803_441_045_123


def make(
    measurement: str = "m",
    tags: tuple[tuple[str, str], ...] = (),
    fields: tuple[tuple[str, float | str], ...] = (("value", 1.0),),
    time_ns: int = NS,
) -> Point:
    return Point(measurement=measurement, tags=tags, fields=fields, time_ns=time_ns)


def test_a_typical_point() -> None:
    point = make(
        "°C",
        (("domain", "sensor"), ("entity_id", "room_temperature")),
        (("friendly_name_str", "Room Temperature"), ("value", 21.5)),
    )
    assert encode_point(point) == (
        '°C,domain=sensor,entity_id=room_temperature friendly_name_str="Room Temperature",'
        f"value=21.5 {NS}"
    )


@pytest.mark.parametrize(
    ("measurement", "expected"),
    [
        ("plain", "plain"),
        ("a,b", "a\\,b"),
        ("a b", "a\\ b"),
        ("a=b", "a=b"),
        ('a"b', 'a"b'),
        ("a\\b", "a\\\\b"),
        ("a\nb", "a\\nb"),
        ("a\rb\tc", "a\\rb\\tc"),
        ("m³ ✓", "m³\\ ✓"),
    ],
)
def test_measurement_escaping(measurement: str, expected: str) -> None:
    assert encode_point(make(measurement)) == f"{expected} value=1.0 {NS}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("a,b", "a\\,b"),
        ("a=b", "a\\=b"),
        ("a b", "a\\ b"),
        ('a"b', 'a"b'),
        ("a\\b", "a\\\\b"),
        ("end\\", "end\\\\"),
        ("a\nb", "a\\nb"),
        ("a\rb", "a\\rb"),
        ("a\tb", "a\\tb"),
        ("Living room, 1=2", "Living\\ room\\,\\ 1\\=2"),
    ],
)
def test_tag_key_tag_value_and_field_key_escaping(text: str, expected: str) -> None:
    point = make(tags=((text, text),), fields=((text, 1.0),))
    assert encode_point(point) == f"m,{expected}={expected} {expected}=1.0 {NS}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", '"plain"'),
        ("", '""'),
        ('say "hi"', '"say \\"hi\\""'),
        ("C:\\temp\\", '"C:\\\\temp\\\\"'),
        ("a,b c=d", '"a,b c=d"'),
        ("line1\nline2\r\n", '"line1\\nline2\\r\\n"'),
        ("tab\there", '"tab\there"'),
        ("héllo ✓", '"héllo ✓"'),
    ],
)
def test_string_field_escaping(value: str, expected: str) -> None:
    assert encode_point(make(fields=(("x_str", value),))) == f"m x_str={expected} {NS}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.0, "1.0"),
        (21.5, "21.5"),
        (-0.0, "-0.0"),
        (0.1, "0.1"),
        (1e16, "1e+16"),
        (1.5e-7, "1.5e-07"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (3, "3.0"),
    ],
)
def test_numbers_are_always_floats_written_to_round_trip(value: float, expected: str) -> None:
    line = encode_point(make(fields=(("v", value),)))
    assert line == f"m v={expected} {NS}"
    assert float(expected) == value


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_are_refused(value: float) -> None:
    with pytest.raises(ValueError, match="InfluxDB cannot store"):
        encode_point(make(fields=(("v", value),)))


@pytest.mark.parametrize(
    ("precision", "expected"),
    [
        ("ns", 1_795_731_803_441_045_123),
        ("us", 1_795_731_803_441_045),
        ("ms", 1_795_731_803_441),
        ("s", 1_795_731_803),
    ],
)
def test_time_is_written_in_the_precision(precision: str, expected: int) -> None:
    assert encode_point(make(), precision).endswith(f" {expected}")


def test_times_before_1970_round_down_like_influxdb() -> None:
    assert encode_point(make(time_ns=-1_500_000_000), "s").endswith(" -2")


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="precision 'h' is not one of ns, us, ms, s"):
        encode_point(make(), "h")


def test_several_fields_are_comma_separated_in_order() -> None:
    point = make(fields=(("a", 1.0), ("b_str", "x"), ("c", 2.0)))
    assert encode_point(point) == f'm a=1.0,b_str="x",c=2.0 {NS}'


def test_empty_tags_are_left_out_as_influxdb_client_does() -> None:
    point = make(tags=(("a", ""), ("", "b"), ("c", "d")))
    assert encode_point(point) == f"m,c=d value=1.0 {NS}"


@pytest.mark.parametrize(
    ("point", "message"),
    [
        (make(fields=()), "a point needs at least one field"),
        (make(""), "a point needs a measurement"),
        (make(fields=(("", 1.0),)), "a field needs a name"),
    ],
)
def test_points_influxdb_cannot_take_are_refused(point: Point, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_point(point)


def test_encode_points_joins_lines() -> None:
    a, b = make("a"), make("b")
    assert encode_points([a, b], "s") == f"{encode_point(a, 's')}\n{encode_point(b, 's')}"
    assert encode_points([], "ns") == ""


def test_every_real_event_is_one_line() -> None:
    path = FIXTURES / "sample_events.jsonl"
    if not path.is_file():
        pytest.fail(f"fixture {path} is missing: the HA captures belong in {FIXTURES}")
    rules = Rules()
    points = []
    for line in path.read_text(encoding="utf-8").splitlines():
        result = event_to_point(json.loads(line)["event"], rules)
        if isinstance(result, Point):
            points.append(result)
    text = encode_points(points, "ms")
    assert len(text.split("\n")) == len(points) == 17
    assert '"héllo ✓ 222323"' in text
