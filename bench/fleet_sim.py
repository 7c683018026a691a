"""Several simulated Home Assistants in one process, for the many-homes scenario (bench/homes.py).

`python -m bench.fleet_sim SPEC.json` (token from HA_TOKEN) serves one HASimulator per home of
the spec (a JSON list of {name, location_name, entities, seed, rate, record, area_names}), each
on its own port, all paused. One process rather than twenty: the machine's two cores go to the
listeners and workers being measured, not to twenty interpreters generating events.

JSON lines on stdout: {"urls": {name: url}} once listening; {"subscribed": n} once every home
has a subscriber. Signals steer the emission, so the benchmark can stop the workers between
two phases: SIGUSR1 resumes every home ({"resumed_at"}), SIGUSR2 pauses every home and flushes
the record files ({"paused_at", "max_pending", "emitted": {name: n}}), SIGTERM stops
({"stopped", "cuts"}).
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
from typing import Any

from bench.sim_server import _CutCounter, _pending
from devtools.simulator.server import HASimulator

_FLUSH_WAIT_S = 0.1
"""After a pause, how long the emitters get to notice it and flush their record files (an
emitter sleeps at most one slot, 1/rate s, between two checks)."""


_PENDING_SAMPLE_S = 0.05


def _say(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def _build(home: dict[str, Any], token: str) -> HASimulator:
    return HASimulator(
        token=token,
        rate=float(home["rate"]),
        entities=int(home["entities"]),
        events=None,
        seed=int(home["seed"]),
        record_path=Path(home["record"]),
        location_name=str(home["location_name"]),
        area_names=home.get("area_names") or None,
    )


async def _serve(spec: list[dict[str, Any]]) -> None:
    cuts = _CutCounter()
    logging.getLogger("devtools.simulator").addHandler(cuts)
    token = os.environ["HA_TOKEN"]
    sims = {home["name"]: _build(home, token) for home in spec}
    for sim in sims.values():
        sim.pause_events()
        await sim.start()
    _say(urls={name: sim.url for name, sim in sims.items()})
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    commands: asyncio.Queue[str] = asyncio.Queue()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, commands.put_nowait, "resume")
    loop.add_signal_handler(signal.SIGUSR2, commands.put_nowait, "pause")

    async def subscribed() -> None:
        await asyncio.gather(
            *(s.wait_until(lambda s: s.subscriber_count >= 1) for s in sims.values())
        )
        _say(subscribed=len(sims))

    most_pending = [0]

    async def watch_pending() -> None:
        """The most messages any home had waiting for its listener since the last pause: a
        simulator behind its sockets would show here, not as the pipeline's latency."""
        while True:
            most_pending[0] = max(most_pending[0], *(_pending(s) for s in sims.values()))
            await asyncio.sleep(_PENDING_SAMPLE_S)

    async def steer() -> None:
        while True:
            command = await commands.get()
            if command == "resume":
                for sim in sims.values():
                    sim.resume_events()
                _say(resumed_at=time.time())
            else:
                paused_at = time.time()
                for sim in sims.values():
                    sim.pause_events()
                await asyncio.sleep(_FLUSH_WAIT_S)
                _say(paused_at=paused_at, max_pending=most_pending[0],
                     emitted={name: sim.events_emitted for name, sim in sims.items()})  # fmt: skip
                most_pending[0] = 0

    tasks = [asyncio.create_task(c) for c in (subscribed(), steer(), watch_pending())]
    await stop.wait()
    for task in tasks:
        task.cancel()
    for sim in sims.values():
        await sim.stop(abort_clients=False)
    _say(stopped=True, cuts=cuts.cuts,
         emitted={name: sim.events_emitted for name, sim in sims.items()})  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("spec", type=Path, help="JSON list of homes")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    spec = json.loads(parser.parse_args().spec.read_text(encoding="utf-8"))
    asyncio.run(_serve(spec))


if __name__ == "__main__":
    main()
