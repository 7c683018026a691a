"""Figures, the table, the JSON lines and bench/RESULTS.md."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

FIGURES = (
    "listener_capacity",
    "worker_cpu_per_event",
    "e2e_throughput",
    "e2e_latency_p99",
    "burst_drain",
    "rss_listener",
    "rss_worker",
    "lost_events",
    # the bulk take: worker cost, stack cost, Redis per waiting event
    "worker_drain_rate",
    "worker_cpu_per_event_us",
    "stack_cpu_per_event_us",
    "redis_bytes_per_waiting_event",
    "burst_drain_one_worker_s",
    # `ha-ingestor import`
    "import_states_rate",
    "import_statistics_rate",
    "import_broker_peak_mb",
    # the steady-rate scenario
    "steady_listener_cpu_200_us",
    "steady_listener_cpu_2000_us",
    "steady_stack_cpu_200_us",
    # the quiet-sensor heartbeat
    "heartbeat_points_per_hour",
    "heartbeat_cpu_per_hour_s",
    # several destinations
    "worker_cpu_two_destinations",
    "backlog_bytes_per_waiting_event",
    "destination_outage_p99_s",
    "destination_backlog_drain_s",
    # many homes into one broker and two workers
    "homes_worker_cpu_per_event_us",
    "homes_p99_worst_home_s",
    "homes_listener_rss_mb",
)


@dataclass(frozen=True)
class Figure:
    """One measured figure beside its baseline, and the target it is held to."""

    figure: str
    value: float
    unit: str
    baseline: float | None
    target: str
    met: bool | None
    baseline_is: str = ""
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    def json_line(self) -> str:
        return json.dumps(
            {
                "figure": self.figure,
                "value": round(self.value, 4),
                "unit": self.unit,
                "baseline": None if self.baseline is None else round(self.baseline, 4),
                "ratio": None if self.ratio is None else round(self.ratio, 4),
                "target": self.target,
            },
            ensure_ascii=False,
        )


@dataclass(frozen=True)
class Row:
    """A table line that is not one of the JSON figures (p50, beat RSS, CPU-normalised rates)."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    note: str = ""


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def table(figures: Sequence[Figure], rows: Sequence[Row]) -> str:
    head = "| figure | value | unit | baseline | ratio | target | met | baseline is / notes |"
    lines = [head, "|---|---:|---|---:|---:|---|---|---|"]
    for f in figures:
        met = "-" if f.met is None else ("yes" if f.met else "**no**")
        notes = "; ".join(x for x in (f.baseline_is, f.note) if x)
        lines.append(
            f"| {f.figure} | {_fmt(f.value)} | {f.unit} | {_fmt(f.baseline)} | "
            f"{_fmt(f.ratio)} | {f.target} | {met} | {notes} |"
        )
    if rows:
        lines += ["", "| detail | value | unit | baseline | notes |", "|---|---:|---|---:|---|"]
        lines += [
            f"| {r.name} | {_fmt(r.value)} | {r.unit} | {_fmt(r.baseline)} | {r.note} |"
            for r in rows
        ]
    return "\n".join(lines)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{platform.node()}: {os.cpu_count()} cores ({cpu}), {mem_gb:.0f} GiB, "
        f"Linux {platform.release()}, Python {platform.python_version()}; "
        f"load average at the end {load}"
    )


