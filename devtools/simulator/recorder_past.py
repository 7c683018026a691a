"""A recorder's past of days, computed on request: history and long-term statistics. Pure.

`ha-ingestor import` reads what HA recorded before it was installed. Holding days of history
in memory would cap a bench at what fits; here every row is a function of (seed, entity,
index), so a reply costs only the rows it holds and a million states cost nothing until asked
for. Entities with a past: sensors whose state is a number and that have a `state_class`
(their statistics too: `measurement` → mean/min/max, `total`/`total_increasing` → sum/state,
as HA's recorder compiles them), and entities whose state is on/off (they toggle).

Each such entity changes every `interval_s`, at its own offset (never on a whole second, so no
row sits on a window boundary), from `start_us` to `end_us`; its attributes are its current
ones. History rows follow HA's compressed format with `start < last_updated < end`;
statistics rows hold the periods whose start lies in [start, end) and that closed before
`end_us`, 5-minute ones over the states' span, hourly ones from `statistics_start_us`.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

JSON = dict[str, Any]

PERIOD_US: Final = {"5minute": 300_000_000, "hour": 3_600_000_000}
DAY_US: Final = 86_400_000_000
_TOGGLES: Final = frozenset({"on", "off"})


def _crc(*parts: object) -> int:
    return zlib.crc32("|".join(map(str, parts)).encode())


@dataclass(frozen=True, slots=True)
class _Track:
    """One entity's past: when it changes and what its state is at each change."""

    entity_id: str
    attributes: Mapping[str, Any]
    first_us: int
    kind: str
    """`measurement`, `total` (a meter) or `toggle`."""
    base: float
    amplitude: float
    decimals: int
    phase: float
    unit: str | None

    def value(self, t_us: int) -> float:
        """The smooth value at a time (statistics are computed from it, without the noise)."""
        hours = t_us / 3_600_000_000
        if self.kind == "total":
            return self.base + self.amplitude * hours
        return self.base + self.amplitude * math.sin(2 * math.pi * hours / 24 + self.phase)


