"""`ha-ingestor status`: the health summary as a table (or JSON), exit code = status.

It computes the report afresh from Redis and the broker — the same code beat runs, the same
shape as /health — so it answers even when beat or the listener's HTTP port is down, and says
so.

Exit codes: 0 healthy, 1 degraded, 2 unhealthy (or a configuration error), 3 Redis could not
be read.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from core import json_codec
from core.text_format import format_bytes, format_count, format_duration, format_rate

EXIT_CODES = {"healthy": 0, "degraded": 1, "unhealthy": 2}
EXIT_UNREADABLE = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    import redis

    from config.redaction import scrub
    from config.settings import get_settings
    from workers.monitoring.health_job import Monitor

    settings = get_settings()
    try:
        report = Monitor.from_settings(settings).status()
    except redis.RedisError as exc:
        text = scrub(f"{type(exc).__name__}: {exc}", settings.secrets())
        print(
            f"ha-ingestor status: cannot read Redis ({text}): check REDIS_URL (or "
            "CELERY_BROKER_URL) and that Redis runs",
            file=sys.stderr,
        )
        return EXIT_UNREADABLE
    if args.json:
        print(json_codec.dumps(report, indent=True).decode())
    else:
        print_table(report, sys.stdout)
    return EXIT_CODES[report["status"]]


def print_table(report: dict[str, Any], out: TextIO) -> None:
    """The readable form: status and reasons first, then one line per figure."""
    out.write(f"ha-ingestor: {report['status'].upper()}\n")
    for reason in report["reasons"]:
        out.write(f"  - {reason}\n")
    out.write("\n")
    for label, value in rows(report):
        out.write(f"{label:<22} {value}\n")


def _stores(p: dict[str, Any]) -> str:
    stored, outage, dropped = p["dead_letters_stored"], p["outage_letters_stored"], p["dropped"]
    text = format_count(p["dead_letters"] or 0) + " in all"
    if stored is not None:
        text += f", {format_count(stored)} kept"
    if outage:
        text += f"; {format_count(outage)} events in the outage store"
    if dropped:
        text += f"; {format_count(dropped)} DELETED by DEAD_LETTERS_MAX"
    return text


def _storage(li: dict[str, Any]) -> str:
    """The broker's memory and the spool's disk, as the listener last read them."""
    if not li["present"]:
        return "unknown (no listener)"
    parts = []
    used, limit = li["broker_memory_used_bytes"], li["broker_memory_max_bytes"]
    if used is not None:
        of = (
            f" of {format_bytes(limit)} ({100 * used / limit:.0f}%)" if limit else " (no maxmemory)"
        )
        parts.append(f"broker {format_bytes(used)}{of}")
    if li["spool_max_bytes"]:
        free = li["spool_disk_free_bytes"]
        parts.append(
            f"spool {format_bytes(li['spool_bytes'])} of {format_bytes(li['spool_max_bytes'])}"
            + (f", {format_bytes(free)} free on its disk" if free is not None else "")
        )
    return "; ".join(parts) or "unknown"


def rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) lines from a report of core/health_report.py's shape."""
    homes = report.get("homes") or {}
    listener = _listener_rows(report) if len(homes) < 2 else []
    return [
        *listener,
        *home_rows(homes, report.get("fleet")),
        _event_rate_row(report["subscription"]),
        *_busiest_rows(report["rates"]),
        *_pipeline_rows(report["pipeline"]),
        *_destination_rows(report.get("destinations") or {}),
        ("Storage", _storage(report["listener"])),
        ("Beat", _beat(report["beat"])),
    ]


def _listener_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """HA's connection and the listener's own figures, or that it left none."""
    c, s, li = report["connection"], report["subscription"], report["listener"]
    if not li["present"]:
        return [("Listener", "no state in Redis")]
    version = f" (HA {c['ha_version']})" if c["ha_version"] else ""
    last_event = s["last_event_age_s"]
    return [
        ("Home Assistant", f"{c['state']}{version}"),
        (
            "Subscriptions",
            f"{s['active_subscriptions']} active; {c['attempts']} connection attempts, "
            f"{c['failed']} failed; {c['reconnects_last_hour']} reconnects in the last hour",
        ),
        ("Last error", c["last_error"] or "none"),
        (
            "Listener",
            f"reported {format_duration(li['heartbeat_age_s'])} ago, up "
            f"{format_duration(report['uptime_s'])}, spool {format_count(li['spool_depth'])}"
            f"{'' if li['broker_up'] else ' (broker unreachable)'}",
        ),
        (
            "Events received",
            f"{format_count(s['total_events_received'])}; last "
            + ("never" if last_event is None else f"{format_duration(last_event)} ago"),
        ),
    ]


