"""`ha-ingestor trace summary PATH`: what a frame trace (HA_TRACE_FRAMES) holds, at a glance.

Counts per direction and message type, the event types, the largest frames and the longest
silences from HA, over the trace file and its rotated predecessors (PATH.N … PATH.1, PATH).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from core import json_codec
from listener.ha.frame_trace import trace_files


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    summary = actions.add_parser("summary", help="counts, event types, largest frames, gaps")
    summary.add_argument("path", type=Path, help="the trace file (HA_TRACE_FRAMES)")
    summary.add_argument("--top", type=int, default=5, help="largest frames and gaps shown")


@dataclass(frozen=True)
class Frame:
    wall: float
    mono: float
    direction: str
    size: int
    types: tuple[str, ...]
    label: str


@dataclass
class Summary:
    """What `summary` prints, gathered in one pass over the lines."""

    files: list[Path]
    frames: int = 0
    bytes: int = 0
    unreadable: int = 0
    first: float | None = None
    last: float | None = None
    messages: Counter[tuple[str, str]] = field(default_factory=Counter)
    event_types: Counter[str] = field(default_factory=Counter)
    largest: list[Frame] = field(default_factory=list)
    gaps: list[tuple[float, Frame, Frame]] = field(default_factory=list)


def read_frames(lines: Iterable[str], summary: Summary) -> Iterator[Frame]:
    """The frames of a trace's lines; a line that is not a trace entry is counted, not fatal."""
    for line in lines:
        try:
            entry = json_codec.loads(line)
            wall, mono = float(entry["wall"]), float(entry["mono"])
            direction, size, body = str(entry["dir"]), int(entry["size"]), entry["frame"]
        except (ValueError, KeyError, TypeError):
            summary.unreadable += 1
            continue
        messages = body if isinstance(body, list) else [body]
        types: list[str] = []
        for message in messages:
            if not isinstance(body, dict | list):
                types.append("(not JSON)")
                continue
            kind = message.get("type") if isinstance(message, dict) else None
            types.append(str(kind) if kind is not None else "(no type)")
            if kind == "event" and isinstance(message.get("event"), dict):
                summary.event_types[str(message["event"].get("event_type"))] += 1
        for kind in types:
            summary.messages[(direction, kind)] += 1
        label = ", ".join(f"{n} x {k}" if n > 1 else k for k, n in Counter(types).items())
        if isinstance(body, dict) and "id" in body and body.get("type") != "event":
            label += f" (id {body['id']})"
        yield Frame(wall, mono, direction, size, tuple(types), label)


def summarise(path: Path, top: int) -> Summary:
    summary = Summary(files=trace_files(path))
    previous: Frame | None = None
    gaps: list[tuple[float, Frame, Frame]] = []
    frames: list[Frame] = []
    for file in summary.files:
        with file.open(encoding="utf-8", errors="replace") as lines:
            for frame in read_frames(lines, summary):
                summary.frames += 1
                summary.bytes += frame.size
                summary.first = frame.wall if summary.first is None else summary.first
                summary.last = frame.wall
                frames.append(frame)
                if frame.direction != "in":
                    continue
                if previous is not None:
                    # Monotonic time within one listener run; wall time across restarts.
                    gap = frame.mono - previous.mono
                    gaps.append((gap if gap >= 0 else frame.wall - previous.wall, previous, frame))
                previous = frame
    summary.largest = sorted(frames, key=lambda f: f.size, reverse=True)[:top]
    summary.gaps = sorted(gaps, key=lambda g: g[0], reverse=True)[:top]
    return summary


def _clock(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def render(summary: Summary, path: Path) -> str:
    span = (summary.last or 0.0) - (summary.first or 0.0)
    lines = [
        f"trace {path}: {len(summary.files)} file(s), {summary.frames:,} frames, "
        f"{summary.bytes:,} bytes"
        + (f", {_clock(summary.first)} → {_clock(summary.last)} UTC ({span:.1f} s)"
           if summary.first is not None and summary.last is not None else ""),
    ]  # fmt: skip
    if summary.unreadable:
        lines.append(f"  {summary.unreadable} line(s) not trace entries (skipped)")
    lines.append("messages by direction and type:")
    for (direction, kind), count in sorted(summary.messages.items(), key=lambda i: -i[1]):
        lines.append(f"  {direction:<3}  {kind:<28} {count:>9,}")
    lines.append("event types:")
    for event_type, count in summary.event_types.most_common():
        lines.append(f"  {event_type:<33} {count:>9,}")
    lines.append("largest frames:")
    for frame in summary.largest:
        lines.append(
            f"  {frame.size:>11,} B  {frame.direction:<3}  {_clock(frame.wall)}  {frame.label}"
        )
    lines.append("longest gaps between frames from HA:")
    for gap, before, after in summary.gaps:
        lines.append(
            f"  {gap:>9.3f} s  from {_clock(before.wall)} ({before.label}) "
            f"to {_clock(after.wall)} ({after.label})"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    path: Path = args.path
    if not trace_files(path):
        print(
            f"ha-ingestor trace summary: no trace at {path}: start the listener with "
            "HA_TRACE_FRAMES=PATH (or `ha-ingestor listener --trace-frames PATH`) first",
            file=sys.stderr,
        )
        return 2
    print(render(summarise(path, max(args.top, 1)), path))
    return 0
