"""Scenario `import`: `ha-ingestor import` end to end into InfluxDB with one worker.

The simulator computes a recorded past (devtools/simulator/recorder_past.py) of
`import_states` states. Baseline, measured in the same run: the same worker draining a queue
the import itself filled first (the import run with no worker, and no back-pressure), so the
ratio says what reading HA and publishing while the worker writes costs against the worker's
bare drain rate. Then the whole past is imported with a worker running and the default
IMPORT_MAX_QUEUE, sampling the broker's `used_memory` every 0.2 s: its peak must stay under
the bound: the memory before the import plus IMPORT_MAX_QUEUE messages, and twice a publish
batch and a worker's taken batch (in the lists and in Redis's client buffers), at the
used_memory per waiting message measured on the baseline queue. Then the statistics alone.
Every run must exit 0 with every row written (checked in the summary and in InfluxDB).
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from datetime import UTC, datetime

from bench.context import Context, consumer_ready, drained, wait_for
from bench.report import Figure
from bench.stack import BIN, TOKEN, Proc

QUEUE = "ha_events"
ENTITIES = 200
PUBLISH_BATCH = 500
BATCH_SIZE = 1000
"""The workers' BATCH_SIZE (default): what one worker holds taken in its in-flight list."""
_SUMMARY = re.compile(r"(\d+) states, (\d+) statistics rows .*?; (\d+) points written")


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).isoformat()


def _simulator(ctx: Context, states: int) -> tuple[Proc, dict[str, int]]:
    per_day = ENTITIES * 0.9 * 1440  # most of the 200 entities are sensors with a past
    days = max(0.05, states / per_day)
    argv = [sys.executable, "-m", "bench.sim_server", "--rate", "1", "--events", "0",
            "--entities", str(ENTITIES), "--past-days", f"{days:.4f}",
            "--past-interval", "60"]  # fmt: skip
    env = {**os.environ, "HA_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
    proc = ctx.stack.spawn("import-sim", argv, env, json_stdout=True)
    line = proc.next_line("url", 60)
    proc.url = line["url"]  # type: ignore[attr-defined]
    return proc, line


def _import(ctx: Context, env: dict[str, str], *args: str, timeout: float) -> tuple[float, str]:
    name = f"import-{int(time.monotonic() * 1000) % 100000}"
    proc = ctx.stack.spawn(name, [str(BIN / "ha-ingestor"), "import", *args], env)
    started = time.monotonic()
    assert proc.proc is not None
    code = proc.proc.wait(timeout)
    elapsed = time.monotonic() - started
    ctx.stack.retire(proc)
    text = proc.log_tail(4000)
    if code != 0 and "--wait" not in " ".join(args):
        raise RuntimeError(f"ha-ingestor import exited {code}:\n{text}")
    return elapsed, text


def _summary(text: str) -> tuple[int, int, int]:
    found = _SUMMARY.findall(text)
    if not found:
        raise RuntimeError(f"no import summary in:\n{text}")
    states, statistics, written = found[-1]
    return int(states), int(statistics), int(written)


class _MemorySampler:
    def __init__(self, ctx: Context, db: int) -> None:
        self._client = ctx.stack.redis(db)
        self.before = int(self._client.info("memory")["used_memory"])
        self.peak = self.before
        self.depth_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, int(self._client.info("memory")["used_memory"]))
            self.depth_peak = max(self.depth_peak, int(self._client.llen(QUEUE)))

    def __enter__(self) -> _MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(2)


def run(ctx: Context) -> None:
    states = ctx.sizes.import_states
    ctx.say(f"scenario import: `ha-ingestor import` of {states:,} states, one worker")
    sim, past = _simulator(ctx, states)
    try:
        _run(ctx, sim, past)
    finally:
        ctx.stack.retire(sim)