def home_rows(homes: dict[str, Any], fleet: dict[str, Any] | None) -> list[tuple[str, str]]:
    """One line per home (subscribed, events/s, lag, reconnects, its worst reason) and the
    fleet's totals; with several homes these replace the one listener's lines."""
    out = [(f"Home {name}", _home_line(h)) for name, h in homes.items()]
    if fleet is not None and len(homes) > 1:
        silent = fleet["silent"]
        out.append(
            (
                "Fleet",
                f"{fleet['homes']} homes, {fleet['subscribed']} subscribed, "
                f"{fleet['events_per_second']:.1f} events/s, "
                f"{fleet['reconnects_last_hour']} reconnects in the last hour"
                + (f"; SILENT: {', '.join(silent)}" if silent else ""),
            )
        )
    return out


def _home_line(h: dict[str, Any]) -> str:
    if h["silent"]:
        state = "SILENT"
    elif h["is_subscribed"]:
        state = "subscribed"
    else:
        state = str(h["connection_state"] or "no state").replace("_", " ")
    lag = "?" if h["lag_s"] is None else format_duration(h["lag_s"])
    return (
        f"{state}, {h['events_per_second']:.1f} events/s, lag {lag}, "
        f"{h['reconnects_last_hour']} reconnects in the last hour; " + (h["reason"] or "no problem")
    )


def _event_rate_row(s: dict[str, Any]) -> tuple[str, str]:
    per_min, usual = s["event_rate_per_minute"], s["usual_rate_per_minute"]
    return (
        "Events 1/5/15 min",
        " · ".join(format_rate(per_min[w]) for w in ("1m", "5m", "15m"))
        + (f" (usually {format_rate(usual)})" if usual else ""),
    )


def _busiest_rows(rates: dict[str, Any]) -> list[tuple[str, str]]:
    """The busiest domains and entities over 5 minutes, when any were counted."""
    out: list[tuple[str, str]] = []
    domains = list(rates["by_domain"].items())[:6]
    if domains:
        out.append(
            ("Busiest domains", ", ".join(f"{d} {format_rate(r['5m'])}" for d, r in domains))
        )
    entities = rates["top_entities"][:5]
    if entities:
        busiest = ", ".join(f"{e['entity_id']} {format_rate(e['5m'])}" for e in entities)
        out.append(("Busiest entities", busiest))
    return out


def _pipeline_rows(p: dict[str, Any]) -> list[tuple[str, str]]:
    oldest = p["oldest_message_age_s"]
    if p["queue_depth"] is None:
        queue = "unreadable"
    else:
        queue = (
            f"{format_count(p['queue_depth'])} waiting, "
            f"{format_count(p['in_flight'] or 0)} taken by workers"
            + (f", oldest {format_duration(oldest)}" if oldest is not None else "")
        )
    writes = (
        f"{format_count(p['written'])} written "
        f"({format_rate(p['write_rate_per_minute']['5m'])} over 5 min), "
        f"{format_count(p['retried'])} retried, {format_count(p['write_errors'])} refused"
    )
    return [("Queue", queue), ("InfluxDB writes", writes), ("Dead letters", _stores(p))]


def _destination_rows(destinations: dict[str, Any]) -> list[tuple[str, str]]:
    """With several destinations, one line each: its writes, refusals, dead letters, backlog
    and lag (with one, the pipeline's lines are its own)."""
    if len(destinations) < 2:
        return []
    out = []
    for name, d in destinations.items():
        rate = (d.get("write_rate_per_minute") or {}).get("5m")
        text = (
            f"{format_count(d['written'])} written"
            + (f" ({format_rate(rate)} over 5 min)" if rate is not None else "")
            + f", {format_count(d['write_errors'])} refused, "
            f"{format_count(d['dead_letters'])} dead letters"
        )
        if d["backlog_events"] or d["parked"]:
            state = "PARKED" if d["parked"] else "draining"
            text += f"; backlog {format_count(d['backlog_events'])} events ({state}"
            text += f", lag {format_duration(d['lag_s'])})" if d["lag_s"] is not None else ")"
        if d["last_write_error"]:
            text += f"; last error: {d['last_write_error']}"
        out.append((f"Destination {name}", text))
    return out


def _beat(beat: dict[str, Any]) -> str:
    return (
        "has not run" if beat["age_s"] is None else f"last run {format_duration(beat['age_s'])} ago"
    )
