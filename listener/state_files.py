"""What a listener keeps on disk across restarts, written so a power cut leaves old or new.

Two small JSON files in DATA_DIR: the live watermark (`listener-state.json`: the newest event
durably handed off, where a restart's gap starts) and the backfill cursor (`backfill-cursor
.json`: how far an unfinished gap backfill got). Each write is a temporary file, fsync, rename,
fsync of the folder: never an empty or half-written file (an empty state file once meant no
backfill at all).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from core import json_codec

STATE_FILE = "listener-state.json"
CURSOR_FILE = "backfill-cursor.json"


def write_atomically(path: Path, document: dict[str, Any]) -> None:
    """Replace `path` with `document` as JSON: the old content or the new, never a mix."""
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("wb") as file:
        file.write(json_codec.dumps(document))
        file.flush()
        os.fsync(file.fileno())
    temporary.replace(path)
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_document(path: Path) -> dict[str, Any]:
    """The JSON object at `path`; empty when the file is missing or not one."""
    try:
        document = json_codec.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


class WatermarkFile:
    """The live watermark on disk: HA's `time_fired` of the newest event durably handed off
    (listener/handoff/watermark.py tracks it in the running listener)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._saved: Any = None

    def handed_off_through(self) -> Any:
        document = read_document(self._path)
        # `last_event_time`: the newest event *received*, as listeners wrote before the durable
        # hand-off watermark existed.
        return document.get("handed_off_through", document.get("last_event_time"))

    def save(self, handed_off_through: Any) -> None:
        """Write the watermark when it moved (a no-op otherwise: no fsync every 2 s for nothing)."""
        if handed_off_through is None or handed_off_through == self._saved:
            return
        write_atomically(self._path, {"handed_off_through": handed_off_through})
        self._saved = handed_off_through
