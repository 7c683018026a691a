"""The HA simulator on its own event loop in a thread, so sync tests can steer it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from devtools.simulator.server import HASimulator

T = TypeVar("T")


class SimulatorThread:
    """Runs an HASimulator; `call` runs a coroutine on its loop and returns the result."""

    def __init__(self, **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._kwargs = kwargs
        self.sim: HASimulator

    def start(self, paused: bool = False) -> SimulatorThread:
        self._thread.start()

        async def make() -> HASimulator:
            sim = HASimulator(**self._kwargs)
            if paused:
                sim.pause_events()
            await sim.start()
            return sim

        self.sim = self.call(make())
        return self

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def do(self, fn: Any, *args: Any) -> Any:
        """Call a plain method of the simulator on its loop."""

        async def run() -> Any:
            return fn(*args)

        return self.call(run())

    def stop(self) -> None:
        try:
            self.call(self.sim.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()
