"""No point lost to a type clash: a simulated day written into a real InfluxDB whose fields other
writers created first with another type, through the v1 API and the v2 API.

Planted first, beside the day in the same shard: an integer `value` in a unit's measurement, a
numeric `state` where the home writes text states, and a text attribute field where the home
writes numbers. Every value of the day must then be readable through its own field or its
shadow (core/field_types.py), counted as `type_shadowed`, with no dead letter; where the shadow
clashes too, the point is dead-lettered as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from config.redis_keys import RedisKeys
from core.field_types import shadow, type_of
from core.rules import Rules
from core.transform import Point, event_to_point
from devtools.simulator.entities import Home
from tests.helpers import InfluxDatabase
from tests.influx_v2_bridge import V2Bridge
from workers.pipeline import BatchOutcome, IngestPipeline
from workers.sinks.field_types import FieldTypeCache
from workers.sinks.influx_sink import Sink, V1Sink, V2Sink
from workers.stores.counter_store import CounterStore
from workers.stores.dead_letters import DeadLetterStore

pytestmark = pytest.mark.integration

WEEK_S = 7 * 86_400
DAY_START_US = (1_795_000_000 // WEEK_S * WEEK_S + 3_600) * 1_000_000
"""An hour into a shard group (a week, epoch-aligned): the day and the planted points share it."""
EVENTS = 1_440
BATCH = 200


@dataclass(frozen=True)
class Day:
    messages: list[dict[str, Any]]
    points: list[Point]
    """The points of the day, as HA's schema makes them (nothing known of the store)."""


@pytest.fixture(scope="module")
def day() -> Day:
    """One change a minute for a day, from the simulator's home of 20 entities."""
    home = Home(20, seed=23, now_us=DAY_START_US)
    events = [home.step(DAY_START_US + (i + 1) * 60_000_000).event for i in range(EVENTS)]
    messages: list[dict[str, Any]] = [
        {"event": event, "received_at": 1.0, "source": "live", "seq": i}
        for i, event in enumerate(events)
    ]
    results = [event_to_point(event, Rules()) for event in events]
    return Day(messages, [p for p in results if isinstance(p, Point)])


def plant(influx_db: InfluxDatabase, day: Day) -> dict[str, dict[str, str]]:
    """Fields of the day's measurements created first with the other type; what was planted."""
    by_measurement: dict[str, list[Point]] = {}
    for p in day.points:
        by_measurement.setdefault(p.measurement, []).append(p)

    def busiest(test: Any) -> str:
        return max((m for m, ps in by_measurement.items() if test(ps)), key=lambda m: len(
            by_measurement[m]))  # fmt: skip

    numbers = busiest(
        lambda ps: all(set(dict(p.fields)) & {"value", "state"} == {"value"} for p in ps)
    )
    texts = busiest(lambda ps: all("state" in dict(p.fields) for p in ps))
    attribute, attributed = next(
        (key, p.measurement)
        for p in day.points
        for key, value in p.fields
        if p.measurement not in (numbers, texts) and key != "value" and type_of(value) == "float"
    )
    planted = {numbers: {"value": "integer"}, texts: {"state": "float"}}
    planted.setdefault(attributed, {})[attribute] = "string"
    lines = [
        f"{numbers},entity_id=planted value=7i",
        f"{texts},entity_id=planted state=1.5",
        f'{attributed},entity_id=planted {attribute}="planted"',
    ]
    write_v1(influx_db, [f"{line} {DAY_START_US * 1000 - 1}" for line in lines])
    return planted


def write_v1(influx_db: InfluxDatabase, lines: list[str]) -> None:
    sink = V1Sink(influx_db.url, influx_db.name)
    try:
        sink.write(lines)
    finally:
        sink.close()


@pytest.fixture(params=["v1", "v2"])
def sink(request: pytest.FixtureRequest, influx_db: InfluxDatabase) -> Iterator[Sink]:
    """The v1 sink, or the v2 sink through InfluxDB 1.8's v2 write API (tests/influx_v2_bridge)."""
    if request.param == "v1":
        sink: Sink = V1Sink(influx_db.url, influx_db.name)
        yield sink
        sink.close()
        return
    bridge = V2Bridge(influx_db.url).start()
    sink = V2Sink(bridge.url, token="unused", org="home", bucket=influx_db.name)
    yield sink
    sink.close()
    bridge.stop()


