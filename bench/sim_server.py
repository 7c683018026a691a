"""The HA simulator as a process for the benchmark: paused until the listener subscribes.

`python -m bench.sim_server --rate R --events N --record FILE` (token from HA_TOKEN) prints
JSON lines on stdout: {"url"} once listening, {"resumed_at"} when the first subscriber is in
and emission starts, {"done_at", ...} once every event was handed to the sockets, and a final
{"stopped": ...} on SIGTERM with how often a client was cut off for falling behind (HA's
pending-message limit, which the simulator enforces).

`--flow-control HIGH` (the capacity scenario only) pauses emission while a client has more than
HIGH messages pending and resumes below HIGH/4 (keep HIGH under HA's 1,024 "peak" limit): the
simulator then sends exactly as fast as the listener takes events, which is what "capacity"
means, instead of cutting it off the way HA would. Every other scenario runs with HA's
behaviour.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

from devtools.simulator.server import HASimulator


class _CutCounter(logging.Handler):
    """Counts the simulator's 'unable to keep up' cut-offs (HA's pending-message limit)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.cuts = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "unable to keep up" in record.getMessage():
            self.cuts += 1


def _pending(sim: HASimulator) -> int:
    """Messages waiting to be written to the slowest client (the simulator's private queues)."""
    clients = getattr(sim, "_clients", ())
    return max((len(getattr(client, "_queue", ())) for client in clients), default=0)


async def _flow_control(sim: HASimulator, high: int) -> None:
    """Pause while the listener is behind by more than `high` messages."""
    low = high // 4
    paused = False
    while True:
        pending = _pending(sim)
        if not paused and pending > high:
            sim.pause_events()
            paused = True
        elif paused and pending <= low:
            sim.resume_events()
            paused = False
        await asyncio.sleep(0.001)


def _say(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def _serve(args: argparse.Namespace) -> None:
    cuts = _CutCounter()
    logging.getLogger("devtools.simulator").addHandler(cuts)
    logging.getLogger("devtools.simulator").setLevel(logging.INFO)
    sim = HASimulator(
        port=args.port,
        token=os.environ["HA_TOKEN"],
        rate=args.rate,
        entities=args.entities,
        events=args.events,
        seed=args.seed,
        record_path=args.record,
        past_days=args.past_days,
        past_interval=args.past_interval,
    )
    sim.pause_events()
    await sim.start()
    past = sim.past
    statistics = sum(past.count_statistics(p, 0, 2**62) for p in ("5minute", "hour"))
    _say(url=sim.url, port=sim.port, past_start_us=past.start_us, past_end_us=past.end_us,
         past_states=past.count_states(0, 2**62), past_statistics=statistics)  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    while sim.subscriber_count < 1 and not stop.is_set():  # noqa: ASYNC110 - nothing to await
        await asyncio.sleep(0.005)
    if not stop.is_set():
        await asyncio.sleep(args.settle)
        started = time.time()
        sim.resume_events()
        _say(resumed_at=started)
        if args.flow_control:
            governor = asyncio.create_task(_flow_control(sim, args.flow_control))
        done = asyncio.create_task(sim.wait_done())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({done, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if done.done():
            emitted_at = time.time()
            await sim.drain()
            _say(
                done_at=emitted_at,
                drained_at=time.time(),
                emitted=sim.events_emitted,
                rate=sim.events_emitted / max(emitted_at - started, 1e-9),
                cuts=cuts.cuts,
                clients_connected=sim.clients_connected,
            )
        stopping.cancel()
        if args.flow_control:
            governor.cancel()
        await stop.wait()
    await sim.stop(abort_clients=False)
    _say(stopped=True, emitted=sim.events_emitted, cuts=cuts.cuts,
         clients_connected=sim.clients_connected)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--entities", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--record", type=Path, default=None)
    parser.add_argument(
        "--settle", type=float, default=0.5, help="seconds between subscription and emission"
    )
    parser.add_argument("--flow-control", type=int, default=0, metavar="HIGH")
    parser.add_argument("--past-days", type=float, default=0.0, help="recorded past (import)")
    parser.add_argument("--past-interval", type=float, default=300.0, metavar="SECONDS")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(_serve(parser.parse_args()))


if __name__ == "__main__":
    main()
