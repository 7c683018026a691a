"""What a listener keeps on disk across restarts, written so a power cut leaves old or new.

Small JSON files in DATA_DIR: the live watermark (`listener-state.json`: the newest event
durably handed off, where a restart's gap starts), the backfill cursor (`backfill-cursor.json`:
how far an unfinished gap backfill got) and the home's name (`home.json`: made from HA's
location name once, when HA_INSTANCE is unset, and kept). Each write is a temporary file, fsync,
rename, fsync of the folder: never an empty or half-written file (an empty state file once meant
no backfill at all).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from core import json_codec
from core.home_name import is_home_name, key_safe

log = logging.getLogger(__name__)

STATE_FILE = "listener-state.json"
CURSOR_FILE = "backfill-cursor.json"
HOME_FILE = "home.json"


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


class HomeNameFile:
    """The home's name as first made from HA's location name, kept in DATA_DIR: the name is in
    Redis keys and in `instance` tags, so renaming the home in HA must not change it."""

    def __init__(self, data_dir: Path) -> None:
        self._path = data_dir / HOME_FILE
        self._said: str | None = None
        """The location name the last "keeps its name" line was about: said once per change."""

    def remembered(self) -> str | None:
        """The kept name; None when there is none (or it is no valid name: made again)."""
        name = read_document(self._path).get("instance")
        return name if isinstance(name, str) and is_home_name(name) else None

    def resolve(self, configured: str | None, location_name: object) -> str:
        """The home's name: HA_INSTANCE when set; else the kept one; else made from HA's
        `location_name` and kept. Blocking (a file write): call it off the event loop."""
        if configured is not None:
            return configured
        made = key_safe(location_name if isinstance(location_name, str) else "")
        kept = self.remembered()
        if kept is None:
            write_atomically(self._path, {"instance": made, "location_name": location_name})
            log.info(
                "this home is named %r, made from HA's location name %r and kept in %s, so it "
                "stays the same if HA's name changes (set HA_INSTANCE to choose another)",
                made,
                location_name,
                self._path,
            )
            return made
        if kept != made and location_name != self._said:
            self._said = location_name if isinstance(location_name, str) else None
            log.info(
                "HA's location name %r would make %r, but this home keeps the name %r kept in "
                "%s, so its Redis keys and instance tags stay stable (set HA_INSTANCE to "
                "change it)",
                location_name,
                made,
                kept,
                self._path,
            )
        return kept
