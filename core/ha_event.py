"""The few facts every part reads off an HA event: its entity, its domain, its times.

Pure, and lenient: HA sends events of any shape (DESIGN §3.1), so these helpers answer "none"
instead of raising; whoever needs a valid event (core.transform) says what is wrong itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any


def entity_id_of(event: Any) -> str | None:
    """`data.entity_id` of an event (a `state_changed` one, usually); None when there is none."""
    if not isinstance(event, Mapping):
        return None
    data = event.get("data")
    if not isinstance(data, Mapping):
        return None
    entity_id = data.get("entity_id")
    return entity_id if isinstance(entity_id, str) else None


def domain_of(entity_id: str) -> str:
    """`sensor` for `sensor.kitchen`; the whole id when it has no dot."""
    return entity_id.partition(".")[0]


def parse_ha_time(value: Any) -> datetime | None:
    """HA's ISO time (`time_fired`, `last_updated`) or epoch seconds → aware datetime.

    Naive ISO strings are UTC, as HA writes them; None for anything else.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch of an aware datetime, exactly (no float on the way)."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000
