"""Scenario: CPU per event at a steady rate, the listener's and the whole stack's, against a floor.

At full capacity the listener's per-event work is all there is; at the rates homes really send
(a few hundred events/s, a few thousand at peaks) the cost of waking up per frame, per batch and
per timer dominates, and only a steady-rate figure watches it. The simulator sends at a fixed
rate for a fixed time; CPU (user+sys, from /proc) is counted from the end of a warm-up (the
first fifth of that time) until every event is in Redis (the listener) or readable in InfluxDB
(the stack), and divided by the events handled meanwhile.

The floor is bench/floor_client.py against the same simulator at the same rate: websockets'
client, orjson, and one LPUSH per batch of the size the listener's batches had in the round
just before (its LPUSH calls counted by Redis), nothing else. Rounds alternate (listener, floor,
listener, ...) because the machine is shared: the figures are ratios to the floor of the same
run.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis

from bench import procstat, profiling
from bench.capacity import check_queue
from bench.context import Context, wait_for
from bench.expect import expected_points, recorded_events
from bench.pipeline import pipeline
from bench.report import Figure
from bench.stack import Proc

RATES = (200.0, 2_000.0)
"""Events/s of the listener figures: an ordinary home, and a busy one at its peaks."""
STACK_RATE = 200.0
WARM_UP_SHARE = 0.2
"""The share of the sending time left out at its start (one-time costs, see `_counted`)."""
LISTENER_TARGET = 2.0
STACK_TARGET = 4.0
QUEUE = "ha_events"


@contextmanager
def _sending(ctx: Context, name: str, rate: float) -> Iterator[tuple[Proc, int, int]]:
    """A simulator at `rate` for the scenario's time, on a fresh Redis database."""
    db = ctx.fresh_db()
    events = int(rate * ctx.sizes.steady_seconds)
    record = ctx.root / f"{name}.jsonl"
    sim = ctx.stack.simulator(rate=rate, events=events, record=record, entities=ctx.sizes.entities)
    try:
        yield sim, db, events
    finally:
        ctx.stack.retire(sim)


@dataclass(frozen=True)
class Counted:
    """What a process spent on `events` events: CPU seconds, context switches (its threads'
    wake-ups) and LPUSH calls."""

    cpu: float
    switches: int
    lpushes: int
    events: int

    @property
    def cpu_us(self) -> float:
        """CPU µs per event."""
        return self.cpu / self.events * 1e6

    @property
    def switches_per_event(self) -> float:
        return self.switches / self.events


def _lpush_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats").get("cmdstat_lpush", {})
    return int(stats.get("calls", 0))


def _counted(ctx: Context, proc: Proc, sim: Proc, target: int, db: int, label: str) -> Counted:
    """What `proc` spent on the events it queued from the end of the warm-up until `target`
    messages are queued.

    The first seconds are left out: a process's first events pay for one-time work
    (connections, the snapshot, code paths run for the first time), which is no steady cost.
    """
    seconds = ctx.sizes.steady_seconds
    client = ctx.stack.redis(db)
    started = sim.next_line("resumed_at", 60)["resumed_at"]
    time.sleep(max(0.0, started + seconds * WARM_UP_SHARE - time.time()))
    cpu0, switches0 = procstat.cpu_seconds(proc.pid), procstat.context_switches(proc.pid)
    lpush0, queued0 = _lpush_calls(client), int(client.llen(QUEUE))
    spy = profiling.attach(ctx, proc.pid, label, seconds * (1 - WARM_UP_SHARE)) if label else None
    sim.next_line("done_at", 60 + 3 * seconds)
    wait_for(lambda: client.llen(QUEUE) >= target, 60, f"{target} messages in {QUEUE}", 0.01)
    counted = Counted(
        procstat.cpu_seconds(proc.pid) - cpu0,
        procstat.context_switches(proc.pid) - switches0,
        _lpush_calls(client) - lpush0,
        int(client.llen(QUEUE)) - queued0,
    )
    profiling.summarize(ctx, spy, label)
    return counted


