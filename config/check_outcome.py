"""What one check of `ha-ingestor check` found: shared by the checks, which live with their
adapters (listener/ha/check.py, workers/commands/store_checks.py), and the command that prints
them."""

from __future__ import annotations

from dataclasses import dataclass

CHECK_TIMEOUT_S = 10.0
"""How long a check waits for a server's answer."""


@dataclass(frozen=True)
class Outcome:
    """One verified thing: what was checked, what was found, and the fix when it failed."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
