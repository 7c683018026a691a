"""Test-only: the HA simulator as the compose stack's `homeassistant`, its events on signals.

Runs inside the simulator image (the product image plus devtools/). It starts paused, so the
listener's first snapshot holds the home's initial states; SIGUSR1 resumes the events (at
SIM_RATE per second), SIGUSR2 pauses them (the record file is flushed when the emitter sees
the pause); every event emitted is appended to SIM_RECORD for the test to count. SIGTERM or
SIGINT stops it.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from devtools.simulator import HASimulator


async def serve() -> None:
    simulator = HASimulator(
        host="0.0.0.0",
        port=8123,
        token=os.environ["HA_TOKEN"],
        rate=float(os.environ.get("SIM_RATE", "50")),
        entities=int(os.environ.get("SIM_ENTITIES", "30")),
        record_path=Path(os.environ.get("SIM_RECORD", "/record/sent.jsonl")),
    )
    simulator.pause_events()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, simulator.resume_events)
    loop.add_signal_handler(signal.SIGUSR2, simulator.pause_events)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await simulator.start()
    print("HA simulator on port 8123, paused; SIGUSR1 resumes, SIGUSR2 pauses", flush=True)
    await stop.wait()
    await simulator.stop()


if __name__ == "__main__":
    asyncio.run(serve())
