"""Scenario: many homes into one broker and two workers, beside one home in the same run.

Twenty simulated homes of different mixes (a flat with a dozen lights and switches, a house of
hundreds of numeric sensors: the simulator's first sixteen entities are one of every domain,
the rest numeric sensors; each home its own seed and area names) send 100 events/s each, each
to its own listener (its own HA_INSTANCE and DATA_DIR), all on one Redis and one pool of two
workers with INSTANCE_TAG on. The same is run with one home first; the figures are the
twenty-home ones against that one-home run:

- worker CPU per event (user+sys of both worker trees from /proc, from the end of a warm-up
  until every point is readable, over the events fired meanwhile);
- latency per home: a poller asks InfluxDB for new points grouped by `instance` and notes when
  each becomes readable, minus its `time_fired` (resolution: the poll interval), for the events
  fired after the warm-up. Not /health: the listener-state keys are still shared by the homes
  of a prefix;
- listener peak RSS (VmHWM) and CPU per event, per home;
- bytes on the wire per event (Redis INFO total_net_input/output_bytes over the same window);
- Redis memory per waiting event: a second phase with the workers stopped, every home sending
  for a few seconds, then MEMORY USAGE of the queue and the growth of used_memory ÷ the
  messages waiting; two new workers drain it and every point of both phases is checked.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import procstat, profiling
from bench.context import Context, consumer_ready, drained, percentile, wait_for
from bench.expect import expected_points, recorded_events
from bench.report import Figure
from bench.stack import TOKEN, Proc
from workers.consumers.bulk_queue import in_flight

QUEUE = "ha_events"
WORKERS = 2
WARM_UP_SHARE = 0.2
POLL_S = 0.25
"""How often the poller asks InfluxDB for new points: the latency figures' resolution."""
WORKER_RATIO_TARGET = 1.3
P99_TARGET_S = 1.5
RSS_TARGET_MB = 100.0
ENTITY_COUNTS = (
    12,
    40,
    150,
    25,
    300,
    16,
    80,
    8,
    200,
    60,
    30,
    120,
    10,
    500,
    45,
    20,
    250,
    35,
    100,
    70,
)
"""Entities of each home: up to 16 the home is lights, switches, doors, climate, people and a
few sensors; past that, more and more numeric sensors (the simulator's order)."""
AREA_NAMES: tuple[dict[str, str], ...] = (
    {},
    {"living_room": "Wohnzimmer", "kitchen": "Küche", "bedroom": "Schlafzimmer"},
    {"living_room": "Séjour", "kitchen": "Cuisine", "bedroom": "Chambre"},
    {"living_room": "Woonkamer", "kitchen": "Keuken", "bedroom": "Slaapkamer"},
    {"living_room": "Salón", "kitchen": "Cocina", "bedroom": "Dormitorio"},
)
BASELINE_ENTITIES = 40
"""The one-home run's mix: the bench's usual home."""


@dataclass(frozen=True)
class Mix:
    name: str
    entities: int
    seed: int
    areas: dict[str, str]


def mixes(count: int) -> list[Mix]:
    return [
        Mix(
            f"home_{i + 1:02d}",
            ENTITY_COUNTS[i % len(ENTITY_COUNTS)],
            100 + i,
            AREA_NAMES[i % len(AREA_NAMES)],
        )
        for i in range(count)
    ]


HomeKey = tuple[str, str, str, int]
"""(home, domain, entity id, time ns): a point, told apart from the other homes' points."""


