"""The small SQL subset the stand-in answers, enough for tests to read back what they wrote.

Accepted: `SELECT * | col[, col...] | count(*) FROM table [WHERE col op literal [AND ...]]
[ORDER BY col [ASC|DESC]] [LIMIT n]`, with op one of = != <> < <= > >=, literals 'text',
numbers, true/false; `time` compared with an RFC 3339 string or nanoseconds. Anything else is
refused with 400, never guessed at.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from devtools.influxdb3.line_protocol import FieldValue
from devtools.influxdb3.store import Database

__all__ = ["Query", "QueryError", "parse_query", "run_query"]

_QUERY = re.compile(
    r"^\s*SELECT\s+(?P<columns>.+?)\s+FROM\s+(?P<table>\"[^\"]+\"|[\w.]+)"
    r"(?:\s+WHERE\s+(?P<where>.+?))?"
    r"(?:\s+ORDER\s+BY\s+(?P<order>\"[^\"]+\"|\w+)(?:\s+(?P<direction>ASC|DESC))?)?"
    r"(?:\s+LIMIT\s+(?P<limit>\d+))?\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_CONDITION = re.compile(
    r"^\s*(?P<column>\"[^\"]+\"|\w+)\s*(?P<op>=|!=|<>|<=|>=|<|>)\s*(?P<literal>.+?)\s*$"
)
_IDENTIFIER = re.compile(r'^(?:"[^"]+"|\w+)$')
_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<>": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
Row = dict[str, FieldValue]


class QueryError(ValueError):
    """A query outside the subset, or naming a table that does not exist."""


@dataclass(frozen=True)
class Query:
    """A parsed query of the subset."""

    table: str
    columns: tuple[str, ...] | None  # None: every column
    count: bool
    conditions: tuple[tuple[str, str, FieldValue], ...]
    order: tuple[str, bool] | None  # column, descending
    limit: int | None


def _name(text: str) -> str:
    return text.strip().strip('"')


def _literal(text: str, column: str) -> FieldValue:
    """A literal of the subset; a string compared with time becomes nanoseconds."""
    if text.startswith("'") and text.endswith("'") and len(text) >= 2:
        value = text[1:-1].replace("''", "'")
        if column == "time":
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return int(parsed.timestamp()) * 1_000_000_000 + parsed.microsecond * 1000
        return value
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise QueryError(f"only literals are understood here, not `{text}`") from None


def parse_query(sql: str) -> Query:
    """Parse a query of the subset or raise QueryError saying what is outside it."""
    match = _QUERY.match(sql)
    if match is None:
        raise QueryError(f"the InfluxDB 3 stand-in answers only a small SQL subset, not: {sql}")
    raw_columns = match["columns"].strip()
    count = raw_columns.lower() == "count(*)"
    columns = (
        None if raw_columns == "*" or count else tuple(_name(c) for c in raw_columns.split(","))
    )
    if columns is not None and not all(
        _IDENTIFIER.match(c.strip()) for c in raw_columns.split(",")
    ):
        raise QueryError(
            f"the InfluxDB 3 stand-in answers only a small SQL subset (plain columns): {sql}"
        )
    conditions: list[tuple[str, str, FieldValue]] = []
    if match["where"]:
        for part in re.split(r"\s+AND\s+", match["where"], flags=re.IGNORECASE):
            condition = _CONDITION.match(part)
            if condition is None:
                raise QueryError(f"only `column op literal` conditions are understood: {part}")
            column = _name(condition["column"])
            conditions.append((column, condition["op"], _literal(condition["literal"], column)))
    order = (
        (_name(match["order"]), (match["direction"] or "").upper() == "DESC")
        if match["order"]
        else None
    )
    limit = int(match["limit"]) if match["limit"] else None
    return Query(_name(match["table"]), columns, count, tuple(conditions), order, limit)


def _matches(row: Row, conditions: tuple[tuple[str, str, FieldValue], ...]) -> bool:
    """SQL's rule: a comparison with a missing (NULL) value is not true."""
    for column, op, value in conditions:
        if column not in row:
            return False
        try:
            if not _OPERATORS[op](row[column], value):
                return False
        except TypeError:
            return False
    return True


def run_query(database: Database, query: Query) -> tuple[list[str], list[Row]]:
    """The column names and rows a query answers; missing values are left out of a row."""
    table = database.tables.get(query.table)
    if table is None:
        raise QueryError(f"table 'public.iox.{query.table}' not found")
    rows = [row for row in table.rows.values() if _matches(row, query.conditions)]
    if query.count:
        return ["count(*)"], [{"count(*)": len(rows)}]
    if query.order is not None:
        column, descending = query.order
        rows.sort(key=lambda row: (column in row, row.get(column, 0)), reverse=descending)
    if query.limit is not None:
        rows = rows[: query.limit]
    names = list(query.columns) if query.columns is not None else sorted(table.columns)
    unknown = [name for name in names if name not in table.columns]
    if unknown:
        raise QueryError(f"Schema error: No field named {unknown[0]}.")
    return names, [{name: row[name] for name in names if name in row} for row in rows]