def _run(ctx: Context, sim: Proc, past: dict[str, int]) -> None:
    stack = ctx.stack
    since, until = _iso(past["past_start_us"] - 60_000_000), _iso(past["past_end_us"] + 500_000)
    total = past["past_states"]
    subset = min(total, ctx.sizes.import_baseline_states)
    # The baseline's slice of the past: its first `subset` states, by time.
    span = past["past_end_us"] - past["past_start_us"]
    cut = _iso(past["past_start_us"] + span * subset // total)
    url = sim.url  # type: ignore[attr-defined]

    db = ctx.fresh_db()
    stack.influx.create("import_base")
    env = stack.env(db, "import_base", ctx.root / "import-base", HA_URL=url,
                    IMPORT_MAX_QUEUE="100000000")  # fmt: skip
    client = stack.redis(db)
    empty = int(client.info("memory")["used_memory"])
    _, text = _import(ctx, env, "--since", since, "--until", cut, "--no-statistics",
                      "--wait", "1", timeout=600)  # fmt: skip
    queued = int(client.llen(QUEUE))
    per_message = int(client.memory_usage(QUEUE, samples=0) or 0) / max(1, queued)
    # What a waiting message costs the broker's used_memory, allocator overhead included.
    per_used = (int(client.info("memory")["used_memory"]) - empty) / max(1, queued)
    client.rename(QUEUE, "staged")  # the clock starts once the worker waits on the queue
    worker = stack.worker(env, name="import-base-worker")
    wait_for(lambda: consumer_ready(client, db), 60, "the baseline worker to consume")
    started = time.monotonic()
    client.rename("staged", QUEUE)
    wait_for(lambda: drained(client), 120 + queued / 500, "the baseline queue to drain", 0.1)
    drain_rate = queued / (time.monotonic() - started)
    stack.retire(worker)
    ctx.say(
        f"baseline: one worker drained {queued:,} import messages at {drain_rate:,.0f}/s "
        f"({per_message:.0f} bytes each in the list, {per_used:.0f} of used_memory)"
    )

    db = ctx.fresh_db()
    stack.influx.create("import_run")
    env = stack.env(db, "import_run", ctx.root / "import-run", HA_URL=url)
    max_queue = int(env.get("IMPORT_MAX_QUEUE", "50000"))
    worker = stack.worker(env, name="import-worker")
    try:
        with _MemorySampler(ctx, db) as memory:
            elapsed, text = _import(ctx, env, "--since", since, "--until", until,
                                    "--no-statistics", timeout=3600)  # fmt: skip
        read, _, written = _summary(text)
        ctx.lost += max(0, total - written)
        ctx.sent += total
        rate = read / elapsed
        ctx.say(f"import: {read:,} states in {elapsed:.1f} s ({rate:,.0f}/s), {written:,} "
                f"written; broker peak {memory.peak / 2**20:.0f} MB (before "
                f"{memory.before / 2**20:.0f} MB), queue peak {memory.depth_peak:,}")  # fmt: skip
        elapsed_s, text_s = _import(ctx, env, "--since", since, "--until", until, "--no-states",
                                    timeout=3600)  # fmt: skip
        _, rows, written_s = _summary(text_s)
        ctx.lost += max(0, past["past_statistics"] - written_s)
        ctx.sent += past["past_statistics"]
    finally:
        stack.retire(worker)
    ctx.add(
        Figure(
            "import_states_rate", rate, "states/s", drain_rate, "≥ 0.5x baseline",
            rate >= 0.5 * drain_rate and read == total == written,
            baseline_is="the same worker draining a queue the import filled first (its bare "
            "drain rate), same run",
            note=f"{read:,} states of {ENTITIES} entities, exit 0, {written:,} points written",
        )
    )  # fmt: skip
    ctx.add(
        Figure(
            "import_statistics_rate", rows / elapsed_s, "rows/s", drain_rate, "≥ 0.5x baseline",
            rows / elapsed_s >= 0.5 * drain_rate and rows == written_s == past["past_statistics"],
            baseline_is="the worker's bare drain rate of import messages, as above",
            note=f"{rows:,} statistics rows (5-minute and hourly), {written_s:,} written",
        )
    )  # fmt: skip
    # Waiting (at most the bound plus the batch published when it was checked), taken by the
    # worker (its in-flight list holds up to BATCH_SIZE), and the same two batches once more
    # in Redis's client buffers (the LPUSH being read, the batch being sent to the worker).
    bound = memory.before + (max_queue + 2 * (PUBLISH_BATCH + BATCH_SIZE)) * per_used
    peak_mb, bound_mb = memory.peak / 2**20, bound / 2**20
    ctx.add(
        Figure(
            "import_broker_peak_mb", peak_mb, "MB", bound_mb, "≤ baseline (the bound)",
            memory.peak <= bound,
            baseline_is=f"the bound: used_memory before + (IMPORT_MAX_QUEUE {max_queue:,} + "
            f"2 x (a publish batch {PUBLISH_BATCH} + a taken batch {BATCH_SIZE:,}): in the "
            f"lists and in client buffers) x {per_used:.0f} bytes of used_memory per waiting "
            "message (measured on the baseline queue)",
            note=f"{read:,} states imported; queue depth peak {memory.depth_peak:,}",
        )
    )  # fmt: skip