class _Poller:
    """Notes when each fired event's point becomes readable in InfluxDB, per home."""

    def __init__(self, ctx: Context, database: str, records: dict[str, Path], db: int) -> None:
        self._ctx = ctx
        self._database = database
        self._records = records
        self._offsets = dict.fromkeys(records, 0)
        self.fired: dict[HomeKey, int] = {}
        self.seen: dict[HomeKey, float] = {}
        self.depths: list[tuple[float, int, int]] = []
        """(when, messages waiting, messages taken by a worker but unwritten) at each poll."""
        self._client = ctx.stack.redis(db)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="homes-poller", daemon=True)

    def start(self) -> _Poller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def unseen(self) -> int:
        with self._lock:
            return len(self.fired.keys() - self.seen.keys())

    def _tail(self) -> None:
        for home, path in self._records.items():
            try:
                with path.open("rb") as f:
                    f.seek(self._offsets[home])
                    data = f.read()
            except FileNotFoundError:
                continue
            end = data.rfind(b"\n") + 1
            self._offsets[home] += end
            events = [json.loads(line) for line in data[:end].splitlines() if line.strip()]
            for (domain, entity, t), fired in expected_points(events).time_fired_ns.items():
                self.fired[(home, domain, entity, t)] = fired

    def poll(self) -> None:
        with self._lock:
            self._poll()

    def _poll(self) -> None:
        waiting = int(self._client.llen(QUEUE))
        self.depths.append((time.time(), waiting, sum(in_flight(self._client).values())))
        self._tail()
        unseen = [t for key, t in self.fired.items() if key not in self.seen]
        if not unseen:
            return
        # A point that never lands must not widen every later query: 60 s back at most.
        since = max(min(unseen), time.time_ns() - 60 * 10**9) - 1
        rows = self._ctx.stack.influx.rows(
            f'SELECT "value","state" FROM /.*/ WHERE time > {since} '
            'GROUP BY "instance","domain","entity_id"',
            self._database,
        )
        now = time.time()
        for row in rows:
            key = (row.get("instance", ""), row["domain"], row["entity_id"], int(row["time"]))
            fired = self.fired.get(key)
            if fired is not None and key not in self.seen:
                self.seen[key] = now - fired / 1e9

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            self.poll()


