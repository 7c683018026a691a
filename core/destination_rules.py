"""The health rules of one destination among several: figures in, checks out, each naming it.

With one destination the pipeline's rules (core/health_rules.py, core/storage_rules.py) judge
its writes and stores, worded as always. With several, each destination progresses on its own
(its backlog while it is unavailable), so its refusals, dead letters and stores are judged
apart: the same codes (`write_errors`, `dead_letters`, `dropping`, `dead_letter_store`,
`outage_store`) and `destination_parked`, each check carrying the destination's name in its
`destination` field and in its message ("destination archive: …"). A machine filters on the
field (and /metrics labels the check with it), a person reads the name.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.health_check import Check, Thresholds
from core.health_rules import PipelineFigures, dead_letters_check, write_errors_check
from core.storage_rules import store_checks
from core.text_format import format_count, format_duration


@dataclass(frozen=True)
class BacklogFigures:
    """A destination's backlog (several destinations only): what waits for it alone."""

    events: int = 0
    parked: bool = False
    """Workers put its batches in its backlog: it could not take writes."""
    added_window: int = 0
    """Events put in its backlog within the window (it grows while this is not zero)."""
    lag_s: float | None = None
    """Age of its oldest waiting event."""


def destination_checks(
    name: str, p: PipelineFigures, backlog: BacklogFigures, t: Thresholds
) -> list[Check]:
    """One destination's refusals, dead letters, stores and backlog, each check naming it.

    Used with several destinations; `p` holds that destination's own store figures.
    """
    checks = [_parked(name, backlog, p, t), _destination_write_errors(name, p, t)]
    checks.append(_named(name, dead_letters_check(p, t)))
    checks.extend(_named(name, c) for c in store_checks(p, t))
    return [check for check in checks if check is not None]


def _named(name: str, check: Check | None) -> Check | None:
    if check is None:
        return None
    return Check(
        check.code, check.severity, check.area, f"destination {name}: {check.message}", name
    )


def _destination_write_errors(name: str, p: PipelineFigures, t: Thresholds) -> Check | None:
    return write_errors_check(
        p,
        t,
        f"destination {name}",
        "its events wait in its backlog and are written once it accepts them; the other "
        "destinations go on",
        name,
    )


def _parked(name: str, b: BacklogFigures, p: PipelineFigures, t: Thresholds) -> Check | None:
    """A destination that cannot take writes while its backlog holds events."""
    if not b.parked or not b.events:
        return None
    growth = (
        f", {format_count(b.added_window)} added in {format_duration(t.window_s)}"
        if b.added_window
        else ""
    )
    oldest = f", the oldest {format_duration(b.lag_s)} old" if b.lag_s is not None else ""
    error = f"; last error: {p.last_write_error}" if p.last_write_error else ""
    return Check(
        "destination_parked",
        "degraded",
        "pipeline",
        f"destination {name} is unavailable: {format_count(b.events)} events wait in its "
        f"backlog{growth}{oldest}{error} — they are written by themselves, oldest first, once "
        "it answers: check that it runs and that its url and credentials in "
        "HA_INGESTOR_CONFIG are right (`ha-ingestor check`)",
        name,
    )
