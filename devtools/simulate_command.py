"""`ha-ingestor simulate`: serve the HA simulator until SIGINT/SIGTERM (or the last event)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devtools.simulator.server import HASimulator

log = logging.getLogger("devtools.simulator")


def _number(
    kind: Callable[[str], float], what: str, accept: Callable[[float], bool]
) -> Callable[[str], float]:
    """An argparse type that names what it wanted when the value does not fit."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ha-ingestor simulate",
        description=(
            "Run a Home Assistant simulator: a websocket_api server (HA 2024.3) at "
            "ws://HOST:PORT/api/websocket whose simulated home changes RATE times a second."
        ),
    )
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `ha-ingestor simulate` (and `python -m devtools.simulator`)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument(
        "--port",
        type=_number(int, "a port (0-65535)", lambda v: 0 <= v <= 65535),
        default=8123,
        help="0 picks a free one (8123)",
    )
    parser.add_argument(
        "--token",
        default=None,
        help="the access token clients must send (default: $HA_TOKEN; prefer the variable, "
        "a command line is visible to every local user)",
    )
    parser.add_argument(
        "--rate",
        type=_number(float, "a number of events/s > 0", lambda v: 0 < v < math.inf),
        default=10.0,
        help="events per second (10)",
    )
    parser.add_argument(
        "--entities",
        type=_number(int, "a count >= 1", lambda v: v >= 1),
        default=20,
        help="entities (20)",
    )
    parser.add_argument(
        "--events",
        type=_number(int, "a count >= 0", lambda v: v >= 0),
        default=None,
        help="stop emitting after this many events (default: never); keeps serving after",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated home (0)")
    parser.add_argument(
        "--record", type=Path, default=None, help="append every emitted event to this JSONL file"
    )
    parser.add_argument(
        "--exit-when-done",
        action="store_true",
        help="exit once the last of --events was sent instead of serving on",
    )
    parser.add_argument(
        "--past-days",
        type=_number(float, "a number of days >= 0", lambda v: 0 <= v < math.inf),
        default=0.0,
        help="a recorded past of this many days, history and statistics, for `ha-ingestor "
        "import` (0)",
    )
    parser.add_argument(
        "--past-interval",
        type=_number(float, "a number of seconds > 0", lambda v: 0 < v < math.inf),
        default=300.0,
        help="seconds between two changes of an entity in that past (300)",
    )
    parser.add_argument(
        "--no-recorder",
        action="store_true",
        help="an HA without the recorder: history and statistics answer unknown_command",
    )
    parser.add_argument(
        "--no-floors-labels",
        action="store_true",
        help="an HA before 2024.4: the floor and label registries answer unknown_command",
    )


def main(argv: list[str] | None = None) -> int:
    """Run the simulator; 0 on SIGINT/SIGTERM or, with --exit-when-done, after the last event."""
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Serve until a signal (the `ha-ingestor simulate` entry point)."""
    token = args.token or os.environ.get("HA_TOKEN")
    problem = None
    if not token:
        problem = "no token: set HA_TOKEN (or pass --token) to what clients will send"
    elif args.exit_when_done and args.events is None:
        problem = "--exit-when-done needs --events N"
    if problem is not None or token is None:
        print(f"ha-ingestor simulate: error: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    simulator = HASimulator(
        host=args.host,
        port=int(args.port),
        token=token,
        rate=args.rate,
        entities=int(args.entities),
        events=None if args.events is None else int(args.events),
        seed=args.seed,
        record_path=args.record,
        past_days=args.past_days,
        past_interval=args.past_interval,
        recorder=not args.no_recorder,
        floors_and_labels=not args.no_floors_labels,
    )
    return asyncio.run(_serve(simulator, exit_when_done=args.exit_when_done))


async def _serve(simulator: HASimulator, *, exit_when_done: bool) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await simulator.start()
    log.info(
        "HA simulator listening on %s (%d entities, %g events/s)",
        simulator.url,
        len(simulator.home.entity_ids),
        simulator.rate,
    )
    waiters: set[asyncio.Task[Any]] = {asyncio.create_task(stop.wait(), name="stop")}
    done: asyncio.Task[None] | None = None
    if simulator.events is not None:
        done = asyncio.create_task(simulator.wait_done(), name="done")
        waiters.add(done)
    try:
        while not stop.is_set():
            finished, waiters = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if done is not None and done in finished:
                log.info(
                    "all %d events sent; %s",
                    simulator.events_emitted,
                    "exiting" if exit_when_done else "still serving until SIGINT/SIGTERM",
                )
                if exit_when_done:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(5.0):
                            await simulator.drain()
                    break
    finally:
        for waiter in waiters:
            waiter.cancel()
        # A signal stops it like HA going down (clients see 1006); the end of the run is clean.
        await simulator.stop(abort_clients=not exit_when_done or stop.is_set())
    log.info("HA simulator stopped")
    return 0
