"""`python -m bench` (what `make bench` runs): every scenario, one table, one JSON line per figure.

It starts its own Redis and InfluxDB 1.x on free loopback ports and the simulator, listener,
workers and beat as real processes; each figure is measured beside its baseline in the same run
(interleaved where the machine's load could skew one side), and the table goes to
bench/RESULTS.md. `--quick` runs small sizes for a smoke test.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import (
    capacity,
    destinations,
    homes,
    importing,
    pipeline,
    state_heartbeat,
    steady,
    storage_cost,
    worker_cost,
)
from bench.context import QUICK, Context, Sizes
from bench.report import Figure, table, write_results
from bench.stack import Stack

SCENARIOS: dict[str, Callable[[Context], None]] = {
    "capacity": capacity.run,
    "worker": worker_cost.run,
    "latency": pipeline.latency,
    "throughput": pipeline.throughput,
    "burst": pipeline.burst,
    "memory": pipeline.memory,
    "storage": storage_cost.run,
    "import": importing.run,
    "steady": steady.run,
    "heartbeat": state_heartbeat.run,
    "destinations_cpu": destinations.cpu,
    "destinations_backlog": destinations.backlog,
    "destinations_outage": destinations.outage,
    "homes": homes.run,
}
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"comma-separated scenarios to run, in order (default: {','.join(SCENARIOS)})",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help=f"where to write the results table (default: {RESULTS} for a full run, "
        "nowhere for --quick)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="sample the listener and the ingest worker with py-spy, stacks into DIR "
        "(the figures of such a run are slightly perturbed)",
    )
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}: choose from {', '.join(SCENARIOS)}")
    sizes: Sizes = QUICK if args.quick else Sizes()
    root = Path(tempfile.mkdtemp(prefix="ha-ingestor-bench-"))
    stack = Stack(root)
    ctx = Context(stack=stack, sizes=sizes, root=root, profile_dir=args.profile)
    started = time.monotonic()
    try:
        stack.start()
        for name in chosen:
            SCENARIOS[name](ctx)
    finally:
        stack.stop()
        if args.keep:
            print(f"work directory kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    ctx.add(
        Figure(
            "lost_events", ctx.lost, "events", ctx.sent, "0 in every scenario", ctx.lost == 0,
            baseline_is="events sent (the ratio is the share lost)",
        )
    )  # fmt: skip
    ctx.say(f"done in {time.monotonic() - started:.0f} s")
    print()
    print(table(ctx.figures, ctx.rows))
    for note in ctx.notes:
        print(f"note: {note}")
    print()
    for figure in ctx.figures:
        print(figure.json_line())
    results = args.results or (None if args.quick else RESULTS)
    if results is not None:
        mode = "python -m bench" + (" --quick" if args.quick else "")
        if args.only != ",".join(SCENARIOS):
            mode += f" --only {args.only}"
        write_results(results, ctx.figures, ctx.rows, mode, ctx.notes)
        print(f"\nresults written to {results}")
    return 0 if ctx.lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