def run_day(sink: Sink, day: Day, redis_url: str) -> tuple[BatchOutcome, DeadLetterStore, int]:
    """The day in worker-sized batches; the summed outcome, the letters, type_shadowed counted."""
    client = redis.Redis.from_url(redis_url)
    counters = CounterStore(client, RedisKeys())
    letters = DeadLetterStore(client, RedisKeys())
    schema = sink.field_types if isinstance(sink, V1Sink) else None
    pipeline = IngestPipeline(
        rules=Rules(),
        sink=sink,
        dead_letters=letters.add_many,
        field_types=FieldTypeCache(schema),
        count=counters.add,
        backoff=lambda: iter([0.05] * 100),
    )
    total = BatchOutcome()
    for start in range(0, len(day.messages), BATCH):
        outcome = pipeline.process(day.messages[start : start + BATCH])
        total.written += outcome.written
        total.type_shadowed += outcome.type_shadowed
        total.dead_lettered.update(outcome.dead_lettered)
        total.write_errors += outcome.write_errors
    return total, letters, counters.totals(["type_shadowed"])["type_shadowed"]


def stored_by_time(influx_db: InfluxDatabase, measurements: set[str]) -> dict[int, dict[str, Any]]:
    """Every point of the day (not the planted ones) by its time, which is unique in the day.

    One query a measurement: a query over several would read a field name that has different
    types in different measurements as one type, and leave the other values out."""
    stored: dict[int, dict[str, Any]] = {}
    for measurement in measurements:
        name = measurement.replace("\\", "\\\\").replace('"', '\\"')
        rows = influx_db.query(f"SELECT * FROM \"{name}\" WHERE entity_id != 'planted' GROUP BY *")
        for row in rows:
            stored[row["time"]] = {k: v for k, v in row.items() if v is not None and k != "time"}
    return stored


def test_every_value_of_the_day_stays_readable_through_its_field_or_its_shadow(
    sink: Sink, influx_db: InfluxDatabase, redis_url: str, day: Day
) -> None:
    planted = plant(influx_db, day)

    outcome, letters, counted = run_day(sink, day, redis_url)

    expected = [shadow(p, planted.get(p.measurement, {})) for p in day.points]
    shadowed = sum(bool(e.moved) for e in expected)
    moved = {name for e in expected for name in e.moved}
    assert shadowed > 100, "the day meets each planted field often"
    assert moved == {
        (field, f"{field}_str" if held == "float" else f"{field}_float")
        for fields in planted.values()
        for field, held in fields.items()
    }
    assert outcome.dead_lettered == {}
    assert letters.count() == 0
    assert outcome.written == len(day.points)
    assert outcome.type_shadowed == counted == shadowed
    stored = stored_by_time(influx_db, {p.measurement for p in day.points})
    assert len(stored) == len(day.points)
    for e in expected:
        row = stored[e.point.time_ns]
        tags = dict(e.point.tags)
        # Numbers as floats: InfluxDB's JSON writes 6e19 as an integer literal.
        fields = {k: v if isinstance(v, str) else float(v) for k, v in row.items() if k not in tags}
        assert fields == dict(e.point.fields), (e.point.measurement, tags["entity_id"])


def test_a_point_whose_shadow_clashes_too_is_dead_lettered(
    influx_db: InfluxDatabase, redis_url: str, day: Day
) -> None:
    numbers = next(p.measurement for p in day.points if "state" not in dict(p.fields))
    line = f'{numbers},entity_id=planted value=7i,value_float="x" {DAY_START_US * 1000 - 1}'
    write_v1(influx_db, [line])
    sink = V1Sink(influx_db.url, influx_db.name)
    try:
        outcome, letters, counted = run_day(sink, day, redis_url)
    finally:
        sink.close()

    victims = sum(p.measurement == numbers and "value" in dict(p.fields) for p in day.points)
    assert outcome.dead_lettered == {"rejected_by_influxdb": victims}
    assert outcome.written == len(day.points) - victims
    assert outcome.type_shadowed == counted == 0
    assert {letter.reason for letter in letters.list(limit=10_000)} == {"rejected_by_influxdb"}
    assert all("field type conflict" in letter.error for letter in letters.list(limit=10_000))