def floor_round(ctx: Context, rate: float, index: int, batch: int) -> Counted:
    """What the minimal client spent, `batch` events per LPUSH."""
    stack = ctx.stack
    with _sending(ctx, f"steady-floor-{rate:g}-{index}", rate) as (sim, db, events):
        argv = [sys.executable, "-m", "bench.floor_client", sim.url,  # type: ignore[attr-defined]
                stack.redis_url(db), QUEUE, "--batch", str(batch)]  # fmt: skip
        env = stack.env(db, "unused", ctx.root / "floor")
        floor = stack.spawn(f"floor-{rate:g}", argv, env, json_stdout=True)
        try:
            # Events short of a last batch stay with the client: at most batch - 1.
            counted = _counted(ctx, floor, sim, events - batch + 1, db, "")
        finally:
            stack.retire(floor)
    ctx.say(
        f"floor at {rate:g}/s, round {index}: {counted.cpu_us:.1f} µs CPU/event, "
        f"{counted.switches_per_event:.2f} context switches/event, {batch} per LPUSH"
    )
    return counted


def listener_round(ctx: Context, rate: float, index: int) -> Counted:
    """What the real listener spent (every event checked in the queue)."""
    stack = ctx.stack
    name = f"steady-listener-{rate:g}-{index}"
    with _sending(ctx, name, rate) as (sim, db, events):
        env = stack.env(db, "unused", ctx.root / f"{name}-data")
        listener = stack.listener(env, sim.url)  # type: ignore[attr-defined]
        label = f"listener-steady-{rate:g}" if index == 1 else ""
        try:
            # The first start's snapshot (one message per entity) is queued as well.
            target = events + ctx.sizes.entities
            counted = _counted(ctx, listener, sim, target, db, label)
        finally:
            code = stack.retire(listener)
        if code != 0:
            raise RuntimeError(f"the listener exited with {code}:\n{listener.log_tail()}")
        lost = check_queue(ctx, stack.redis(db), ctx.root / f"{name}.jsonl", events)
    ctx.say(
        f"listener at {rate:g}/s, round {index}: {counted.cpu_us:.1f} µs CPU/event, "
        f"{counted.switches_per_event:.2f} context switches/event, {counted.lpushes} LPUSHes "
        f"({_batch(counted)} per LPUSH), lost {lost}"
    )
    return counted


def _batch(counted: Counted) -> int:
    """The mean number of events per LPUSH."""
    return max(1, round(counted.events / max(1, counted.lpushes)))


def _stack_cpu(procs: dict[str, Proc], redis_pid: int) -> dict[str, float]:
    cpu = {
        name: procstat.tree_cpu_seconds(proc.pid)
        for name, proc in procs.items()
        if name != "simulator"
    }
    cpu["redis"] = procstat.cpu_seconds(redis_pid)
    return cpu


def stack_round(ctx: Context, rate: float) -> dict[str, float]:
    """CPU µs per event of each of listener, worker, beat and Redis, from the end of the
    warm-up until every point lands, over the events fired meanwhile."""
    seconds = ctx.sizes.steady_seconds
    events = int(rate * seconds)
    redis_pid = ctx.stack.redis_server.pid
    assert redis_pid is not None
    influx = ctx.stack.influx
    with pipeline(ctx, "steady_stack", rate=rate, events=events) as run:
        procs = run["procs"]
        sim = procs["simulator"]
        counted_from = sim.next_line("resumed_at", 60)["resumed_at"] + seconds * WARM_UP_SHARE
        time.sleep(max(0.0, counted_from - time.time()))
        cpu0 = _stack_cpu(procs, redis_pid)
        sim.next_line("done_at", 60 + 3 * seconds)
        fired = recorded_events(run["record"])
        keys = expected_points(fired).keys
        deadline = time.monotonic() + 60
        while (missing := len(keys - influx.series_keys("steady_stack"))) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.1)
        cpu1 = _stack_cpu(procs, redis_pid)
        run["watcher"].stop()
    ctx.lost += missing
    ctx.sent += events
    counted = sum(1 for event in fired if fired_at(event) >= counted_from)
    per_event = {name: (cpu1[name] - cpu0[name]) / counted * 1e6 for name in cpu1}
    parts = ", ".join(f"{name} {us:.1f}" for name, us in per_event.items())
    ctx.say(
        f"stack at {rate:g}/s: {sum(per_event.values()):.1f} µs CPU/event ({parts}) over "
        f"{counted} events, lost {missing}"
    )
    return per_event


