"""`ha-ingestor renames`: the entity renames recorded in InfluxDB (TRACK_RENAMES), oldest first.

Read from the store itself (the `ha_entity_renames` points, docs/renames.md), so it lists every
rename any listener ever recorded there, not only what this machine saw.

Exit codes: 0 listed (even none), 3 InfluxDB could not be read.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import TYPE_CHECKING, TextIO

from core import json_codec

if TYPE_CHECKING:
    from workers.sinks.influx_query import RenameRow

EXIT_UNREADABLE = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the renames as JSON")
    parser.add_argument("--entity", help="only renames from or to this entity id (with domain)")
    parser.add_argument(
        "--destination",
        help="the destination to read (its name in HA_INGESTOR_CONFIG; default: `default`, "
        "else the first listed)",
    )


def run(args: argparse.Namespace) -> int:
    from config.destinations import DestinationsError, load_destinations
    from config.settings import get_settings
    from core.rules import RulesError
    from workers.sinks.errors import SinkUnavailable
    from workers.sinks.influx_query import read_renames

    settings = get_settings()
    try:
        destination = load_destinations(settings).pick(args.destination)
    except (RulesError, DestinationsError) as exc:
        print(f"ha-ingestor renames: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    try:
        rows = read_renames(destination)
    except SinkUnavailable as exc:
        where = "INFLUXDB_URL" if destination.is_default else f"destination {destination.name!r}"
        print(
            f"ha-ingestor renames: {exc}: check {where} and its credentials",
            file=sys.stderr,
        )
        return EXIT_UNREADABLE
    if args.entity:
        rows = [r for r in rows if args.entity in (_full(r, "old"), _full(r, "new"))]
    if args.json:
        print(json_codec.dumps([dataclasses.asdict(r) for r in rows], indent=True).decode())
        return 0
    print_table(rows, sys.stdout, tracking=settings.track_renames)
    return 0


def print_table(rows: list[RenameRow], out: TextIO, *, tracking: bool) -> None:
    """One line per rename: when, old → new, the registry id that ties them, how it was seen."""
    if not rows:
        hint = "" if tracking else " (TRACK_RENAMES is off: renames are not recorded)"
        out.write(f"no renames recorded{hint}\n")
        return
    for row in rows:
        out.write(
            f"{row.time}  {_full(row, 'old')} → {_full(row, 'new')}  "
            f"entity_registry_id={row.registry_id}  ({row.found_by})\n"
        )


def _full(row: RenameRow, which: str) -> str:
    """The entity id with its domain (the point keeps object ids, as the entity_id tag does)."""
    object_id = row.old_entity_id if which == "old" else row.new_entity_id
    return f"{row.domain}.{object_id}"
