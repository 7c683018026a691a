"""The health rules of the places that hold waiting events: broker memory, spool disk, the
dead-letter and outage stores. Figures in, checks out — no clock, no I/O.

Each limit is reported before it bites: the broker's memory from
BROKER_MEMORY_WARN_PERCENT of maxmemory, the spool from 80% of SPOOL_MAX_MB or when its disk has
less room than the spool may still take, the dead-letter store from 80% of DEAD_LETTERS_MAX.
`dropping` is the one that says events are gone: only a cap the user set deletes anything.
"""

from __future__ import annotations

from core.health_check import Check, Thresholds
from core.health_rules import PipelineFigures
from core.listener_figures import ListenerFigures
from core.text_format import format_bytes, format_count, format_duration

NEAR_FULL = 0.8
"""Share of a cap (spool, dead letters) from which it is reported."""
DISK_RESERVE = 0.05
"""A spool disk with less free space than this share of SPOOL_MAX_MB is reported even while the
spool is empty: the next outage would find no room."""


def listener_storage_checks(f: ListenerFigures, t: Thresholds) -> list[Check]:
    """The broker's memory as the listener reads it, and the spool's disk."""
    return [c for c in (_broker_memory(f, t), _spool_disk(f)) if c is not None]


def _broker_memory(f: ListenerFigures, t: Thresholds) -> Check | None:
    used, limit = f.broker_memory_used_bytes, f.broker_memory_max_bytes
    if used is None or not limit:
        return None
    percent = 100.0 * used / limit
    if percent < t.broker_memory_warn_percent and not f.broker_full:
        return None
    figures = f"broker memory {format_bytes(used)} of {format_bytes(limit)} ({percent:.0f}%)"
    if f.broker_full:
        action = (
            f"above {t.broker_memory_spool_percent:g}% the listener keeps new events in its spool"
        )
    else:
        action = f"from {t.broker_memory_spool_percent:g}% the listener spools new events"
    return Check(
        "broker_memory",
        "degraded",
        "pipeline",
        f"{figures}: {action} — events wait for InfluxDB or for workers; fix that, or raise "
        "Redis's maxmemory (REDIS_MAXMEMORY in docker-compose) if the host has the RAM",
    )


def _spool_disk(f: ListenerFigures) -> Check | None:
    limit, free, used = f.spool_max_bytes, f.spool_disk_free_bytes, f.spool_bytes
    if not limit or free is None:
        return None
    fix = "free disk space on DATA_DIR's file system or raise SPOOL_MAX_MB"
    if f.spool_full or used >= NEAR_FULL * limit or free < 1_000_000:
        full = f.spool_full or used >= 0.99 * limit or free < 1_000_000
        return Check(
            "spool_disk",
            "unhealthy" if full else "degraded",
            "listener",
            f"spool {format_bytes(used)} of {format_bytes(limit)} (SPOOL_MAX_MB), "
            f"{format_bytes(free)} free on its disk"
            + (": reading from HA is paused; events missed meanwhile are filled in from HA's "
               "history once there is room" if full else "")
            + f" — {fix}",
        )  # fmt: skip
    room = limit - used
    if free < room and (f.spool_depth or free < DISK_RESERVE * limit):
        return Check(
            "spool_disk",
            "degraded",
            "listener",
            f"the spool's disk has {format_bytes(free)} free, less than the "
            f"{format_bytes(room)} SPOOL_MAX_MB still allows — free disk space there or "
            "lower SPOOL_MAX_MB",
        )
    return None


def store_checks(p: PipelineFigures, t: Thresholds) -> list[Check]:
    """The dead-letter store against its cap, what the cap deleted, and the outage store."""
    checks: list[Check] = []
    window = format_duration(t.window_s)
    if p.dropped_window:
        checks.append(
            Check(
                "dropping",
                "unhealthy",
                "pipeline",
                f"{format_count(p.dropped_window)} dead letters DELETED in {window} to keep "
                f"within DEAD_LETTERS_MAX={format_count(t.dead_letters_max or 0)} "
                f"({format_count(p.dropped_total)} in all) — unset DEAD_LETTERS_MAX to keep "
                "every letter, and fix what dead-letters them (`ha-ingestor dlq list`)",
            )
        )
    cap = t.dead_letters_max
    stored = p.dead_letters_stored
    if cap and stored is not None and stored >= NEAR_FULL * cap and not p.dropped_window:
        checks.append(
            Check(
                "dead_letter_store",
                "degraded",
                "pipeline",
                f"{format_count(stored)} dead letters kept of at most {format_count(cap)} "
                "(DEAD_LETTERS_MAX); beyond it the oldest are deleted — look at them with "
                "`ha-ingestor dlq list`, fix the cause, then `ha-ingestor dlq replay --all`",
            )
        )
    if p.outage_letters_stored:
        checks.append(
            Check(
                "outage_store",
                "degraded",
                "pipeline",
                f"{format_count(p.outage_letters_stored)} events waited longer than "
                "MAX_EVENT_AGE for InfluxDB and are kept in the outage store — workers write "
                "them, oldest first, once InfluxDB takes writes again",
            )
        )
    return checks
