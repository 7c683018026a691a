"""Scenarios: what a second destination costs, in worker CPU and, while it is down, in Redis.

- `destinations_cpu`: two workers drain copies of the same queue at the same time (as the
  worker scenario does), one writing to one InfluxDB database, the other to two (a rules file
  with `destinations:`, the second an InfluxDB 1.x database of its own, so the ratio is the
  fan-out's and not another store's encoding). Each event is transformed and written once per
  destination, so about 2x is the expectation; the figure is the ratio.
- `destinations_backlog`: a worker whose second destination (VictoriaMetrics at a port where
  nothing listens) is down keeps every batch for it in its backlog (workers/stores/backlog.py:
  one zlib-compressed JSON array per batch). Redis' MEMORY USAGE of that list per waiting event,
  against the same events waiting in the broker queue, as the listener enqueues them.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import urllib3

from bench.context import Context, drained, percentile, wait_for
from bench.expect import SeriesKey, expected_points, recorded_events
from bench.pipeline import POLL_S, _landed, _tail, pipeline
from bench.report import Figure
from bench.stack import Stack
from bench.storage_cost import messages
from bench.worker_cost import QUEUE, _Drain, _run_together, _stage
from config.redis_keys import RedisKeys
from core.rules import Rules
from core.transform import Point, event_to_point
from devtools.local_servers import VictoriaMetricsServer, free_port
from workers.stores.backlog import Backlog

CPU_TARGET = 2.2
"""Two destinations cost at most this many times one: the second transform and write, and
little else."""
LIVE_BATCH = 100
"""Events per batch at 200 events/s with BATCH_INTERVAL 0.5 s: the backlog's chunks during a
real outage (a pre-filled queue is taken in batches of BATCH_SIZE instead)."""


def _rules(root: Path, name: str, second: str) -> Path:
    """A rules file naming `default` (INFLUXDB_*) and a second destination."""
    path = root / f"{name}.yaml"
    path.write_text(f"destinations:\n  - name: default\n  - {second}\n", "utf-8")
    return path


def _fill(ctx: Context, count: int) -> int:
    """A fresh database whose queue holds `count` messages as the listener enqueues them."""
    db = ctx.fresh_db()
    batch, _ = messages(count, ctx.sizes.entities)
    client = ctx.stack.redis(db)
    for start in range(0, count, 1_000):
        client.lpush(QUEUE, *batch[start : start + 1_000])
    return db


def cpu(ctx: Context) -> None:
    count = max(2_000, ctx.sizes.cost_events // 2)
    ctx.say(f"scenario destinations_cpu: worker CPU per event, two destinations vs one "
            f"({count:,} events each, draining together)")  # fmt: skip
    stack = ctx.stack
    source = _fill(ctx, count)
    second = "dest_two_second"
    stack.influx.create(second)
    rules = _rules(ctx.root, "two-destinations", f"{{name: second, url: "
                   f"'{stack.influx_server.url}', database: {second}}}")  # fmt: skip
    one = _Drain("ingest-1dest", _stage(ctx, source, 0, count), "dest_one")
    two = _Drain("ingest-2dest", _stage(ctx, source, 0, count), "dest_two",
                 settings={"HA_INGESTOR_CONFIG": str(rules)})  # fmt: skip
    stack.redis(source).flushdb()
    _run_together(ctx, [one, two])
    assert two.expected is not None
    lost = len(two.expected.keys - stack.influx.series_keys(second))
    ctx.lost += lost
    ctx.sent += two.events
    per_k = [1000 * d.result["cpu"] / d.result["events"] for d in (two, one)]
    ratio = per_k[0] / per_k[1]
    ctx.say(f"two destinations: {per_k[0]:.3f} CPU s per 1,000 events, one: {per_k[1]:.3f} "
            f"({ratio:.2f}x); second database lost {lost}")  # fmt: skip
    ctx.add(
        Figure(
            "worker_cpu_two_destinations", per_k[0], "CPU s per 1,000 events", per_k[1],
            f"≤ {CPU_TARGET:g}x baseline", ratio <= CPU_TARGET,
            baseline_is="the same worker with one destination, same queue copy, draining at "
            "the same time",
            note=f"{count:,} events each; both destinations InfluxDB 1.x databases; every "
            "point of both checked",
        )
    )  # fmt: skip
    rates = [d.result["events"] / d.result["elapsed"] for d in (two, one)]
    ctx.row("worker drain rate, two destinations", rates[0], "events/s", rates[1],
            "baseline: one destination, draining at the same time")  # fmt: skip


def _backlog_drain(ctx: Context, source: int, count: int, batch: int) -> tuple[float, int]:
    """Drain a copy of the queue with the second destination down; (backlog bytes, events)."""
    stack: Stack = ctx.stack
    database = f"backlog_{batch}"
    stack.influx.create(database)
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    rules = _rules(ctx.root, f"backlog-{batch}", f"{{name: archive, kind: victoriametrics, "
                   f"url: '{down}'}}")  # fmt: skip
    drain = _Drain(f"backlog-{batch}", _stage(ctx, source, 0, count), database, settings={
        "HA_INGESTOR_CONFIG": str(rules), "BATCH_SIZE": str(batch),
    })  # fmt: skip
    _run_together(ctx, [drain])
    client = stack.redis(drain.db)
    backlog = Backlog(client, RedisKeys().for_destination("archive"))
    wait_for(lambda: drained(client), 30, "the queue drained")
    used, events, chunks = backlog.bytes_used(), backlog.events(), backlog.chunks()
    ctx.say(f"backlog of {events:,} events in {chunks} chunks: {used:,} bytes")
    return used, events


def backlog(ctx: Context) -> None:
    count = min(20_000, ctx.sizes.cost_events)
    ctx.say(f"scenario destinations_backlog: Redis bytes per event waiting for a down "
            f"destination ({count:,} events)")  # fmt: skip
    source = _fill(ctx, count)
    client = ctx.stack.redis(source)
    queue_per_event = int(client.memory_usage(QUEUE, samples=0) or 0) / count
    live_bytes, live_events = _backlog_drain(ctx, source, count, LIVE_BATCH)
    big_bytes, big_events = _backlog_drain(ctx, source, count, 1_000)
    client.flushdb()
    for events in (live_events, big_events):
        # The first batch was tried before the destination was parked: what its rules skip
        # (a few events) is finished, not kept.
        if not 0.99 * count <= events <= count:
            raise RuntimeError(f"the backlog holds {events} events of the {count} drained")
    per_event = live_bytes / live_events
    ctx.say(f"backlog: {per_event:.0f} B per event in {LIVE_BATCH}-event chunks, "
            f"{big_bytes / big_events:.0f} B in 1,000-event chunks; the broker queue "
            f"{queue_per_event:.0f} B per event")  # fmt: skip
    ctx.add(
        Figure(
            "backlog_bytes_per_waiting_event", per_event, "bytes", queue_per_event,
            "< 1x baseline", per_event < queue_per_event,
            baseline_is="MEMORY USAGE of the broker queue holding the same events, as the "
            "listener enqueues them",
            note=f"MEMORY USAGE of the down destination's backlog ÷ its {count:,} events, "
            f"{LIVE_BATCH} per chunk (200/s, BATCH_INTERVAL 0.5 s)",
        )
    )  # fmt: skip
    ctx.row("backlog bytes per waiting event, 1,000-event chunks", big_bytes / big_events,
            "bytes", queue_per_event, "BATCH_SIZE batches from a long queue")  # fmt: skip


OUTAGE_RATE = 200.0
Sample = tuple[str, frozenset[tuple[str, str]], int]
"""One VictoriaMetrics sample: (name, labels less the enrichment's area and device, ms)."""
BEFORE_S = 10.0
P99_TARGET_S = 1.5
DRAIN_TARGET_S = 2.0


class _Readable:
    """When each point of the simulator's record becomes readable in InfluxDB, minus its
    event's time (as the latency scenario measures), from a thread polling every 0.1 s."""

    def __init__(self, ctx: Context, record: Path, database: str) -> None:
        self._ctx, self._record, self._database = ctx, record, database
        self._offset = 0
        self.fired: dict[SeriesKey, int] = {}
        self.seen: dict[SeriesKey, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> _Readable:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            self._offset, new = _tail(self._record, self._offset)
            if new:
                self.fired.update(expected_points(new).time_fired_ns)
            unseen = [t for key, t in self.fired.items() if key not in self.seen]
            if not unseen:
                continue
            rows = self._ctx.stack.influx.rows(
                f'SELECT "value","state" FROM /.*/ WHERE time >= {min(unseen)} '
                'GROUP BY "domain","entity_id"',
                self._database,
            )
            now = time.time()
            for row in rows:
                key = (row["domain"], row["entity_id"], int(row["time"]))
                if key in self.fired and key not in self.seen:
                    self.seen[key] = now - self.fired[key] / 1e9

    def between(self, since: float, until: float) -> tuple[int, list[float]]:
        """Points fired between the two Unix times, and the latencies of those readable."""
        keys = [k for k, t in self.fired.items() if since <= t / 1e9 < until]
        return len(keys), [self.seen[k] for k in keys if k in self.seen]


def _victoria_samples(url: str) -> Counter[Sample]:
    """Every sample VictoriaMetrics holds by (name, labels less area/device, ms)."""
    pool = urllib3.PoolManager(timeout=urllib3.Timeout(connect=5, read=120), retries=False)
    pool.request("GET", f"{url}/internal/force_flush")
    every = {"match[]": '{__name__!=""}', "start": "0", "end": str(int(time.time()) + 86_400)}
    reply = pool.request("POST", f"{url}/api/v1/export", fields=every, encode_multipart=False)
    found: Counter[Sample] = Counter()
    for line in reply.data.decode().splitlines():
        if not line.strip():
            continue
        series = json.loads(line)
        labels = {k: v for k, v in series["metric"].items() if k not in ("area", "device")}
        name = labels.pop("__name__")
        for ms in series["timestamps"]:
            found[(name, frozenset(labels.items()), int(ms))] += 1
    return found


def _expected_samples(
    events: list[dict[str, Any]],
) -> Counter[Sample]:
    """The samples VictoriaMetrics must hold for these events (core/victoria_lines.py)."""
    rules = Rules.from_mapping(None)
    points: dict[SeriesKey, Point] = {}
    for event in events:
        point = event_to_point(event, rules)
        if isinstance(point, Point):
            tags = dict(point.tags)
            points[(tags["domain"], tags["entity_id"], point.time_ns)] = point
    samples: Counter[Sample] = Counter()
    for point in points.values():
        tags = dict(point.tags)
        for name, value in point.fields:
            labels = dict(tags)
            if isinstance(value, str):
                if not value:
                    continue
                labels[name + "_text" if name in tags else name] = value
            samples[(f"{point.measurement}_{name}", frozenset(labels.items()),
                     point.time_ns // 10**6)] += 1  # fmt: skip
    return samples


def outage(ctx: Context) -> None:
    """Two destinations, VictoriaMetrics stopped (by PID) for OUTAGE_S and started again on
    its port and data: InfluxDB's latency meanwhile, the drain time after, each point once."""
    seconds = ctx.sizes.destination_outage_seconds
    ctx.say(f"scenario destinations_outage: archive (VictoriaMetrics) down {seconds:g} s at "
            f"{OUTAGE_RATE:g} events/s, 2 workers")  # fmt: skip
    server = VictoriaMetricsServer(ctx.root / "victoria-outage")
    server.start()
    try:
        rules = _rules(ctx.root, "outage", f"{{name: archive, kind: victoriametrics, "
                       f"url: '{server.url}'}}")  # fmt: skip
        events = int(OUTAGE_RATE * (BEFORE_S + seconds + 15))
        with pipeline(ctx, "dest_outage", rate=OUTAGE_RATE, events=events, workers=2,
                      HA_INGESTOR_CONFIG=str(rules),
                      VICTORIA_TEXT_VALUES_MAX="1000000") as run:  # fmt: skip
            client = ctx.stack.redis(run["db"])
            backlog = Backlog(client, RedisKeys().for_destination("archive"))
            sim = run["procs"]["simulator"]
            sim.next_line("resumed_at", 60)
            watch = _Readable(ctx, run["record"], "dest_outage").start()
            try:
                began = time.time() + 1
                time.sleep(BEFORE_S)  # both destinations written to: the baseline's latency
                server.stop()
                down_at = time.time()
                time.sleep(seconds)  # the outage itself
                waiting = backlog.events()
                up_at_wall = time.time()
                server.start()
                up_at = time.monotonic()
                wait_for(lambda: not backlog.parked() and not backlog.chunks(), 120,
                         "the archive's backlog drained", 0.01)  # fmt: skip
                drain_s = time.monotonic() - up_at

                def settled() -> bool:
                    count, readable = watch.between(down_at, up_at_wall)
                    return count == len(readable)

                wait_for(settled, 30, "every point fired during the outage readable", 0.2)
                fired_down, latencies = watch.between(down_at, up_at_wall)
                _, before = watch.between(began, down_at)
            finally:
                watch.stop()
            sim.next_line("done_at", 60 + 3 * seconds)
            fired = recorded_events(run["record"])
            keys = expected_points(fired).keys
            missing = _landed(ctx, "dest_outage", keys, 60)
            samples = _expected_samples(fired)

            def complete() -> Counter[Sample] | None:
                found = _victoria_samples(server.url)
                return found if found.keys() >= samples.keys() else None

            found = wait_for(complete, 60, "every sample in VictoriaMetrics", 1.0)
            twice = sum(1 for k, n in samples.items() if found[k] > n)
            run["watcher"].stop()
    finally:
        server.stop()
    ctx.lost += missing
    ctx.sent += len(keys)
    p99, base = percentile(latencies, 99), percentile(before, 99)
    ctx.say(f"destinations outage: events sent {len(fired):,}, points {len(keys):,}; InfluxDB "
            f"missing {missing}, VictoriaMetrics samples {sum(samples.values()):,} expected, "
            f"{twice} written twice; InfluxDB p99 during the outage {p99:.3f} s over "
            f"{len(latencies):,} of {fired_down:,} points; backlog {waiting:,} events, drained "
            f"{drain_s:.2f} s after the return")  # fmt: skip
    if twice:
        raise RuntimeError(f"{twice} VictoriaMetrics samples written more than once")
    ctx.add(
        Figure(
            "destination_outage_p99_s", p99, "s", base, f"≤ {P99_TARGET_S:g} s",
            p99 <= P99_TARGET_S,
            baseline_is=f"the same run's p99 in the {BEFORE_S:g} s before the outage, both "
            "destinations up",
            note=f"InfluxDB's end-to-end latency while the other destination (VictoriaMetrics) "
            f"is down {seconds:g} s, {OUTAGE_RATE:g} events/s, 2 workers",
        )
    )  # fmt: skip
    ctx.add(
        Figure(
            "destination_backlog_drain_s", drain_s, "s", None, f"≤ {DRAIN_TARGET_S:g} s",
            drain_s <= DRAIN_TARGET_S,
            note=f"{waiting:,} events waiting; from VictoriaMetrics answering to its backlog "
            "empty and the destination unparked",
        )
    )  # fmt: skip