@dataclass
class HomesRun:
    """What one run (one home, or the fleet) measured."""

    homes: list[Mix]
    counted: int = 0
    worker_cpu_us: float = 0.0
    listener_cpu_us: dict[str, float] = field(default_factory=dict)
    p99: dict[str, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    rss: dict[str, float] = field(default_factory=dict)
    redis_cpu_us: float = 0.0
    influx_cpu_us: float = 0.0
    net_in: float = 0.0
    net_out: float = 0.0
    queue_bytes: float = 0.0
    used_bytes: float = 0.0
    waiting: int = 0
    sent: int = 0
    lost: int = 0
    cuts: int = 0
    p50: dict[str, float] = field(default_factory=dict)
    halves: tuple[float, float] = (0.0, 0.0)
    """p99 of the events fired in the first and the second half of the counted window."""
    waiting_max: int = 0
    waiting_mean: float = 0.0
    in_flight_mean: float = 0.0
    worker_rss: float = 0.0
    sim_pending: int = 0
    load_cpu_us: float = 0.0
    """The load generator's CPU per event: fleet simulator and this process (the poller)."""
    machine_busy: float = 0.0
    """Share of the machine's CPU time busy over the counted window, everyone's."""
    loadavg: str = ""


def _signal(fleet: Proc, signum: int, key: str) -> dict[str, Any]:
    assert fleet.proc is not None
    fleet.proc.send_signal(signum)
    return fleet.next_line(key, 30)


def _servers_cpu(ctx: Context) -> tuple[float, float]:
    """CPU seconds so far of Redis and InfluxDB (the broker's and the store's share)."""
    pids = (ctx.stack.redis_server.pid, ctx.stack.influx_server.pid)
    redis_cpu, influx_cpu = (0.0 if pid is None else procstat.cpu_seconds(pid) for pid in pids)
    return redis_cpu, influx_cpu


def _load_cpu(fleet: Proc) -> float:
    """CPU seconds so far of the load generator: the fleet simulator and this process."""
    return procstat.cpu_seconds(fleet.pid) + procstat.cpu_seconds(os.getpid())


def _machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine so far (/proc/stat), everyone's processes."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return float(sum(fields) - idle), float(sum(fields))


def _net(ctx: Context) -> tuple[int, int]:
    stats = ctx.stack.redis(0).info("stats")
    return int(stats["total_net_input_bytes"]), int(stats["total_net_output_bytes"])


def _fired_at(event: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(event["time_fired"]).timestamp()


def _start_workers(ctx: Context, env: dict[str, str], db: int) -> list[Proc]:
    workers = [ctx.stack.worker(env) for _ in range(WORKERS)]
    client = ctx.stack.redis(db)
    wait_for(
        lambda: sum(
            1 for c in client.client_list() if c.get("cmd") in ("blmove", "brpop")
            and int(c.get("db", -1)) == db
        ) >= WORKERS,
        90, f"{WORKERS} workers to consume",
    )  # fmt: skip
    return workers


def _found(ctx: Context, database: str) -> set[HomeKey]:
    rows = ctx.stack.influx.rows(
        'SELECT "value","state" FROM /.*/ GROUP BY "instance","domain","entity_id"', database
    )
    return {(r.get("instance", ""), r["domain"], r["entity_id"], int(r["time"])) for r in rows}


def _expected(records: dict[str, Path]) -> set[HomeKey]:
    keys: set[HomeKey] = set()
    for home, path in records.items():
        keys.update((home, *key) for key in expected_points(recorded_events(path)).keys)
    return keys


def run_homes(ctx: Context, homes: list[Mix], seconds: float, backlog_seconds: float) -> HomesRun:
    """One run: `homes` at the home rate for `seconds`, then (if any) the backlog phase."""
    stack, rate = ctx.stack, ctx.sizes.home_rate
    result = HomesRun(homes)
    database = f"homes_{len(homes)}"
    db = ctx.fresh_db()
    client = stack.redis(db)
    stack.influx.create(database)
    records = {h.name: ctx.root / f"{database}-{h.name}.jsonl" for h in homes}
    spec = ctx.root / f"{database}-spec.json"
    spec.write_text(json.dumps([
        {"name": h.name, "location_name": f"Home {h.name[-2:]}", "entities": h.entities,
         "seed": h.seed, "rate": rate, "record": str(records[h.name]), "area_names": h.areas}
        for h in homes
    ]), encoding="utf-8")  # fmt: skip
    env = stack.env(db, database, ctx.root / f"{database}-workers", INSTANCE_TAG="true")
    procs: list[Proc] = []
    listeners: dict[str, Proc] = {}
    fleet = stack.spawn(
        "fleet-sim", [sys.executable, "-m", "bench.fleet_sim", str(spec)],
        {**env, "HA_TOKEN": TOKEN}, json_stdout=True,
    )  # fmt: skip
    try:
        urls = fleet.next_line("urls", 60)["urls"]
        workers = _start_workers(ctx, env, db)
        procs += workers
        procs.append(stack.beat(env, ctx.root / f"{database}-beat"))
        for home in homes:
            home_env = stack.env(db, database, ctx.root / f"{database}-{home.name}",
                                 HA_INSTANCE=home.name, INSTANCE_TAG="true")  # fmt: skip
            listeners[home.name] = stack.listener(home_env, urls[home.name])
        fleet.next_line("subscribed", 60 + 10 * len(homes))
        # The snapshots (one message per entity and home) are start-up work, not the steady cost.
        wait_for(lambda: drained(client), 120, "the snapshots to be written")
        time.sleep(1.0)
        poller = _Poller(ctx, database, records, db).start()
        resumed = _signal(fleet, signal.SIGUSR1, "resumed_at")["resumed_at"]
        counted_from = resumed + seconds * WARM_UP_SHARE
        time.sleep(max(0.0, counted_from - time.time()))
        cpu0 = sum(procstat.tree_cpu_seconds(w.pid) for w in workers)
        lcpu0 = {n: procstat.cpu_seconds(p.pid) for n, p in listeners.items()}
        net0, servers0 = _net(ctx), _servers_cpu(ctx)
        load0, busy0 = _load_cpu(fleet), _machine_cpu()
        spy = profiling.attach(ctx, workers[0].pid, f"worker-{len(homes)}-homes",
                               seconds * (1 - WARM_UP_SHARE))  # fmt: skip
        time.sleep(max(0.0, resumed + seconds - time.time()))
        result.sim_pending = int(_signal(fleet, signal.SIGUSR2, "paused_at")["max_pending"])
        poller.poll()  # the record files are flushed: every fired event is known from here
        wait_for(lambda: poller.unseen() == 0, 120 + len(poller.fired) / 200,
                 "every point of the measured phase readable", 0.25)  # fmt: skip
        cpu1 = sum(procstat.tree_cpu_seconds(w.pid) for w in workers)
        lcpu1 = {n: procstat.cpu_seconds(p.pid) for n, p in listeners.items()}
        net1, servers1 = _net(ctx), _servers_cpu(ctx)
        load1, busy1 = _load_cpu(fleet), _machine_cpu()
        result.loadavg = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        poller.stop()
        profiling.summarize(ctx, spy, f"worker-{len(homes)}-homes")
        per_home: dict[str, int] = dict.fromkeys(records, 0)
        for name, path in records.items():
            per_home[name] = sum(1 for e in recorded_events(path) if _fired_at(e) >= counted_from)
        result.counted = sum(per_home.values())
        result.worker_cpu_us = (cpu1 - cpu0) / result.counted * 1e6
        result.listener_cpu_us = {
            n: (lcpu1[n] - lcpu0[n]) / max(1, per_home[n]) * 1e6 for n in listeners
        }
        result.redis_cpu_us = (servers1[0] - servers0[0]) / result.counted * 1e6
        result.influx_cpu_us = (servers1[1] - servers0[1]) / result.counted * 1e6
        result.load_cpu_us = (load1 - load0) / result.counted * 1e6
        result.machine_busy = (busy1[0] - busy0[0]) / max(1e-9, busy1[1] - busy0[1])
        result.net_in = (net1[0] - net0[0]) / result.counted
        result.net_out = (net1[1] - net0[1]) / result.counted
        counted_ns = counted_from * 1e9
        middle_ns = (counted_from + resumed + seconds) / 2 * 1e9
        halves: tuple[list[float], list[float]] = ([], [])
        for home in homes:
            lat = []
            for key, value in poller.seen.items():
                fired = poller.fired[key]
                if key[0] == home.name and fired >= counted_ns:
                    lat.append(value)
                    halves[fired >= middle_ns].append(value)
            result.p99[home.name] = percentile(lat, 99)
            result.p50[home.name] = percentile(lat, 50)
            result.latencies += lat
        result.halves = (percentile(halves[0], 99), percentile(halves[1], 99))
        depths = [(w, f) for t, w, f in poller.depths if t >= counted_from]
        result.waiting_max = max((w for w, _ in depths), default=0)
        result.waiting_mean = sum(w for w, _ in depths) / max(1, len(depths))
        result.in_flight_mean = sum(f for _, f in depths) / max(1, len(depths))
        result.worker_rss = max(
            procstat.peak_rss_mb(p) for w in workers for p in procstat.tree(w.pid)
        )
        result.rss = {n: procstat.peak_rss_mb(p.pid) for n, p in listeners.items()}
        if backlog_seconds:
            _backlog(ctx, result, fleet, workers, env, db, backlog_seconds)
            procs = [p for p in procs if p not in workers]
            procs += _start_workers(ctx, env, db)
            wait_for(lambda: drained(client), 120 + result.waiting / 200, "the backlog drained")
        expected = _expected(records)
        deadline = time.monotonic() + 60
        while (missing := len(expected - _found(ctx, database))) and time.monotonic() < deadline:
            time.sleep(1.0)
        result.sent, result.lost = len(expected), missing
    finally:
        for proc in [*listeners.values(), *procs]:
            stack.retire(proc)
        if fleet.running():
            with contextlib.suppress(RuntimeError):
                result.cuts = int(_signal(fleet, signal.SIGTERM, "stopped").get("cuts", 0))
        stack.retire(fleet)
    return result


def _backlog(
    ctx: Context, result: HomesRun, fleet: Proc, workers: list[Proc], env: dict[str, str],
    db: int, seconds: float,
) -> None:  # fmt: skip
    """Workers stopped, every home sends for `seconds`: what a waiting event costs Redis."""
    client = ctx.stack.redis(db)
    for worker in workers:
        ctx.stack.retire(worker)
    wait_for(lambda: not consumer_ready(client, db), 30, "the workers to be gone")
    used0 = int(ctx.stack.redis(0).info("memory")["used_memory"])
    waiting0 = int(client.llen(QUEUE))
    before = _signal(fleet, signal.SIGUSR2, "paused_at")["emitted"]
    _signal(fleet, signal.SIGUSR1, "resumed_at")
    time.sleep(seconds)
    after = _signal(fleet, signal.SIGUSR2, "paused_at")["emitted"]
    sent = sum(after.values()) - sum(before.values())
    wait_for(lambda: int(client.llen(QUEUE)) - waiting0 >= sent, 60, f"{sent} messages queued")
    waiting = int(client.llen(QUEUE))
    result.waiting = waiting
    result.queue_bytes = int(client.memory_usage(QUEUE, samples=0) or 0) / max(1, waiting)
    used1 = int(ctx.stack.redis(0).info("memory")["used_memory"])
    result.used_bytes = (used1 - used0) / max(1, waiting - waiting0)


def _say(ctx: Context, label: str, run: HomesRun) -> None:
    worst = max(run.p99.values())
    ctx.say(
        f"{label}: {run.counted:,} events counted, worker {run.worker_cpu_us:.0f} µs CPU/event, "
        f"p99 worst home {worst:.2f} s, listener peak RSS max {max(run.rss.values()):.0f} MB, "
        f"wire in {run.net_in:.0f} / out {run.net_out:.0f} bytes/event, lost {run.lost} of "
        f"{run.sent:,}, cuts {run.cuts}; p99 first/second half {run.halves[0]:.2f}/"
        f"{run.halves[1]:.2f} s, waiting max {run.waiting_max} mean {run.waiting_mean:.0f}, "
        f"in flight mean {run.in_flight_mean:.0f}, worker peak RSS {run.worker_rss:.0f} MB, "
        f"simulator max pending {run.sim_pending}, load generator {run.load_cpu_us:.0f} µs/event, "
        f"machine {100 * run.machine_busy:.0f}% busy, loadavg {run.loadavg}"
    )


def run(ctx: Context) -> None:
    sizes = ctx.sizes
    fleet = mixes(sizes.homes)
    base_mix = Mix("home_01", BASELINE_ENTITIES, 100, {})
    ctx.say(
        f"scenario homes: 1 home, then {len(fleet)} homes at {sizes.home_rate:g} events/s each "
        f"for {sizes.homes_seconds:g} s into one Redis and {WORKERS} workers"
    )
    one = run_homes(ctx, [base_mix], sizes.homes_seconds, 0.0)
    _say(ctx, "one home", one)
    many = run_homes(ctx, fleet, sizes.homes_seconds, sizes.homes_backlog_seconds)
    _say(ctx, f"{len(fleet)} homes", many)
    for r in (one, many):
        ctx.lost += r.lost
        ctx.sent += r.sent
    n = len(fleet)
    ctx.add(
        Figure(
            "homes_worker_cpu_per_event_us", many.worker_cpu_us, "µs", one.worker_cpu_us,
            f"≤ {WORKER_RATIO_TARGET:g}x the one-home figure",
            many.worker_cpu_us <= WORKER_RATIO_TARGET * one.worker_cpu_us,
            baseline_is=f"the same {WORKERS} workers with one home at {sizes.home_rate:g}/s, "
            "same run",
            note=f"{WORKERS} workers' user+sys CPU (/proc), {n} homes x {sizes.home_rate:g}/s, "
            f"end of warm-up to last point readable, {many.counted:,} events",
        )
    )  # fmt: skip
    worst_home = max(many.p99, key=lambda h: many.p99[h])
    ctx.add(
        Figure(
            "homes_p99_worst_home_s", many.p99[worst_home], "s", one.p99[base_mix.name],
            f"≤ {P99_TARGET_S:g} s for every home", many.p99[worst_home] <= P99_TARGET_S,
            baseline_is="the one home's p99, same run",
            note=f"worst of {n} homes ({worst_home}); fired to readable in InfluxDB by "
            f"`instance`, polled every {POLL_S:g} s",
        )
    )  # fmt: skip
    rss_max = max(many.rss.values())
    ctx.add(
        Figure(
            "homes_listener_rss_mb", rss_max, "MB", one.rss[base_mix.name],
            f"≤ {RSS_TARGET_MB:g} MB per listener", rss_max <= RSS_TARGET_MB,
            baseline_is="the one home's listener, same run",
            note=f"largest peak RSS (VmHWM) of the {n} listeners",
        )
    )  # fmt: skip
    ctx.row(f"homes: p99 of all {n} homes' events", percentile(many.latencies, 99), "s",
            one.p99[base_mix.name], "baseline: the one home")  # fmt: skip
    ctx.row("homes: wire bytes into Redis per event", many.net_in, "bytes", one.net_in,
            "INFO total_net_input_bytes delta ÷ events (listeners' LPUSHes, workers' "
            "commands); baseline: one home")  # fmt: skip
    ctx.row("homes: wire bytes out of Redis per event", many.net_out, "bytes", one.net_out,
            "INFO total_net_output_bytes delta ÷ events (mostly messages to workers)")  # fmt: skip
    ctx.row("homes: Redis MEMORY USAGE per waiting event", many.queue_bytes, "bytes", None,
            f"{many.waiting:,} messages of all {n} homes waiting, workers stopped")  # fmt: skip
    ctx.row("homes: Redis used_memory growth per waiting event", many.used_bytes, "bytes",
            None, "INFO used_memory delta over the same backlog")  # fmt: skip
    ctx.row("homes: p99 of the counted window's first half", many.halves[0], "s",
            one.halves[0], "growing into the second half: a backlog building")  # fmt: skip
    ctx.row("homes: p99 of the counted window's second half", many.halves[1], "s",
            one.halves[1], "baseline: the one home")  # fmt: skip
    ctx.row("homes: messages waiting in the queue, mean", many.waiting_mean, "messages",
            one.waiting_mean, f"sampled every {POLL_S:g} s; max {many.waiting_max:,} (one home "
            f"{one.waiting_max:,}); untaken: the workers behind")  # fmt: skip
    ctx.row("homes: messages taken by the workers, unwritten, mean", many.in_flight_mean,
            "messages", one.in_flight_mean, "the partial batches (BATCH_INTERVAL) and the "
            "write under way")  # fmt: skip
    ctx.row("homes: worker peak RSS", many.worker_rss, "MB", one.worker_rss,
            f"largest of the {WORKERS} worker processes; baseline: one home")  # fmt: skip
    ctx.row("homes: simulator's most pending messages for one listener", many.sim_pending,
            "messages", one.sim_pending, "what the simulator had not yet written to a "
            "listener's socket (its lag, not the pipeline's)")  # fmt: skip
    ctx.row("homes: whole machine CPU busy", 100 * many.machine_busy, "%",
            100 * one.machine_busy, f"/proc/stat, everyone's processes (shared machine, 2 "
            f"cores); load average at the end {many.loadavg}")  # fmt: skip
    ctx.row("homes: load generator CPU per event", many.load_cpu_us, "µs", one.load_cpu_us,
            "fleet simulator + the bench's poller: on the same cores as the pipeline")  # fmt: skip
    ctx.row("homes: Redis CPU per event", many.redis_cpu_us, "µs", one.redis_cpu_us,
            "the broker's user+sys CPU over the counted window; baseline: one home")  # fmt: skip
    ctx.row("homes: InfluxDB CPU per event", many.influx_cpu_us, "µs", one.influx_cpu_us,
            "influxd user+sys CPU, same window (the poller's queries too)")  # fmt: skip
    mean_listener = sum(many.listener_cpu_us.values()) / n
    ctx.row("homes: listener CPU per event (mean of homes)", mean_listener, "µs",
            one.listener_cpu_us[base_mix.name],
            f"each listener's own events at {sizes.home_rate:g}/s; baseline: one home")  # fmt: skip
    for home in fleet:
        ctx.row(
            f"homes: {home.name} p99 ({home.entities} entities)", many.p99[home.name], "s",
            one.p99[base_mix.name],
            f"p50 {many.p50[home.name]:.2f} s, listener peak RSS {many.rss[home.name]:.0f} MB, "
            f"{many.listener_cpu_us[home.name]:.0f} µs CPU/event",
        )  # fmt: skip
    if many.cuts or one.cuts:
        ctx.notes.append(f"homes: the simulator cut {many.cuts + one.cuts} listener(s) off")
