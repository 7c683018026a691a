"""Scenario 2: CPU the workers spend per event, next to a bare Celery no-op task.

Both drain copies of the same pre-filled queue (realistic events, enqueued by the listener in
scenario 1) with the Procfile's worker flags; CPU is user+sys of every worker process from
/proc, counted from the moment the worker waits on an empty queue until the copy is drained
and acknowledged. They drain at the same time, so the shared machine's load falls on both
alike (CPU seconds, unlike wall time, hardly depend on it). The bare task runs on kombu's stock
Redis transport, as a worker with WORKER_BULK_TAKE=false does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from bench import procstat, profiling
from bench.context import Context, consumer_ready, drained, wait_for
from bench.expect import Expected, expected_points, task_messages
from bench.report import Figure
from bench.stack import Proc

QUEUE = "ha_events"


def _stage(ctx: Context, source_db: int, start: int, stop: int) -> int:
    """A fresh database whose `staged` list holds queue[start:stop] of the source (by age)."""
    db = ctx.fresh_db()
    source = ctx.stack.redis(source_db)
    length = int(source.llen(QUEUE))
    source.copy(QUEUE, "staged", destination_db=str(db))
    # LPUSH puts the newest at index 0: age rank r is list index length - 1 - r.
    ctx.stack.redis(db).ltrim("staged", length - stop, length - 1 - start)
    return db


@dataclass
class _Drain:
    """One worker draining one staged copy of the queue."""

    kind: str
    db: int
    database: str
    events: int = 0
    worker: Proc | None = None
    expected: Expected | None = None
    cpu0: float = 0.0
    started: float = 0.0
    result: dict[str, float] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    """Settings of this worker beyond the stack's (a rules file with several destinations)."""


def _prepare(ctx: Context, drain: _Drain) -> None:
    stack = ctx.stack
    client = stack.redis(drain.db)
    drain.events = int(client.llen("staged"))
    bare = drain.kind.startswith("bare")  # "ingest" and "ingest-celery" write points
    if not bare:
        stack.influx.create(drain.database)
        drain.expected = expected_points(m["event"] for m in task_messages(client, "staged"))
    env = stack.env(drain.db, drain.database, ctx.root / f"cost-{drain.db}", **drain.settings)
    if drain.kind == "ingest-celery":
        env["WORKER_BULK_TAKE"] = "false"  # today's consumer: Celery's, one message at a time
    app = "bench.bare_app" if bare else "config.celery_app"
    drain.worker = stack.worker(env, app=app, name=drain.kind)


def _start(ctx: Context, drain: _Drain) -> None:
    assert drain.worker is not None
    drain.cpu0 = procstat.tree_cpu_seconds(drain.worker.pid)
    drain.started = time.monotonic()
    ctx.stack.redis(drain.db).rename("staged", QUEUE)


def _finish(ctx: Context, drain: _Drain) -> None:
    assert drain.worker is not None
    elapsed = time.monotonic() - drain.started
    cpu = procstat.tree_cpu_seconds(drain.worker.pid) - drain.cpu0
    rss = max(procstat.peak_rss_mb(p) for p in procstat.tree(drain.worker.pid))
    ctx.stack.retire(drain.worker)
    lost = 0
    if drain.expected is not None:
        found = ctx.stack.influx.series_keys(drain.database)
        lost = len(drain.expected.keys - found)
        ctx.lost += lost
        ctx.sent += drain.events
    events = drain.events
    ctx.say(
        f"{drain.kind} worker: {events:,} events in {elapsed:.1f} s ({events / elapsed:,.0f}/s), "
        f"{cpu / events * 1e6:.0f} µs CPU/event, peak RSS {rss:.0f} MB, lost {lost}"
    )
    drain.result = {"events": events, "cpu": cpu, "elapsed": elapsed, "rss": rss}


def _await_consumer(ctx: Context, db: int) -> None:
    client = ctx.stack.redis(db)
    wait_for(lambda: consumer_ready(client, db), 60, "a worker to consume")


