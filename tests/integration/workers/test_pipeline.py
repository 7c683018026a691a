"""The worker pipeline against real InfluxDB and Redis: batches, poison isolation, outages."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
import redis

from config.redis_keys import RedisKeys
from core.line_protocol import encode_point
from core.rules import Rules
from core.state_heartbeat import state_heartbeat_event
from core.transform import Point, event_to_point
from devtools.local_servers import InfluxDBServer
from tests.helpers import InfluxDatabase, wait_until
from workers.pipeline import IngestPipeline
from workers.sinks.influx_sink import V1Sink
from workers.stores.dead_letters import DeadLetterStore, as_replay

pytestmark = pytest.mark.integration


def _fixture_messages(fixtures_dir: Path) -> list[dict[str, Any]]:
    lines = (fixtures_dir / "sample_events.jsonl").read_text("utf-8").splitlines()
    return [
        {"event": json.loads(line)["event"], "received_at": 1.0, "source": "live", "seq": i}
        for i, line in enumerate(lines)
    ]


def _expected_points(messages: list[dict[str, Any]], rules: Rules) -> list[Point]:
    results = [event_to_point(m["event"], rules) for m in messages]
    return [r for r in results if isinstance(r, Point)]


def _pipeline(sink: V1Sink, store: DeadLetterStore, **kwargs: Any) -> IngestPipeline:
    return IngestPipeline(
        rules=Rules.from_mapping(None),
        sink=sink,
        dead_letters=store.add_many,
        backoff=lambda: iter([0.05] * 10_000),
        **kwargs,
    )


def test_a_batch_lands_point_for_point(
    influx_db: InfluxDatabase, redis_url: str, fixtures_dir: Path
) -> None:
    messages = _fixture_messages(fixtures_dir)
    store = DeadLetterStore(redis.Redis.from_url(redis_url), RedisKeys())
    sink = V1Sink(influx_db.url, influx_db.name)
    outcome = _pipeline(sink, store).process(messages)
    expected = _expected_points(messages, Rules.from_mapping(None))
    assert outcome.written == len(expected) > 10
    assert sum(outcome.skipped.values()) == len(messages) - len(expected)
    rows = influx_db.query("SELECT * FROM /.*/ GROUP BY *")
    assert len(rows) == len(expected)
    found = {(r["entity_id"], r["time"]) for r in rows}
    assert found == {(dict(p.tags)["entity_id"], p.time_ns) for p in expected}
    assert store.count() == 0


def test_a_rejected_point_is_isolated_and_dead_lettered(
    influx_db: InfluxDatabase, redis_url: str, fixtures_dir: Path
) -> None:
    messages = _fixture_messages(fixtures_dir)
    rules = Rules.from_mapping(None)
    points = _expected_points(messages, rules)
    # Plant a conflict: `value` as a string in one point's measurement, used by that one only.
    victim = next(
        p
        for p in points
        if sum(q.measurement == p.measurement for q in points) == 1 and "value" in dict(p.fields)
    )
    sink = V1Sink(influx_db.url, influx_db.name)
    # Field types are kept per shard: plant next to the victim in time.
    planted = Point(
        victim.measurement, (("entity_id", "planted"),), (("value", "text"),), victim.time_ns - 1
    )
    sink.write([encode_point(planted)])
    store = DeadLetterStore(redis.Redis.from_url(redis_url), RedisKeys())
    outcome = _pipeline(sink, store).process(messages)

    assert outcome.written == len(points) - 1
    assert outcome.dead_lettered == {"rejected_by_influxdb": 1}
    [letter] = store.list()
    assert "field type conflict" in letter.error
    assert letter.message["event"]["data"]["entity_id"].endswith(dict(victim.tags)["entity_id"])
    rows = influx_db.query("SELECT * FROM /.*/ WHERE entity_id != 'planted' GROUP BY *")
    assert len(rows) == len(points) - 1


def test_events_that_cannot_be_understood_are_dead_lettered_with_the_reason(
    influx_db: InfluxDatabase, redis_url: str
) -> None:
    store = DeadLetterStore(redis.Redis.from_url(redis_url), RedisKeys())
    sink = V1Sink(influx_db.url, influx_db.name)
    broken_state = {"entity_id": "sensor.x", "state": "1", "attributes": {}}
    messages: list[Any] = [
        "not an object",
        {
            "event": {"event_type": "state_changed", "data": {"new_state": broken_state}},
            "received_at": 1.0,
            "source": "live",
            "seq": 1,
        },
    ]
    outcome = _pipeline(sink, store).process(messages)
    assert outcome.written == 0
    assert outcome.dead_lettered == {"invalid_event": 2}
    reasons = [letter.error for letter in store.list()]
    assert "not an object" in reasons[0]
    assert "last_updated" in reasons[1]


def test_influxdb_down_means_wait_and_retry_not_dead_letters(
    tmp_path: Path, redis_url: str, fixtures_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = InfluxDBServer(tmp_path / "influx")
    server.start()
    try:
        sink = V1Sink(server.url, "home")
        sink.ensure_database()
        server.stop()
        store = DeadLetterStore(redis.Redis.from_url(redis_url), RedisKeys())
        messages = _fixture_messages(fixtures_dir)
        results: list[Any] = []
        worker = threading.Thread(
            target=lambda: results.append(_pipeline(sink, store).process(messages))
        )
        worker.start()
        wait_until(lambda: "InfluxDB unavailable" in caplog.text, 10, message="a retry")
        server.start()
        worker.join(30)
        assert results, "the batch finished once InfluxDB was back"
        outcome = results[0]
        assert outcome.retries >= 1
        assert outcome.written == len(_expected_points(messages, Rules.from_mapping(None)))
        assert store.count() == 0
    finally:
        server.stop()


def test_a_heartbeat_lands_beside_its_state_tagged_and_stays_one_when_replayed(
    influx_db: InfluxDatabase, redis_url: str, fixtures_dir: Path
) -> None:
    live = next(
        m
        for m in _fixture_messages(fixtures_dir)
        if isinstance(event_to_point(m["event"], Rules()), Point)
    )
    state = live["event"]["data"]["new_state"]
    beat = {
        "event": state_heartbeat_event(state, 1_900_000_000.5),
        "received_at": 2.0,
        "source": "heartbeat",
        "seq": 1,
    }
    assert as_replay(beat) == beat
    store = DeadLetterStore(redis.Redis.from_url(redis_url), RedisKeys())
    outcome = _pipeline(V1Sink(influx_db.url, influx_db.name), store).process([live, beat])
    assert outcome.written == 2
    rows = influx_db.query("SELECT * FROM /.*/ GROUP BY *")
    by_time = {int(r["time"]): r for r in rows}
    assert by_time[1_900_000_000_500_000_000]["heartbeat"] == "true"
    original = next(r for t, r in by_time.items() if t != 1_900_000_000_500_000_000)
    assert not original.get("heartbeat")
    assert {k: v for k, v in original.items() if k not in ("time", "heartbeat")} == {
        k: v
        for k, v in by_time[1_900_000_000_500_000_000].items()
        if k not in ("time", "heartbeat")
    }
