"""What every scenario shares: the stack, the sizes, and where figures and findings go."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from bench.report import Figure, Row
from bench.stack import Stack
from workers.consumers.bulk_queue import in_flight


@dataclass(frozen=True)
class Sizes:
    """How much each scenario does; `--quick` shrinks everything for a smoke run."""

    capacity_events: int = 100_000
    capacity_rounds: int = 2
    delay_payloads: int = 10_000
    sim_max_rate: float = 24_000.0
    flow_control: int = 900
    cost_events: int = 100_000
    alone_events: int = 20_000
    latency_rate: float = 200.0
    latency_seconds: float = 30.0
    baseline_latency_seconds: float = 15.0
    throughput_rate: float = 2_000.0
    throughput_seconds: float = 15.0
    burst_rate: float = 3_700.0
    burst_seconds: float = 60.0
    entities: int = 40
    import_states: int = 1_000_000
    import_baseline_states: int = 100_000
    steady_seconds: float = 15.0
    steady_rounds: int = 2
    heartbeat_seconds: float = 30.0
    destination_outage_seconds: float = 60.0
    homes: int = 20
    home_rate: float = 100.0
    homes_seconds: float = 60.0
    homes_backlog_seconds: float = 5.0


QUICK = Sizes(
    capacity_events=8_000,
    capacity_rounds=1,
    delay_payloads=1_500,
    cost_events=4_000,
    alone_events=2_000,
    latency_seconds=8.0,
    baseline_latency_seconds=4.0,
    throughput_seconds=3.0,
    burst_rate=3_600.0,
    burst_seconds=4.0,
    import_states=20_000,
    import_baseline_states=10_000,
    steady_seconds=3.0,
    steady_rounds=1,
    heartbeat_seconds=6.0,
    destination_outage_seconds=10.0,
    homes=3,
    homes_seconds=4.0,
    homes_backlog_seconds=2.0,
)


@dataclass
class Context:
    """Shared state of one benchmark run."""

    stack: Stack
    sizes: Sizes
    root: Path
    figures: list[Figure] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    profile_dir: Path | None = None
    lost: int = 0
    sent: int = 0
    # Filled by one scenario, used by later ones (their baselines).
    capacity_db: int | None = None
    payloads: Path | None = None
    bare_drain_rate: float | None = None
    bare_worker_rss: float | None = None
    worker_rss: dict[str, float] = field(default_factory=dict)
    beat_rss: float = 0.0
    _dbs: Any = field(default_factory=lambda: itertools.count(1))

    def fresh_db(self) -> int:
        """An emptied Redis database (1..15) for the next scenario step. Numbers are reused once
        all were handed out (scenarios run one after another and stop their processes), except
        the capacity scenario's, whose queue later scenarios copy."""
        while True:
            db: int = (next(self._dbs) - 1) % 15 + 1
            if db != self.capacity_db:
                break
        self.stack.redis(db).flushdb()
        return db

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)

    def row(self, name: str, value: float, unit: str, baseline: float | None = None,
            note: str = "") -> None:  # fmt: skip
        self.rows.append(Row(name, value, unit, baseline, note))

    def say(self, text: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)


def wait_for(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def consumer_ready(client: redis.Redis, db: int) -> bool:
    """A worker is blocked taking from this database (BLMOVE with ha-ingestor's transport, BRPOP
    with kombu's): it consumes from now on."""
    return any(
        c.get("cmd") in ("blmove", "brpop") and int(c.get("db", -1)) == db
        for c in client.client_list()
    )


def drained(client: redis.Redis, queue: str = "ha_events") -> bool:
    """Nothing waiting and nothing taken but unfinished (kombu's `unacked` hash, the bulk
    consumers' in-flight lists)."""
    pipe = client.pipeline(transaction=False)
    pipe.llen(queue)
    pipe.hlen("unacked")
    waiting, unacked = pipe.execute()
    if int(waiting) or int(unacked):
        return False
    return not any(in_flight(client).values())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]