def _run_together(ctx: Context, drains: list[_Drain]) -> None:
    """Both workers drain at the same time: the machine's load falls on both sides alike."""
    try:
        for drain in drains:
            _prepare(ctx, drain)
        for drain in drains:
            _await_consumer(ctx, drain.db)
        time.sleep(1.0)  # let start-up work settle before the CPU clocks start
        for drain in drains:
            _start(ctx, drain)
        spy = None
        for drain in drains:
            if drain.kind.startswith("ingest") and drain.worker is not None:
                spy = profiling.attach(ctx, drain.worker.pid, "worker", 20)
        pending = list(drains)
        deadline = time.monotonic() + 120 + sum(d.events for d in drains) / 50
        while pending:
            for drain in list(pending):
                if drained(ctx.stack.redis(drain.db)):
                    _finish(ctx, drain)
                    pending.remove(drain)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{[d.kind for d in pending]} did not drain in time")
            time.sleep(0.1)
        profiling.summarize(ctx, spy, "worker")
    finally:
        for drain in drains:
            if drain.worker is not None:
                ctx.stack.retire(drain.worker)


def run(ctx: Context) -> None:
    ctx.say("scenario 2: worker CPU per event (beside a bare no-op task, draining together)")
    if ctx.capacity_db is None:
        raise RuntimeError("the worker scenario drains the queue scenario 1 filled: run it first")
    source = ctx.stack.redis(ctx.capacity_db)
    total = min(ctx.sizes.cost_events, int(source.llen(QUEUE)))
    waiting = int(source.llen(QUEUE))
    per_event = int(source.memory_usage(QUEUE, samples=0) or 0) / max(1, waiting)
    ctx.add(
        Figure(
            "redis_bytes_per_waiting_event", per_event, "bytes", 2500.0, "≤ 1,024 bytes",
            per_event <= 1024,
            baseline_is="the previous envelope's measurement (docs/operations.md)",
            note=f"MEMORY USAGE of the listener-filled queue ÷ its {waiting:,} messages",
        )
    )  # fmt: skip
    bare = _Drain("bare", _stage(ctx, ctx.capacity_db, 0, total), "bare")
    real = _Drain("ingest", _stage(ctx, ctx.capacity_db, 0, total), "cost")
    alone = _Drain(
        "bare", _stage(ctx, ctx.capacity_db, 0, min(total, ctx.sizes.alone_events)), "bare"
    )
    celery_way = _Drain("ingest-celery", _stage(ctx, ctx.capacity_db, 0, total), "cost_celery")
    source.flushdb()
    _run_together(ctx, [bare, real])
    _run_together(ctx, [celery_way])
    drain_rates = [d.result["events"] / d.result["elapsed"] for d in (real, celery_way)]
    ctx.add(
        Figure(
            "worker_drain_rate", drain_rates[0], "points/s", drain_rates[1],
            "≥ 5,000/s and ≥ 7x baseline",
            drain_rates[0] >= 5000 and drain_rates[0] >= 7 * drain_rates[1],
            baseline_is="the same worker with WORKER_BULK_TAKE=false (Celery's consumer, "
            "kombu's per-message bookkeeping), same queue copy; every point checked",
            note=f"{real.events:,} events",
        )
    )  # fmt: skip
    cpu_us = 1e6 * real.result["cpu"] / real.result["events"]
    ctx.add(
        Figure(
            "worker_cpu_per_event_us", cpu_us, "µs", 1e6 * celery_way.result["cpu"]
            / celery_way.result["events"], "≤ 150 µs", cpu_us <= 150,
            baseline_is="the same worker with WORKER_BULK_TAKE=false",
        )
    )  # fmt: skip
    # Celery's own drain rate for one process with the machine to itself (as far as the other
    # engineers' load allows): the baseline of the end-to-end throughput and the burst drain.
    _run_together(ctx, [alone])
    per_k = [1000 * d.result["cpu"] / d.result["events"] for d in (real, bare)]
    ctx.add(
        Figure(
            "worker_cpu_per_event", per_k[0], "CPU s per 1,000 events", per_k[1],
            "≤ 1.1x baseline", per_k[0] <= 1.1 * per_k[1],
            baseline_is="bare Celery no-op task, same queue copy and worker flags, "
            "draining at the same time",
            note=f"{real.events:,} events each",
        )
    )  # fmt: skip
    rates = [d.result["events"] / d.result["elapsed"] for d in (real, bare, alone)]
    ctx.row("worker drain rate (1 process, both draining at once)", rates[0], "events/s",
            rates[1], "baseline: bare no-op worker")  # fmt: skip
    ctx.row("bare no-op worker drain rate, alone", rates[2], "events/s", None,
            f"{alone.events:,} events; the baseline of e2e_throughput and burst_drain")  # fmt: skip
    ctx.bare_drain_rate = rates[2]
    ctx.bare_worker_rss = bare.result["rss"]
    ctx.worker_rss["cost drain"] = real.result["rss"]
