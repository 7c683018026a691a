"""Databases held in memory: tables whose column types are fixed by their first write.

One point per series and time, a later write of the same series and time updating its fields,
as InfluxDB 3 keeps it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from devtools.influxdb3.line_protocol import FieldValue, ParsedLine

__all__ = ["ColumnConflict", "Database", "Store", "Table", "column_type"]

Row = dict[str, FieldValue]
SeriesKey = tuple[tuple[tuple[str, str], ...], int]


class ColumnConflict(ValueError):
    """A column written as another type than its table holds; message as the engine words it."""


def column_type(kind: str) -> str:
    """The engine's name of a column type, as its conflict message prints it."""
    return "iox::column_type::tag" if kind == "tag" else f"iox::column_type::field::{kind}"


@dataclass
class Table:
    """Column kinds (tag, or a field type) and rows keyed by series and time."""

    columns: dict[str, str] = field(default_factory=dict)
    rows: dict[SeriesKey, Row] = field(default_factory=dict)

    def check(self, line: ParsedLine) -> None:
        """Refuse the line if one of its columns has another type here."""
        wanted = [(key, "tag") for key, _ in line.tags] + [(k, t) for k, t, _ in line.fields]
        for name, kind in wanted:
            held = self.columns.get(name)
            if held is not None and held != kind:
                raise ColumnConflict(
                    f"invalid column type for column '{name}', expected {column_type(held)}, "
                    f"got {column_type(kind)}"
                )

    def add(self, line: ParsedLine, time_ns: int) -> None:
        """Store a checked line: new columns take its types, fields merge into the series row."""
        for tag, _ in line.tags:
            self.columns.setdefault(tag, "tag")
        for name, kind, _ in line.fields:
            self.columns.setdefault(name, kind)
        self.columns.setdefault("time", "time")
        key: SeriesKey = (tuple(sorted(line.tags)), time_ns)
        row = self.rows.setdefault(key, {"time": time_ns, **dict(line.tags)})
        row.update({name: value for name, _, value in line.fields})


@dataclass
class Database:
    """A database's tables by name."""

    tables: dict[str, Table] = field(default_factory=dict)

    def staged(self) -> Database:
        """A copy to write a batch into, kept only if the batch is accepted."""
        return copy.deepcopy(self)


@dataclass
class Store:
    """Every database of the server."""

    databases: dict[str, Database] = field(default_factory=dict)
