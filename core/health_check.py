"""What a health problem is: a `Check`, the three statuses, and the thresholds of the rules.

Three statuses:

- ``healthy``: nothing to report;
- ``degraded``: events are safe (spooled, queued, late) or something needs a look soon;
- ``unhealthy``: events are not being recorded, or will not be without a person acting.

The thresholds come from the settings, read through `HealthSettings` (a protocol the settings
object satisfies), so the core needs nothing from config/.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

Severity = Literal["degraded", "unhealthy"]
Area = Literal["subscription", "listener", "pipeline", "beat"]
Status = Literal["healthy", "degraded", "unhealthy"]

STATUSES: tuple[Status, ...] = ("healthy", "degraded", "unhealthy")
SEVERITIES: tuple[Severity, ...] = ("degraded", "unhealthy")
AREAS: tuple[Area, ...] = ("subscription", "listener", "pipeline", "beat")


@dataclass(frozen=True)
class Check:
    """One problem: a stable code for machines, a sentence for people."""

    code: str
    severity: Severity
    area: Area
    message: str
    destination: str | None = None
    """The destination the problem is about, with several destinations (`write_errors` of
    `archive`); None for the rest, and for everything when there is one destination."""
    home: str | None = None
    """The home the problem is about, in beat's fleet view of several homes (`home_silent` of
    `holiday`); None for the rest, and for everything when there is one home."""

    def as_dict(self) -> dict[str, str]:
        out = {
            "code": self.code,
            "severity": self.severity,
            "area": self.area,
            "message": self.message,
        }
        if self.destination is not None:
            out["destination"] = self.destination
        if self.home is not None:
            out["home"] = self.home
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Check | None:
        """A check as `as_dict` wrote it (in a stored report); None when it is not one."""
        if not isinstance(data, Mapping):
            return None
        code, message = data.get("code"), data.get("message")
        severity, area = data.get("severity"), data.get("area")
        if not (isinstance(code, str) and isinstance(message, str)):
            return None
        if severity not in SEVERITIES or area not in AREAS:
            return None
        destination, home = data.get("destination"), data.get("home")
        return cls(
            code,
            cast(Severity, severity),
            cast(Area, area),
            message,
            destination if isinstance(destination, str) else None,
            home if isinstance(home, str) else None,
        )


def overall(checks: Iterable[Check]) -> Status:
    """The worst severity among the checks; healthy when there are none."""
    worst = 0
    for check in checks:
        worst = max(worst, STATUSES.index(check.severity))
    return STATUSES[worst]


def ordered(checks: Iterable[Check]) -> list[Check]:
    """Unhealthy first, then in the order the rules produced them."""
    return sorted(checks, key=lambda c: -STATUSES.index(c.severity))


class HealthSettings(Protocol):
    """The settings the thresholds are read from (config.settings.Settings has them all)."""

    @property
    def health_event_gap(self) -> float: ...
    @property
    def health_listener_stale(self) -> float: ...
    @property
    def health_reconnects_per_hour(self) -> int: ...
    @property
    def health_queue_backlog(self) -> int: ...
    @property
    def health_queue_max_age(self) -> float: ...
    @property
    def health_window(self) -> float: ...
    @property
    def beat_interval(self) -> float: ...
    @property
    def ha_event_types(self) -> Iterable[str]: ...
    @property
    def broker_memory_warn_percent(self) -> int: ...
    @property
    def broker_memory_spool_percent(self) -> int: ...
    @property
    def dead_letters_max(self) -> int | None: ...


@dataclass(frozen=True)
class Thresholds:
    """When a figure becomes a problem; built from the settings (HEALTH_*, BEAT_INTERVAL)."""

    event_gap_s: float = 600.0
    listener_stale_s: float = 15.0
    reconnects_per_hour: int = 5
    queue_backlog: int = 10_000
    queue_max_age_s: float = 300.0
    window_s: float = 300.0
    beat_interval_s: float = 5.0
    event_types: tuple[str, ...] = ("state_changed",)
    broker_memory_warn_percent: float = 80.0
    broker_memory_spool_percent: float = 90.0
    dead_letters_max: int | None = None
    """DEAD_LETTERS_MAX: the dead-letter store is reported from 80% of it."""

    @property
    def beat_stale_s(self) -> float:
        """Beat's figures older than this mean beat is not running."""
        return 3 * self.beat_interval_s + 2.0

    @classmethod
    def from_settings(cls, settings: HealthSettings) -> Thresholds:
        return cls(
            event_gap_s=settings.health_event_gap,
            listener_stale_s=settings.health_listener_stale,
            reconnects_per_hour=settings.health_reconnects_per_hour,
            queue_backlog=settings.health_queue_backlog,
            queue_max_age_s=settings.health_queue_max_age,
            window_s=settings.health_window,
            beat_interval_s=settings.beat_interval,
            event_types=tuple(settings.ha_event_types),
            broker_memory_warn_percent=settings.broker_memory_warn_percent,
            broker_memory_spool_percent=settings.broker_memory_spool_percent,
            dead_letters_max=settings.dead_letters_max,
        )