class RecorderPast:
    """History and statistics of a simulated past, generated per request from a seed."""

    def __init__(
        self,
        states: Mapping[str, Mapping[str, Any]],
        *,
        start_us: int,
        end_us: int,
        interval_s: float = 300.0,
        statistics_start_us: int | None = None,
        seed: int = 0,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.start_us = start_us
        self.end_us = end_us
        self.statistics_start_us = min(start_us, statistics_start_us or start_us)
        self.interval_us = max(2, int(interval_s * 1_000_000))
        self._seed = seed
        self._tracks: dict[str, _Track] = {}
        for entity_id, state in states.items():
            track = self._track(entity_id, state)
            if track is not None:
                self._tracks[entity_id] = track

    @property
    def entity_ids(self) -> list[str]:
        return list(self._tracks)

    def _track(self, entity_id: str, state: Mapping[str, Any]) -> _Track | None:
        text = str(state.get("state"))
        attributes = state.get("attributes") or {}
        offset = 1 + _crc(self._seed, entity_id, "offset") % (self.interval_us - 1)
        offset += 0 if offset % 1_000_000 else 1  # never on a whole second
        first = self.start_us + min(offset, self.interval_us - 1)
        unit = attributes.get("unit_of_measurement")
        if text in _TOGGLES:
            return _Track(entity_id, attributes, first, "toggle", 0, 0, 0, 0, None)
        state_class = attributes.get("state_class")
        if not entity_id.startswith("sensor.") or state_class is None:
            return None
        try:
            base = float(text)
        except ValueError:
            return None
        if not math.isfinite(base):
            return None
        decimals = len(text.partition(".")[2])
        phase = (_crc(self._seed, entity_id, "phase") % 628) / 100
        if state_class in ("total", "total_increasing"):
            amplitude = max(0.01, abs(base) * 0.001) + (_crc(entity_id) % 100) / 1000
            start_value = base - amplitude * self.end_us / 3_600_000_000  # grows to ~base
            return _Track(entity_id, attributes, first, "total", start_value, amplitude,
                          max(decimals, 3), phase, unit)  # fmt: skip
        amplitude = max(1.0, abs(base) * 0.1)
        return _Track(entity_id, attributes, first, "measurement", base, amplitude, decimals,
                      phase, unit)  # fmt: skip

    # --- history ---

    def _indexes(self, track: _Track, start_us: int, end_us: int) -> range:
        """Indexes k of the changes with start < t_k < end, t_k = first + k * interval."""
        step = self.interval_us
        last = self.end_us
        low = max(0, (start_us - track.first_us) // step + 1)
        high_excl = min(end_us, last)
        high = -((track.first_us - high_excl) // step) if high_excl > track.first_us else 0
        return range(low, max(low, high))

    def _state(self, track: _Track, k: int, t_us: int) -> str:
        if track.kind == "toggle":
            return "on" if (k + _crc(track.entity_id)) % 2 else "off"
        noise = ((_crc(self._seed, track.entity_id, k) % 1000) / 1000 - 0.5) * 0.2
        value = track.value(t_us) + (0 if track.kind == "total" else noise * track.amplitude)
        return f"{round(value, track.decimals) + 0.0:.{track.decimals}f}"

    def history(
        self, start_us: int, end_us: int, entity_ids: Iterable[str] | None = None
    ) -> dict[str, list[JSON]]:
        """HA's compressed rows (`s`, `a`, `lu`) with start < last_updated < end."""
        out: dict[str, list[JSON]] = {}
        for track in self._chosen(entity_ids):
            rows = []
            for k in self._indexes(track, start_us, end_us):
                t_us = track.first_us + k * self.interval_us
                rows.append(
                    {"s": self._state(track, k, t_us), "a": track.attributes, "lu": t_us / 1e6}
                )
            if rows:
                out[track.entity_id] = rows
        return out

    def count_states(
        self, start_us: int, end_us: int, entity_ids: Iterable[str] | None = None
    ) -> int:
        """How many history rows [start, end) holds (start itself included)."""
        return sum(len(self._indexes(t, start_us - 1, end_us)) for t in self._chosen(entity_ids))

    def _chosen(self, entity_ids: Iterable[str] | None) -> Iterator[_Track]:
        if entity_ids is None:
            yield from self._tracks.values()
            return
        seen: set[str] = set()
        for entity_id in entity_ids:
            track = self._tracks.get(entity_id)
            if track is not None and entity_id not in seen:
                seen.add(entity_id)
                yield track

    # --- statistics ---

    def statistic_ids(self, statistic_type: str | None = None) -> list[JSON]:
        """`recorder/list_statistic_ids` entries, as HA 2024.3 shapes them."""
        out = []
        for track in self._tracks.values():
            if track.kind == "toggle":
                continue
            has_mean = track.kind == "measurement"
            if statistic_type == "mean" and not has_mean:
                continue
            if statistic_type == "sum" and has_mean:
                continue
            out.append(
                {
                    "statistic_id": track.entity_id,
                    "display_unit_of_measurement": track.unit,
                    "has_mean": has_mean,
                    "has_sum": not has_mean,
                    "name": None,
                    "source": "recorder",
                    "statistics_unit_of_measurement": track.unit,
                    "unit_class": None,
                }
            )
        return out

    def _periods(self, period: str, start_us: int, end_us: int) -> range:
        step = PERIOD_US[period]
        begin = self.start_us if period == "5minute" else self.statistics_start_us
        first = max(-(-begin // step), -(-start_us // step))
        last = min(self.end_us // step, -(-end_us // step))  # closed periods, start < end
        return range(first, max(first, last))

    def statistics(
        self,
        period: str,
        start_us: int,
        end_us: int,
        statistic_ids: Iterable[str] | None = None,
        types: Iterable[str] | None = None,
    ) -> dict[str, list[JSON]]:
        """`recorder/statistics_during_period`: rows whose start lies in [start, end)."""
        if period not in PERIOD_US:
            return {}  # day/week/month: not simulated
        step = PERIOD_US[period]
        wanted = None if types is None else set(types)
        out: dict[str, list[JSON]] = {}
        for track in self._chosen(statistic_ids):
            if track.kind == "toggle":
                continue
            rows = []
            for n in self._periods(period, start_us, end_us):
                begin, end = n * step, (n + 1) * step
                row: JSON = {"start": begin // 1000, "end": end // 1000}
                if wanted is None:
                    row["last_reset"] = None
                values = self._row_values(track, begin, end)
                for key in ("mean", "min", "max", "state", "sum", "change"):
                    if wanted is None or key in wanted:
                        row[key] = values.get(key)
                rows.append(row)
            if rows:
                out[track.entity_id] = rows
        return out

    def _row_values(self, track: _Track, begin: int, end: int) -> JSON:
        if track.kind == "total":
            first = track.value(self.statistics_start_us)
            state = round(track.value(end), 3)
            return {
                "state": state,
                "sum": round(state - first, 3),
                "change": round(track.value(end) - track.value(begin), 3),
            }
        samples = [track.value(begin + (end - begin) * i // 4) for i in range(5)]
        return {
            "mean": sum(samples) / len(samples),
            "min": min(samples),
            "max": max(samples),
        }

    def count_statistics(
        self, period: str, start_us: int, end_us: int, statistic_ids: Iterable[str] | None = None
    ) -> int:
        """How many statistics rows of `period` start in [start, end)."""
        chosen = [t for t in self._chosen(statistic_ids) if t.kind != "toggle"]
        return len(chosen) * len(self._periods(period, start_us, end_us))
