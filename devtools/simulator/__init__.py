"""A Home Assistant simulator: a real websocket_api server over a deterministic simulated home.

Used by the tests, the benchmarks and `make run` when no HA is configured
(`ha-ingestor simulate`, or `python -m devtools.simulator`).
"""

from __future__ import annotations

from devtools.simulator.entities import Home, StateChange
from devtools.simulator.server import HA_VERSION, HASimulator

__all__ = ["HA_VERSION", "HASimulator", "Home", "StateChange"]
