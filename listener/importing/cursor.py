"""How far `ha-ingestor import` got, per kind: DATA_DIR/import/cursor.json, written atomically.

A kind (`states`, `statistics:5minute`, `statistics:hour`) moves its position to the end of a
window only once every message of that window is finished in the workers (written, skipped
by a rule or dead-lettered): Ctrl-C, a crash or a lost connection loses at most the windows in
flight, which the next run reads again (points are idempotent). The cursor belongs to one
request (`key`: the command's arguments): the same command run again resumes where it stopped,
with the range the first run resolved (`--since 30d` is not moved on); another request, or
`--restart`, starts over; a finished import leaves no cursor.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from core.ha_event import parse_ha_time
from listener.state_files import read_document, write_atomically

CURSOR_PATH = Path("import") / "cursor.json"


class ImportCursor:
    """Positions per kind for one import request, on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.key = ""
        self.start: datetime | None = None
        self.end: datetime | None = None
        self.positions: dict[str, datetime] = {}

    def resume(self, key: str) -> bool:
        """Load the saved positions if they belong to `key`; False (nothing loaded) if not."""
        document = read_document(self.path)
        if document.get("key") != key:
            return False
        start, end = parse_ha_time(document.get("start")), parse_ha_time(document.get("end"))
        if start is None or end is None:
            return False
        positions = document.get("positions")
        self.key, self.start, self.end = key, start, end
        self.positions = {}
        if isinstance(positions, dict):
            for kind, text in positions.items():
                moment = parse_ha_time(text)
                if moment is not None:
                    self.positions[str(kind)] = moment
        return True

    def begin(self, key: str, start: datetime, end: datetime) -> None:
        """A new request: its range, no positions yet (saved at once, so a resume finds it)."""
        self.key, self.start, self.end, self.positions = key, start, end, {}
        self._save()

    def position(self, kind: str) -> datetime:
        """Where `kind` goes on: its saved position, or the start of the range."""
        assert self.start is not None, "begin() or resume() first"
        return self.positions.get(kind, self.start)

    def advance(self, kind: str, position: datetime) -> None:
        self.positions[kind] = position
        self._save()

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def _save(self) -> None:
        assert self.start is not None
        assert self.end is not None
        write_atomically(
            self.path,
            {
                "key": self.key,
                "start": self.start.isoformat(),
                "end": self.end.isoformat(),
                "positions": {kind: at.isoformat() for kind, at in self.positions.items()},
            },
        )
