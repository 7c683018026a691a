"""One long-term statistics row of HA's recorder → one InfluxDB point (DESIGN §3.2b). Pure.

`ha-ingestor import` sends each row of `recorder/statistics_during_period` as a task message
whose event is `statistics_event(...)`; the worker turns it into a point here. The schema:

- measurement: a `component_config*` or global `override_measurement`, else the statistic's
  unit (`statistics_unit_of_measurement`, as states use their unit), else
  `default_measurement`, else the `statistic_id`;
- tags: enrichment tags first (as for states), `domain` and `entity_id` (the object id) of the
  statistic id (`sensor.x`, or an external `tibber:energy_x`), `statistic_id`, `period`
  (`5minute` or `hour`), then the static `tags`;
- fields: `mean`, `min`, `max`, `sum`, `state`, as HA returns them (nulls and non-finite
  numbers left out);
- time: the start of the period.

The tag set (`statistic_id`, `period`) differs from every state point's, so the two never
overwrite each other; the include/exclude filters apply to the statistic id as to an entity.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from core.rules import Rules
from core.transform import FILTERED, InvalidEvent, Point, Skipped

STATISTICS_EVENT: Final = "ha_ingestor.statistics"
"""The `event_type` of an imported statistics row (HA never fires an event of this name)."""

PERIODS: Final = ("5minute", "hour")
FIELDS: Final = ("mean", "min", "max", "sum", "state")
NO_VALUES: Final = Skipped("no_statistics_values")

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def statistics_event(
    statistic_id: str, unit: str | None, period: str, row: Mapping[str, Any]
) -> dict[str, Any]:
    """The event of a task message for one statistics row: only what the point needs."""
    values = {key: row[key] for key in ("start", *FIELDS) if row.get(key) is not None}
    return {
        "event_type": STATISTICS_EVENT,
        "data": {"statistic_id": statistic_id, "unit": unit, "period": period, "row": values},
    }


def statistics_to_point(
    event: Mapping[str, Any], rules: Rules, extra_tags: Mapping[str, str] | None = None
) -> Point | Skipped:
    """The point of one statistics row, or why there is none; raises InvalidEvent."""
    data = event.get("data")
    if not isinstance(data, Mapping):
        raise InvalidEvent("statistics data is missing or not an object")
    statistic_id = data.get("statistic_id")
    if not isinstance(statistic_id, str):
        raise InvalidEvent("statistic_id is missing")
    domain, object_id = split_statistic_id(statistic_id)
    period = data.get("period")
    if period not in PERIODS:
        raise InvalidEvent(f"period {period!r} is not one of {', '.join(PERIODS)}")
    row = data.get("row")
    if not isinstance(row, Mapping):
        raise InvalidEvent("statistics row is missing or not an object")
    time_ns = _start_ns(row.get("start"))
    entity = rules.for_entity(statistic_id)
    if entity is None:
        return FILTERED
    fields: dict[str, float | str] = {}
    for key in FIELDS:
        value = row.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            fields[key] = float(value)
    if not fields:
        return NO_VALUES
    unit = data.get("unit")
    measurement = (
        entity.override_measurement
        or rules.override_measurement
        or (unit if isinstance(unit, str) and unit else None)
        or rules.default_measurement
        or statistic_id
    )
    tags: dict[str, str] = {}
    for key, value in (extra_tags or {}).items():
        if key and value:
            tags[str(key)] = str(value)
    tags.update(domain=domain, entity_id=object_id, statistic_id=statistic_id, period=period)
    tags.update(rules.static_tags)
    return Point.of(measurement, tags, fields, time_ns)


def split_statistic_id(statistic_id: str) -> tuple[str, str]:
    """(domain, object id) of `sensor.x` (recorder) or `tibber:x` (an integration's own)."""
    for separator in (".", ":"):
        domain, found, object_id = statistic_id.partition(separator)
        if found and domain and object_id:
            return domain, object_id
    raise InvalidEvent(f"statistic_id {statistic_id[:100]!r} has no domain")


def _start_ns(value: object) -> int:
    """HA 2023.3+ sends `start` as epoch milliseconds; older versions as an ISO string."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return round(value) * 1_000_000
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidEvent(f"statistics start {value[:64]!r} is not a time") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        delta = moment - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    raise InvalidEvent("statistics row has no start")
