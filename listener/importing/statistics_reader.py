"""HA's long-term statistics over the WebSocket API: which there are, and their rows per window.

`recorder/list_statistic_ids` names every statistic with its unit; `recorder/statistics_during_
period` returns, per statistic id, the rows whose period starts in [start_time, end_time)
(`start` in epoch ms; `mean`/`min`/`max` for measurements, `sum`/`state` for meters). The
requests go through the backfill's `call_with_retries` (timeout, retries, HA's refusals).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from core.statistics_point import FIELDS
from listener.history.backfill import Window
from listener.history.gap_filler import Call, call_with_retries


@dataclass(frozen=True)
class Statistic:
    statistic_id: str
    unit: str | None


async def list_statistics(call: Call, *, reply_timeout: float, retries: int,
                          backoff: Callable[[], Iterator[float]]) -> list[Statistic]:  # fmt: skip
    """Every statistic HA keeps, with the unit its rows are in."""
    result = await call_with_retries(
        call,
        "recorder/list_statistic_ids",
        {},
        what="HA's list of statistics (recorder/list_statistic_ids)",
        reply_timeout=reply_timeout,
        retries=retries,
        backoff=backoff,
    )
    out = []
    for entry in result if isinstance(result, list) else []:
        if isinstance(entry, Mapping) and isinstance(entry.get("statistic_id"), str):
            unit = entry.get("statistics_unit_of_measurement")
            out.append(Statistic(entry["statistic_id"], unit if isinstance(unit, str) else None))
    return out


def statistics_request(window: Window, period: str) -> dict[str, Any]:
    return {
        "start_time": window.start.astimezone(UTC).isoformat(),
        "end_time": window.end.astimezone(UTC).isoformat(),
        "statistic_ids": list(window.entity_ids),
        "period": period,
        "types": list(FIELDS),
    }


async def read_statistics(
    call: Call,
    window: Window,
    period: str,
    *,
    reply_timeout: float,
    retries: int,
    backoff: Callable[[], Iterator[float]],
) -> dict[str, Sequence[Mapping[str, Any]]]:
    """The rows of the window's statistics whose `period` starts within it."""
    result = await call_with_retries(
        call,
        "recorder/statistics_during_period",
        statistics_request(window, period),
        what=f"HA's {period} statistics for {window.start.isoformat()}..{window.end.isoformat()}",
        reply_timeout=reply_timeout,
        retries=retries,
        backoff=backoff,
    )
    if not isinstance(result, Mapping):
        return {}
    return {
        sid: [row for row in rows if isinstance(row, Mapping)]
        for sid, rows in result.items()
        if isinstance(sid, str) and isinstance(rows, list)
    }
