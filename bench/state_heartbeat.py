"""Scenario: what the quiet-sensor heartbeat costs, in points and CPU per hour, for 500 entities
at a 15-minute interval.

A quiet home (the simulator sends its 500 states as the snapshot, then nothing), the listener and
one worker, every entity chosen (`STATE_HEARTBEAT_ENTITY_GLOBS=*`). Waiting hours for a few beats
per entity would measure nothing but noise, so the interval is shortened to SHORT_INTERVAL_S
and the figures are scaled by 900 / SHORT_INTERVAL_S. That is honest because the heartbeat's
work scales with it exactly: every entity is seeded from the same snapshot, so at any interval
the 500 states fall due together, once per interval: one wake-up, 500 task messages, 500
points, whether that happens every 2 s or every 15 min. What does not scale (the processes'
own timers: the listener's state report, the worker's idle polling) is measured in a round
with the heartbeat off over the same time, subtracted, and shown as the baseline.

CPU is user+sys from /proc of the listener, the worker (with its children) and redis-server,
over a fixed window after the snapshot has landed; the points are the heartbeat points whose
time falls in that window, counted in InfluxDB after they have all landed.
"""

from __future__ import annotations

import time

from bench import procstat
from bench.context import Context, consumer_ready, wait_for
from bench.report import Figure
from bench.stack import Proc

ENTITIES = 500
INTERVAL_S = 900.0
"""The interval the figures are for: 15 minutes."""
SHORT_INTERVAL_S = 2.0
"""The interval the scenario runs at; the figures are scaled by INTERVAL_S / SHORT_INTERVAL_S."""
CPU_TARGET_S_PER_HOUR = 3.6
"""0.1% of one core: a heartbeat that costs more than that is not worth its points."""


def _cpu(ctx: Context, procs: dict[str, Proc]) -> dict[str, float]:
    redis_pid = ctx.stack.redis_server.pid
    assert redis_pid is not None
    cpu = {name: procstat.tree_cpu_seconds(proc.pid) for name, proc in procs.items()}
    cpu["redis"] = procstat.cpu_seconds(redis_pid)
    return cpu


def _points(ctx: Context, database: str, where: str) -> int:
    rows = ctx.stack.influx.rows(f'SELECT COUNT("value") FROM /.*/ WHERE {where}', database)
    return sum(int(row.get("count") or 0) for row in rows)


def _state_series(ctx: Context, database: str) -> int:
    """Series of states (not heartbeats): one per entity once the snapshot has landed."""
    keys = [
        values[0]
        for result in ctx.stack.influx.results("SHOW SERIES", database)
        for series in result.get("series", [])
        for values in series.get("values", [])
    ]
    return sum(1 for key in keys if "heartbeat=true" not in key)


def _round(ctx: Context, heartbeat: bool) -> tuple[dict[str, float], int]:
    """CPU seconds by process over the window, and the heartbeat points written in it."""
    stack = ctx.stack
    name = "heartbeat_on" if heartbeat else "heartbeat_off"
    db = ctx.fresh_db()
    stack.influx.create(name)
    extra = (
        {"STATE_HEARTBEAT_INTERVAL": f"{SHORT_INTERVAL_S:g}", "STATE_HEARTBEAT_ENTITY_GLOBS": "*"}
        if heartbeat
        else {}
    )
    env = stack.env(db, name, ctx.root / f"{name}-data", **extra)
    sim = stack.simulator(rate=1.0, events=0, record=ctx.root / f"{name}.jsonl", entities=ENTITIES)
    procs: dict[str, Proc] = {}
    try:
        procs["worker"] = stack.worker(env)
        wait_for(lambda: consumer_ready(stack.redis(db), db), 60, "the worker to consume")
        procs["listener"] = stack.listener(env, sim.url)  # type: ignore[attr-defined]
        wait_for(lambda: _state_series(ctx, name) >= ENTITIES, 60, "the snapshot landed", 0.5)
        seconds = ctx.sizes.heartbeat_seconds
        before, started = _cpu(ctx, procs), time.time_ns()
        time.sleep(seconds)  # the window is a span of time: nothing to await
        after, ended = _cpu(ctx, procs), time.time_ns()
        within = f"\"heartbeat\" = 'true' AND time >= {started} AND time < {ended}"
        # Whole intervals in the window: one burst fewer than its length allows, at least.
        expected = ENTITIES * (int(seconds // SHORT_INTERVAL_S) - 1) if heartbeat else 0
        wait_for(lambda: _points(ctx, name, within) >= expected, 30, "the window's points", 0.5)
        points = _points(ctx, name, within)
    finally:
        for proc in procs.values():
            stack.retire(proc)
        stack.retire(sim)
    return {key: after[key] - before[key] for key in after}, points


def run(ctx: Context) -> None:
    seconds = ctx.sizes.heartbeat_seconds
    scale = INTERVAL_S / SHORT_INTERVAL_S
    ctx.say(
        f"scenario heartbeat: {ENTITIES} quiet entities, the heartbeat every "
        f"{SHORT_INTERVAL_S:g} s for {seconds:g} s (scaled to {INTERVAL_S:g} s), and off"
    )
    idle, _ = _round(ctx, heartbeat=False)
    busy, points = _round(ctx, heartbeat=True)
    hour = 3600.0 / seconds
    points_per_hour = points / scale * hour
    added = {key: busy[key] - idle[key] for key in busy}
    cpu_per_point = sum(added.values()) / max(1, points)
    cpu_per_hour = cpu_per_point * points_per_hour
    idle_per_hour = sum(idle.values()) * hour
    ctx.add(
        Figure(
            "heartbeat_points_per_hour", points_per_hour, "points/h",
            ENTITIES * 3600.0 / INTERVAL_S, "every entity once per interval (±5%)",
            abs(points_per_hour / (ENTITIES * 3600.0 / INTERVAL_S) - 1) <= 0.05,
            baseline_is=f"{ENTITIES} entities x 3600 / {INTERVAL_S:g} s",
            note=f"{points} heartbeat points in {seconds:g} s at a {SHORT_INTERVAL_S:g} s "
            f"interval, scaled by {scale:g}",
        )
    )  # fmt: skip
    ctx.add(
        Figure(
            "heartbeat_cpu_per_hour_s", cpu_per_hour, "CPU s/h", idle_per_hour,
            f"≤ {CPU_TARGET_S_PER_HOUR:g} s/h (0.1% of a core)",
            cpu_per_hour <= CPU_TARGET_S_PER_HOUR,
            baseline_is="the same stack with the heartbeat off, idle, per hour",
            note=f"listener + worker + Redis CPU above the idle round, {cpu_per_point * 1e6:.0f} "
            f"µs per heartbeat point x the points per hour",
        )
    )  # fmt: skip
    for key, spent in added.items():
        ctx.row(
            f"heartbeat: {key} CPU per heartbeat point", spent / max(1, points) * 1e6, "µs",
            idle[key] / max(1, points) * 1e6, "above the idle round; baseline: its idle CPU "
            "over the same window, per point",
        )  # fmt: skip
    ctx.say(
        f"heartbeat: {points_per_hour:,.0f} points/h, {cpu_per_hour:.2f} s CPU/h "
        f"({cpu_per_point * 1e6:.0f} µs per point; idle stack {idle_per_hour:.1f} s/h)"
    )
