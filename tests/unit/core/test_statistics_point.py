"""The statistics schema (DESIGN §3.2b) and `ha-ingestor import`'s WHEN, both pure."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.import_time import BadWhen, import_range, parse_when
from core.rules import Rules
from core.statistics_point import statistics_event, statistics_to_point
from core.transform import InvalidEvent, Point, Skipped, event_to_point

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "statistics_exchanges.jsonl"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _captured_rows() -> dict[str, list[dict[str, object]]]:
    for line in FIXTURES.read_text("utf-8").splitlines():
        exchange = json.loads(line)
        if exchange["note"] == "statistics_during_period 5minute (all types)":
            rows: dict[str, list[dict[str, object]]] = exchange["recv"]["result"]
            return rows
    raise AssertionError("capture missing")


def test_a_captured_measurement_row_becomes_its_point() -> None:
    row = _captured_rows()["sensor.stat_power"][0]
    point = statistics_to_point(
        statistics_event("sensor.stat_power", "W", "5minute", row), Rules.from_mapping(None)
    )
    assert isinstance(point, Point)
    assert point.measurement == "W"
    assert dict(point.tags) == {
        "domain": "sensor",
        "entity_id": "stat_power",
        "statistic_id": "sensor.stat_power",
        "period": "5minute",
    }
    assert dict(point.fields) == {"mean": 465.0646563516663, "min": 200.0, "max": 800.0}
    assert point.time_ns == 1796111100000 * 1_000_000


def test_a_meter_row_keeps_sum_and_state_and_never_collides_with_a_state_point() -> None:
    row = _captured_rows()["sensor.stat_energy"][0]
    rules = Rules.from_mapping({"tags": {"home": "main"}})
    point = statistics_to_point(statistics_event("sensor.stat_energy", "kWh", "hour", row), rules)
    assert isinstance(point, Point)
    assert dict(point.fields) == {"state": 104.716, "sum": 4.705999999999989}
    assert dict(point.tags)["home"] == "main"
    state = {"entity_id": "sensor.stat_energy", "state": "104.7", "last_updated": 1796111100.0,
             "attributes": {"unit_of_measurement": "kWh"}}  # fmt: skip
    live = event_to_point({"event_type": "state_changed", "data": {"new_state": state}}, rules)
    assert isinstance(live, Point)
    assert live.time_ns == point.time_ns
    assert live.measurement == point.measurement
    assert dict(live.tags).keys() != dict(point.tags).keys()


@pytest.mark.parametrize(
    ("rules", "unit", "measurement"),
    [
        ({}, None, "sensor.x"),
        ({"default_measurement": "stats"}, None, "stats"),
        ({"override_measurement": "all"}, "W", "all"),
        ({"component_config": {"sensor.x": {"override_measurement": "mine"}}}, "W", "mine"),
    ],
)
def test_measurement_follows_the_rules(rules: dict[str, object], unit: str | None,
                                       measurement: str) -> None:  # fmt: skip
    event = statistics_event("sensor.x", unit, "hour", {"start": 0, "mean": 1.0})
    point = statistics_to_point(event, Rules.from_mapping(rules))
    assert isinstance(point, Point)
    assert point.measurement == measurement


def test_filters_apply_and_empty_rows_are_skipped() -> None:
    rules = Rules.from_mapping({"exclude": {"entity_globs": ["sensor.hidden_*"]}})
    hidden = statistics_event("sensor.hidden_power", "W", "hour", {"start": 0, "mean": 1.0})
    assert statistics_to_point(hidden, rules) == Skipped("filtered")
    empty = statistics_event("sensor.x", "W", "hour", {"start": 0, "mean": None})
    assert statistics_to_point(empty, rules) == Skipped("no_statistics_values")


def test_external_statistic_ids_and_iso_starts() -> None:
    event = statistics_event("tibber:energy_home", "kWh", "hour",
                             {"start": "2024-03-01T10:00:00+00:00", "sum": 3.5})  # fmt: skip
    point = statistics_to_point(event, Rules.from_mapping(None))
    assert isinstance(point, Point)
    assert dict(point.tags)["domain"] == "tibber"
    assert dict(point.tags)["entity_id"] == "energy_home"
    assert point.time_ns == int(datetime(2024, 3, 1, 10, tzinfo=UTC).timestamp()) * 10**9


@pytest.mark.parametrize(
    "event",
    [
        {"event_type": "ha_ingestor.statistics"},
        statistics_event("nodomain", "W", "hour", {"start": 0, "mean": 1.0}),
        statistics_event("sensor.x", "W", "fortnight", {"start": 0, "mean": 1.0}),
        statistics_event("sensor.x", "W", "hour", {"mean": 1.0}),
    ],
)
def test_unreadable_rows_are_invalid(event: dict[str, object]) -> None:
    with pytest.raises(InvalidEvent):
        statistics_to_point(event, Rules.from_mapping(None))


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2024-03-01", datetime(2024, 3, 1, tzinfo=UTC)),
        ("2024-03-01T12:30", datetime(2024, 3, 1, 12, 30, tzinfo=UTC)),
        ("2024-03-01T12:30:00+01:00", datetime(2024, 3, 1, 11, 30, tzinfo=UTC)),
        ("30d", datetime(2026, 11, 1, 12, 0, tzinfo=UTC)),
        ("12h", datetime(2026, 12, 1, 0, 0, tzinfo=UTC)),
        ("90m", datetime(2026, 12, 1, 10, 30, tzinfo=UTC)),
        ("2w", datetime(2026, 11, 17, 12, 0, tzinfo=UTC)),
        ("1.5d", datetime(2026, 11, 30, 0, 0, tzinfo=UTC)),
    ],
)
def test_when_accepts_dates_times_and_ages(text: str, moment: datetime) -> None:
    assert parse_when(text, NOW) == moment


@pytest.mark.parametrize(
    ("since", "until", "says"),
    [
        ("2027-01-01", None, "is in the future"),
        ("1d", "2d", "is not after --since"),
        ("last week", None, "is not a time"),
    ],
)
def test_bad_when_says_what_would_do(since: str, until: str | None, says: str) -> None:
    with pytest.raises(BadWhen, match=says):
        import_range(since, until, NOW)


def test_until_defaults_to_now() -> None:
    assert import_range("1d", None, NOW) == (datetime(2026, 11, 30, 12, tzinfo=UTC), NOW)