METHOD = """\
## How each figure is measured

- **listener_capacity**: the real `ha-ingestor listener` process against the simulator sending as
  fast as the listener takes events (the simulator pauses while more than 900 messages wait for
  the listener, instead of cutting it off as HA would), until every event is a Celery task message
  in Redis; then every message is decoded and matched to the simulator's record (zero loss, no
  duplicates). Baseline: a bare `task.delay(payload)` loop over the same task arguments, in its
  own process. Rounds alternate (listener, loop, listener, loop).
- **worker_cpu_per_event**: user+sys CPU seconds (from /proc) of the worker process per 1,000
  events, draining a copy of the queue the listener filled (realistic simulator events), with the
  Procfile's worker flags; counted from the moment the worker waits on an empty queue until the
  copy is drained and acknowledged, and every point checked in InfluxDB. Baseline: a bare Celery
  no-op task (`bench/bare_app.py`, same Celery settings and flags) draining another copy of the
  same queue at the same time, so the shared machine's load falls on both alike.
- **e2e_latency_p99**: listener + 1 worker + beat, simulator at 200 events/s; the benchmark polls
  InfluxDB every 0.1 s for points newer than the oldest one still missing and takes, for each
  point, the poll's end minus the event's `time_fired` (an upper bound, 0.1 s resolution).
  Baseline: `delay()` at the same rate through a bare no-op task that records its own delay.
- **e2e_throughput**: listener + 1 worker + beat, the simulator offering more than the worker
  takes; events divided by the time from the first event fired to the last point readable.
  Baseline: a bare no-op worker draining a copy of the same queue alone (Celery's own ceiling
  for one process).
- **burst_drain / burst_drain_one_worker_s**: the simulator at its burst rate for the burst
  length with HA's pending-message limits (4,096 pending, or 1,024 for 5 s) enforced, ONE worker
  process (slower than the simulator); the time from the last event emitted until every point is
  readable (target for one worker: ≤ 30 s, 0 lost). Baseline: the backlog at the end of the burst
  divided by the bare no-op worker's drain rate.
- **worker_drain_rate / worker_cpu_per_event_us**: one ingest worker draining a copy of the
  listener-filled queue (scenario 2), points written per second of wall time and user+sys CPU
  per event; baseline: the same worker with WORKER_BULK_TAKE=false (Celery's consumer) draining
  another copy.
- **stack_cpu_per_event_us**: during the throughput run, user+sys CPU (from /proc) of the
  listener, the worker (with its children) and redis-server, from the first event emitted to the
  last point readable, per event. Baseline: the same stack with WORKER_BULK_TAKE=false on a third
  as many events, right after.
- **redis_bytes_per_waiting_event**: `MEMORY USAGE` of the queue the listener filled in scenario 1
  divided by its length; baseline: the previous envelope's 2.5 kB.
- **rss_listener / rss_worker**: peak resident set (VmHWM and 0.25 s samples of VmRSS) of the
  listener during the burst (baseline: the same listener just before it) and of each ingest
  worker process in every scenario (baseline: the bare no-op worker).
- **steady_listener_cpu_200_us / steady_listener_cpu_2000_us**: the real listener against the
  simulator sending at a steady 200 (then 2,000) events/s for a fixed time (HA's behaviour, no
  flow control); user+sys CPU (from /proc) from the end of a warm-up (the first fifth of the
  time: one-time costs) until every event is a task message in Redis, per event queued
  meanwhile; every message decoded and matched to the simulator's record. Baseline: a minimal
  client (`bench/floor_client.py`: websockets, orjson, one LPUSH per batch of the listener's
  mean batch size in the round before, counted by Redis) against the same simulator at the
  same rate, measured the same way. Rounds alternate (listener, client). Context switches per
  event (every thread's, from /proc) are shown beside them.
- **steady_stack_cpu_200_us**: listener + worker + beat + redis-server user+sys CPU (from
  /proc) per event at a steady 200 events/s, from the end of the same warm-up until every
  point is readable, per event fired meanwhile; baseline: the minimal client's CPU per event
  at 200/s in the same run.
- **heartbeat_points_per_hour / heartbeat_cpu_per_hour_s**: a quiet home of 500 entities (the
  simulator sends the snapshot, then nothing), the listener and one worker, the heartbeat on
  every entity; a fixed window after the snapshot has landed, once with the heartbeat every 2 s
  and once with it off. Points: the heartbeat points whose time falls in the window, counted in
  InfluxDB, scaled by 900 / 2 to the 15-minute interval and to an hour (honest because the work
  scales with the interval: seeded from one snapshot, the 500 states fall due together once per
  interval, one wake-up and 500 messages whatever the interval). CPU: user+sys (from /proc) of
  the listener, the worker (with its children) and redis-server above the heartbeat-off round,
  per heartbeat point, times the points per hour. Baseline: the idle stack's own CPU per hour.
- **homes_worker_cpu_per_event_us / homes_p99_worst_home_s / homes_listener_rss_mb**: 20 homes
  of different mixes (8 to 500 entities, own seeds and area names; one simulator process
  serving them all) at 100 events/s each, a listener each (own HA_INSTANCE and DATA_DIR), one
  Redis, two workers, INSTANCE_TAG on; baseline: one home on the same two workers, same run.
  Worker CPU: both workers' user+sys (from /proc) from the end of a warm-up until every point is
  readable, per event fired meanwhile. Latency: each point's first sight in InfluxDB (polled
  every 0.25 s, grouped by `instance`) minus its `time_fired`. RSS: each listener's VmHWM. A
  second phase with the workers stopped gives Redis memory per waiting event; every point of
  both phases is checked per home.
- **lost_events**: events the simulator sent that are missing from the queue (capacity) or from
  InfluxDB (every other scenario); baseline: events sent.
"""


def write_results(
    path: Path, figures: Sequence[Figure], rows: Sequence[Row], mode: str, notes: Sequence[str]
) -> None:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = [
        "# Benchmark results",
        "",
        f"- Date: {now}",
        f"- Machine: {machine()}",
        f"- Mode: `{mode}` (`make bench` runs `.venv/bin/python -m bench`)",
        "",
        table(figures, rows),
        "",
    ]
    if notes:
        text += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    text += [METHOD]
    path.write_text("\n".join(text), encoding="utf-8")
