"""Scenario: what an outage costs in RAM and disk, per waiting event and per hour, day, week.

While InfluxDB is down, events wait in the broker (Redis: RAM, and its append-only file on
disk); while the broker is down or full, in the listener's spool (SQLite on disk). This fills a
Redis of its own (append-only, as production runs it) and a spool with the task messages the
listener builds (core/task_message.py's TaskWire, the listener's own encoder) from the
simulator's realistic events, and reads the growth back from Redis (`used_memory`, the AOF's
size) and from the spool file. Baseline: the same events as plain JSON text, the size of the
event itself. The per-event figures give docs/operations.md's table of outage costs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import redis

from bench.context import Context
from bench.report import Figure
from config.redis_keys import RedisKeys
from core.task_message import INGEST_TASK, TaskMessage, TaskWire
from devtools.local_servers import RedisServer
from devtools.simulator.entities import Home
from listener.handoff.spool import Spool
from workers.stores.dead_letters import TOO_OLD_DURING_OUTAGE, DeadLetterStore

OUTAGE_ERROR = (
    "waited more than 86400 s (MAX_EVENT_AGE) while InfluxDB was unavailable (cannot reach "
    "InfluxDB at http://influxdb:8086: ConnectionRefusedError); replayed automatically once "
    "writes succeed again"
)
"""The error text an outage letter carries (workers/pipeline.py writes one like it)."""

RATES = (10, 100)
"""Events per second: a quiet home, and a busy one (or a large installation)."""
DURATIONS = (("1 h", 3_600), ("1 day", 86_400), ("1 week", 604_800))
MAX_EVENT_AGE_S = 86_400
"""The default MAX_EVENT_AGE: older waiting events move from the queue to the outage store."""


def messages(count: int, entities: int) -> tuple[list[bytes], int]:
    """`count` task messages as the listener stores them, and the events' total JSON size."""
    return _messages(count, entities)[:2]


def _messages(count: int, entities: int) -> tuple[list[bytes], int, list[dict[str, Any]]]:
    """The stored messages, the events' JSON size, and the task arguments themselves."""
    now_us = int(time.time() * 1e6)
    home = Home(entities, seed=7, now_us=now_us)
    wire = TaskWire(INGEST_TASK, "ha_events", origin="gen1@bench")
    out: list[bytes] = []
    args: list[dict[str, Any]] = []
    json_bytes = 0
    for seq in range(1, count + 1):
        change = home.step(now_us + seq * 1_000)
        json_bytes += len(change.json.encode())
        message = TaskMessage(change.event, time.time(), "live", seq).to_json()
        out.append(wire.encode(message))
        args.append(message)
    return out, json_bytes, args


def aof_bytes(directory: Path) -> int:
    """Every file Redis keeps for its append-only persistence (7.x: a directory of parts)."""
    return sum(p.stat().st_size for p in directory.rglob("*.aof*") if p.is_file())


def run(ctx: Context) -> None:
    count = min(20_000, ctx.sizes.cost_events)
    ctx.say(f"scenario: storage cost of an outage ({count:,} realistic waiting events)")
    batch, json_bytes, args = _messages(count, ctx.sizes.entities)
    work = ctx.root / "storage"
    server = RedisServer(work / "redis", appendonly=True)
    server.start()
    try:
        client = redis.Redis(port=server.port)
        client.config_set("appendfsync", "always")
        used0 = int(client.info("memory")["used_memory"])
        aof0 = aof_bytes(work / "redis")
        for start in range(0, count, 1_000):
            client.lpush("ha_events", *batch[start : start + 1_000])
        ram = (int(client.info("memory")["used_memory"]) - used0) / count
        aof = (aof_bytes(work / "redis") - aof0) / count
        assert client.llen("ha_events") == count, "every message is in the queue"
        # Older than MAX_EVENT_AGE, they move to the outage store (workers/stores/dead_letters.py).
        used1 = int(client.info("memory")["used_memory"])
        aof1 = aof_bytes(work / "redis")
        store = DeadLetterStore(client, RedisKeys())
        for start in range(0, count, 1_000):
            store.add_many(
                (m, TOO_OLD_DURING_OUTAGE, OUTAGE_ERROR) for m in args[start : start + 1_000]
            )
        outage = (int(client.info("memory")["used_memory"]) - used1) / count
        outage_aof = (aof_bytes(work / "redis") - aof1) / count
        assert store.outage_count() == count
        client.close()
    finally:
        server.stop()
    spool = Spool(work / "spool" / "events.sqlite3")
    try:
        for start in range(0, count, 1_000):
            spool.append(batch[start : start + 1_000])
        disk = spool.size_bytes() / count
    finally:
        spool.close()
    event = json_bytes / count
    ctx.say(
        f"storage: {ram:,.0f} B of Redis RAM, {aof:,.0f} B of AOF, {disk:,.0f} B of spool per "
        f"waiting event, {outage:,.0f} B of Redis RAM in the outage store (the event's JSON: "
        f"{event:,.0f} B); {count:,} events"
    )
    note = f"{count:,} simulator events as the listener encodes them; baseline: the event's JSON"
    ctx.row("Redis RAM per waiting event (used_memory growth)", round(ram), "B", event, note)
    ctx.add(Figure("redis_aof_per_waiting_event", aof, "B", event, "measured", True,
                   baseline_is=note))  # fmt: skip
    ctx.add(Figure("spool_disk_per_waiting_event", disk, "B", event, "measured", True,
                   baseline_is=note))  # fmt: skip
    ctx.add(Figure("outage_store_ram_per_event", outage, "B", event, "measured", True,
                   baseline_is=note))  # fmt: skip
    ctx.add(Figure("outage_store_aof_per_event", outage_aof, "B", event, "measured", True,
                   baseline_is=note))  # fmt: skip
    for rate in RATES:
        for label, seconds in DURATIONS:
            waiting = rate * seconds
            # The last MAX_EVENT_AGE (a day by default) waits in the queue, the rest in the
            # outage store.
            queued = rate * min(seconds, MAX_EVENT_AGE_S)
            stored = waiting - queued
            ctx.row(
                f"outage of {label} at {rate} events/s: {waiting:,} events",
                round((queued * ram + stored * outage) / 2**20),
                "MB of Redis RAM",
                None,
                f"AOF {(queued * aof + stored * outage_aof) / 2**20:,.0f} MB; in the spool "
                f"instead {waiting * disk / 2**20:,.0f} MB",
            )
    (work / "storage.json").write_text(
        json.dumps(
            {
                "ram": ram,
                "aof": aof,
                "spool": disk,
                "outage_store": outage,
                "outage_store_aof": outage_aof,
                "event_json": event,
            }
        ),
        "utf-8",
    )
