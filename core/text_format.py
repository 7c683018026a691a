"""Figures as a person reads them at a glance: durations, counts, rates.

Shared by the health messages, `ha-ingestor status` and anything else that words a figure, so
"12 min" or "48,000" reads the same everywhere.
"""

from __future__ import annotations


def format_duration(seconds: float) -> str:
    """12 min, 45 s, 2 h 5 min, 3 d 4 h: what a person reads at a glance."""
    s = max(0, round(seconds))
    if s < 120:
        return f"{s} s"
    minutes = s // 60
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def format_count(n: float) -> str:
    """48,000 rather than 48000."""
    return f"{round(n):,}"


def format_rate(per_minute: float) -> str:
    """35/min, 0.5/min: whole numbers once they are large enough to read that way."""
    if per_minute >= 10:
        return f"{round(per_minute):,}/min"
    return f"{per_minute:.1f}/min"


def format_bytes(n: float) -> str:
    """812 MB, 1.5 GB, 40 kB: sizes in decimal units (1 kB = 1,000 bytes), as disks count."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            value = n / size
            return f"{value:.1f} {unit}" if value < 10 else f"{round(value):,} {unit}"
    return f"{round(n)} B"
