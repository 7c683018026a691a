"""The InfluxDB 3 stand-in's pure parts: line protocol, precision, database names, SQL subset."""

from __future__ import annotations

import pytest

from devtools.influxdb3.line_protocol import LineError, ParsedLine, parse_line, render_line
from devtools.influxdb3.sql import QueryError, parse_query
from devtools.influxdb3.write import db_name_error, to_nanoseconds


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("m v=1 5", ParsedLine("m", (), (("v", "float", 1.0),), 5)),
        ("m,t=a v=1i", ParsedLine("m", (("t", "a"),), (("v", "integer", 1),), None)),
        ("m v=18446744073709551615u 1", ParsedLine("m", (), (("v", "uinteger", 2**64 - 1),), 1)),
        ('m v="a b,c" 1', ParsedLine("m", (), (("v", "string", "a b,c"),), 1)),
        (
            "m a=t,b=FALSE 1",
            ParsedLine("m", (), (("a", "boolean", True), ("b", "boolean", False)), 1),
        ),
        (
            r"my\ m,t\,k=v\=x v=1 1",
            ParsedLine("my m", (("t,k", "v=x"),), (("v", "float", 1.0),), 1),
        ),
    ],
)
def test_lines_parse_into_typed_points(line: str, expected: ParsedLine) -> None:
    assert parse_line(line) == expected


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("cpu,host=a val= 123", "No fields were provided"),
        ("cpu,host=a", "No fields were provided"),
        ("m v=1 5 6", "Could not parse entire line. Found trailing content: `6`"),
        ("m v=1 x", "Could not parse entire line. Found trailing content: `x`"),
        ("m v=1,v=2 5", "invalid line protocol - multiple instances of 'v' field found"),
        ("m,t v=1 5", "Tag set malformed: could not find equals sign in `t`"),
        ("m v=-1u 5", "Unable to parse field value: `-1u`"),
    ],
)
def test_bad_lines_are_refused_in_the_engines_words(line: str, message: str) -> None:
    with pytest.raises(LineError) as refused:
        parse_line(line)
    assert str(refused.value) == message


def test_a_refused_line_shows_its_strings_unquoted_as_the_docs_example_does() -> None:
    raw = 'home,room=Sunroom temp="hi" 1735549200'
    assert render_line(parse_line(raw), raw) == "home,room=Sunroom temp=hi 1735549200"


@pytest.mark.parametrize(
    ("stamp", "precision", "nanoseconds"),
    [
        (4_999_999_999, "auto", 4_999_999_999_000_000_000),
        (5_000_000_000, "auto", 5_000_000_000_000_000),
        (5_000_000_000_000, "auto", 5_000_000_000_000_000),
        (5_000_000_000_000_000, "auto", 5_000_000_000_000_000),
        (7, "second", 7_000_000_000),
        (7, "millisecond", 7_000_000),
        (7, "microsecond", 7_000),
        (7, "nanosecond", 7),
    ],
)
def test_precision_as_documented(stamp: int, precision: str, nanoseconds: int) -> None:
    assert to_nanoseconds(stamp, precision) == nanoseconds


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("home-1_a", None),
        ("", "db name cannot be empty"),
        ("_x", "db name did not start with a number or letter"),
        (
            "a/b",
            "invalid character in database name: must be ASCII, containing only letters, "
            "numbers, underscores, or hyphens",
        ),
    ],
)
def test_database_names_as_the_engine_checks_them(name: str, message: str | None) -> None:
    assert db_name_error(name) == message


def test_the_sql_subset_is_parsed_and_everything_else_refused() -> None:
    query = parse_query(
        "select a, \"b c\" from \"t\" where a = 'x' and time >= '1970-01-01T00:00:01Z' "
        "order by time desc limit 3"
    )
    assert query.table == "t"
    assert query.columns == ("a", "b c")
    assert query.conditions == (("a", "=", "x"), ("time", ">=", 1_000_000_000))
    assert (query.order, query.limit) == (("time", True), 3)
    for outside in ("SELECT max(a) FROM t", "SELECT a FROM t GROUP BY a", "DELETE FROM t"):
        with pytest.raises(QueryError):
            parse_query(outside)
