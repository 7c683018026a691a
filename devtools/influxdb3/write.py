"""A write_lp request applied to the store: which lines are kept, which refused and why.

Pure apart from the store it is handed; the HTTP layer only turns the outcome into a response.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from devtools.influxdb3.line_protocol import LineError, ParsedLine, parse_line, render_line
from devtools.influxdb3.store import ColumnConflict, Database, Store, Table

__all__ = ["PRECISIONS", "WriteOutcome", "db_name_error", "to_nanoseconds", "write_lines"]

PARTIAL = "partial write of line protocol occurred"
ATOMIC = "parsing failed for write_lp endpoint"
# The names /api/v3/write_lp takes. The short forms (ns, us, ms, s) are refused: the docs note
# that a bug keeps them from working on this endpoint, so a client must send these names.
PRECISIONS: dict[str, int | None] = {
    "auto": None,
    "nanosecond": 1,
    "microsecond": 1_000,
    "millisecond": 1_000_000,
    "second": 1_000_000_000,
}


def db_name_error(name: str) -> str | None:
    """The engine's message for a database name it refuses, None for a good one."""
    if not name:
        return "db name cannot be empty"
    if not (name[0].isascii() and name[0].isalnum()):
        return "db name did not start with a number or letter"
    if not all(c.isascii() and (c.isalnum() or c in "_-") for c in name):
        return (
            "invalid character in database name: must be ASCII, containing only letters, "
            "numbers, underscores, or hyphens"
        )
    return None


def to_nanoseconds(timestamp: int, precision: str) -> int:
    """A timestamp in nanoseconds; `auto` guesses the unit from its magnitude as documented."""
    factor = PRECISIONS[precision]
    if factor is None:
        magnitude = abs(timestamp)
        if magnitude < 5_000_000_000:
            factor = 1_000_000_000
        elif magnitude < 5_000_000_000_000:
            factor = 1_000_000
        elif magnitude < 5_000_000_000_000_000:
            factor = 1_000
        else:
            factor = 1
    return timestamp * factor


@dataclass
class WriteOutcome:
    """What a write did: the refused lines as the engine lists them, and whether it stored."""

    refused: list[dict[str, Any]] = field(default_factory=list)
    stored: bool = True

    def body(self, accept_partial: bool) -> dict[str, Any] | None:
        """The 400 body (None: all lines stored, 204): a list when partial, one object when not."""
        if not self.refused:
            return None
        if accept_partial:
            return {"error": PARTIAL, "data": self.refused}
        return {"error": ATOMIC, "data": self.refused[0]}


def _refusal(number: int, raw: str, message: str) -> dict[str, Any]:
    return {"original_line": raw, "line_number": number, "error_message": message}


def _apply(staged: Database, line: ParsedLine, time_ns: int) -> str | None:
    """Store one parsed line in the staged database; the conflict message if refused."""
    table = staged.tables.get(line.measurement) or Table()
    try:
        table.check(line)
    except ColumnConflict as exc:
        return str(exc)
    table.add(line, time_ns)
    staged.tables[line.measurement] = table
    return None


def write_lines(
    store: Store, db: str, body: str, *, precision: str, accept_partial: bool, now_ns: int
) -> WriteOutcome:
    """Apply a batch; line numbers count every physical line from 1, as the engine's do."""
    outcome = WriteOutcome()
    existing = store.databases.get(db)
    staged = existing.staged() if existing is not None else Database()
    for number, raw in enumerate(body.split("\n"), start=1):
        raw = raw.rstrip("\r")
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        try:
            line = parse_line(raw)
        except LineError as exc:
            outcome.refused.append(_refusal(number, raw, str(exc)))
            continue
        stamp = line.timestamp
        time_ns = now_ns if stamp is None else to_nanoseconds(stamp, precision)
        message = _apply(staged, line, time_ns)
        if message is not None:
            outcome.refused.append(_refusal(number, render_line(line, raw), message))
    if outcome.refused and not accept_partial:
        outcome.stored = False
        return outcome
    if staged.tables or existing is not None:
        store.databases[db] = staged
    return outcome