def fired_at(event: dict[str, Any]) -> float:
    """When the simulator fired an event (its `time_fired`), in Unix seconds."""
    return dt.datetime.fromisoformat(event["time_fired"]).timestamp()


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _listener_figures(ctx: Context, rate: float) -> float:
    """The listener's figure at `rate` and its rows; returns the floor (CPU µs per event)."""
    rounds = ctx.sizes.steady_rounds
    listener: list[Counted] = []
    floor: list[Counted] = []
    for index in range(1, rounds + 1):
        listener.append(listener_round(ctx, rate, index))
        floor.append(floor_round(ctx, rate, index, _batch(listener[-1])))
    value = _mean([c.cpu_us for c in listener])
    base = _mean([c.cpu_us for c in floor])
    ctx.add(
        Figure(
            f"steady_listener_cpu_{rate:g}_us", value, "µs", base,
            f"≤ {LISTENER_TARGET:g}x the floor", value <= LISTENER_TARGET * base,
            baseline_is="minimal client (bench/floor_client.py: orjson, the listener's "
            "mean batch per LPUSH), same simulator and rate",
            note=f"listener CPU per event at a steady {rate:,.0f}/s, "
            f"{ctx.sizes.steady_seconds:g} s, mean of {rounds} interleaved rounds",
        )
    )  # fmt: skip
    ctx.row(
        f"steady {rate:,.0f}/s: listener context switches per event",
        _mean([c.switches_per_event for c in listener]), "switches",
        _mean([c.switches_per_event for c in floor]),
        "every thread's wake-ups (/proc); baseline: the minimal client",
    )  # fmt: skip
    ctx.row(
        f"steady {rate:,.0f}/s: events per LPUSH", _mean([float(_batch(c)) for c in listener]),
        "events", None, "the listener's publish batches; the minimal client used the same",
    )  # fmt: skip
    return base


def run(ctx: Context) -> None:
    ctx.say(
        f"scenario steady: CPU per event at {', '.join(f'{r:g}' for r in RATES)} events/s for "
        f"{ctx.sizes.steady_seconds:g} s, {ctx.sizes.steady_rounds} rounds interleaved with "
        "the minimal client"
    )
    floors = {rate: _listener_figures(ctx, rate) for rate in RATES}
    parts = stack_round(ctx, STACK_RATE)
    value = sum(parts.values())
    base = floors[STACK_RATE]
    ctx.add(
        Figure(
            f"steady_stack_cpu_{STACK_RATE:g}_us", value, "µs", base,
            f"≤ {STACK_TARGET:g}x the floor", value <= STACK_TARGET * base,
            baseline_is=f"the minimal client's CPU per event at {STACK_RATE:g}/s (above)",
            note="listener + worker + beat + Redis user+sys CPU from /proc, end of the "
            f"warm-up to last point readable, a steady {STACK_RATE:g}/s for "
            f"{ctx.sizes.steady_seconds:g} s",
        )
    )  # fmt: skip
    for name, us in parts.items():
        ctx.row(f"steady {STACK_RATE:g}/s stack: {name}", us, "µs", None, "CPU per event")
