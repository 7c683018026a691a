"""Both sinks end to end with the real processes: simulator → listener → Redis → worker → sink.

- InfluxDB 1.x through `/write`, read back with InfluxQL: every point, numbers and strings;
  and where another writer made a field an integer first, every value through its shadow field.
- The v2 write API through influxdb-client, against VictoriaMetrics, read back through its
  export API. VictoriaMetrics names a series `{measurement}_{field}`, keeps tags as labels,
  stores milliseconds and turns string fields into 0: it proves the v2 path and the numbers.
- INFLUXDB_KIND=victoriametrics: every number as a value and every text as a label of a 1,
  none stored as 0; with a guard of one text per entity and field, what it leaves out is
  exactly what `text_left_out` counts (no outage here, so no batch is encoded twice).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis

from config.redis_keys import RedisKeys
from core.transform import Point
from devtools.local_servers import free_port
from tests.expectations import (
    SeriesKey,
    expected_points,
    ha_states,
    points_in_influx,
    recorded_events,
    state_events,
)
from tests.helpers import InfluxDatabase, Victoria, wait_until
from tests.processes import AppProcess, app_env, listener_argv, worker_argv
from tests.sim_thread import SimulatorThread
from workers.sinks.influx_sink import V1Sink

pytestmark = pytest.mark.e2e

TOKEN = "sinks-token-0123456789"
EVENTS = 800


@contextmanager
def stack(tmp_path: Path, redis_url: str, **sink_settings: str) -> Iterator[dict[SeriesKey, Point]]:
    """Run simulator, listener and worker until every event was written; yield the expected
    points (snapshot + events, computed by the pure core)."""
    record = tmp_path / "sent.jsonl"
    sim = SimulatorThread(
        token=TOKEN, rate=800, events=EVENTS, entities=30, record_path=record
    ).start(paused=True)
    env = app_env(
        HA_URL=sim.sim.url,
        HA_TOKEN=TOKEN,
        CELERY_BROKER_URL=redis_url,
        HEALTH_PORT=str(free_port()),
        DATA_DIR=str(tmp_path / "data"),
        BATCH_INTERVAL="0.3",
        **sink_settings,
    )
    worker = AppProcess("worker", worker_argv(), env, tmp_path).start()
    listener = AppProcess("listener", listener_argv(), env, tmp_path).start()
    client = redis.Redis.from_url(redis_url)
    written_key = RedisKeys().counter("written")
    try:
        initial = expected_points(state_events(ha_states(sim.sim.url, TOKEN)))
        # Events start once the snapshot is in: a state changed before the listener took its
        # snapshot would never be recorded with its first value.
        wait_until(
            lambda: int(client.get(written_key) or 0) >= len(initial),
            30,
            0.2,
            message="the listener's snapshot written",
        )
        sim.do(sim.sim.resume_events)
        sim.call(sim.sim.wait_done(), timeout=60)
        expected = {**initial, **expected_points(recorded_events(record))}
        wait_until(
            lambda: int(client.get(written_key) or 0) >= len(expected),
            60,
            0.2,
            message=f"{len(expected)} points written",
        )
        yield expected
    finally:
        listener.stop()
        worker.stop()
        sim.stop()
    assert not list(client.scan_iter(RedisKeys().dead_letters())), "no dead letters"


def test_influxdb_1x_receives_every_point_through_write(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase
) -> None:
    with stack(
        tmp_path, redis_url, INFLUXDB_URL=influx_db.url, INFLUXDB_DATABASE=influx_db.name
    ) as expected:
        found = points_in_influx(influx_db)
    assert found.keys() == expected.keys()
    strings = 0
    for key, point in expected.items():
        row = found[key]
        for name, value in point.fields:
            if isinstance(value, str):
                assert row[name] == value, (key, name)
                strings += 1
            else:
                assert row[name] == pytest.approx(value), (key, name)
    assert strings > 0, "string fields were checked too"


def test_influxdb_1x_where_another_writer_made_value_an_integer_keeps_every_point(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase
) -> None:
    """°C's `value` created first as an integer (as Node-RED or Telegraf would): by default
    every °C value goes to `value_float`, counted as type_shadowed; none is dead-lettered (the
    stack checks)."""
    planter = V1Sink(influx_db.url, influx_db.name)
    planter.write([f"°C,domain=sensor,entity_id=planted value=7i {time.time_ns()}"])
    planter.close()
    with stack(
        tmp_path, redis_url, INFLUXDB_URL=influx_db.url, INFLUXDB_DATABASE=influx_db.name
    ) as expected:
        rows = influx_db.query(
            "SELECT value, value_float FROM \"°C\" WHERE entity_id != 'planted' GROUP BY *"
        )
        counted = redis.Redis.from_url(redis_url).get(RedisKeys().counter("type_shadowed"))
    celsius = {key: p for key, p in expected.items() if p.measurement == "°C"}
    assert len(celsius) > 10
    found = {(r["domain"], r["entity_id"], r["time"]): r for r in rows}
    assert found.keys() == celsius.keys()
    for key, point in celsius.items():
        assert found[key]["value"] is None, key
        assert found[key]["value_float"] == pytest.approx(dict(point.fields)["value"]), key
    assert int(counted or 0) == len(celsius)


def test_the_v2_write_api_reaches_victoriametrics_through_influxdb_client(
    tmp_path: Path, redis_url: str, victoria: Victoria
) -> None:
    with stack(
        tmp_path,
        redis_url,
        INFLUXDB_API_VERSION="2",
        INFLUXDB_URL=victoria.url,
        INFLUXDB_TOKEN="unused-by-victoria",
        INFLUXDB_ORG="home",
        INFLUXDB_BUCKET="ha",
    ) as expected:
        samples: dict[tuple[str, str, str], dict[int, list[float]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for series in victoria.export():
            labels: dict[str, Any] = series["metric"]
            name = (labels["__name__"], labels.get("domain", ""), labels.get("entity_id", ""))
            for ms, value in zip(series["timestamps"], series["values"], strict=True):
                samples[name][ms].append(value)

    checked = 0
    for (domain, object_id, time_ns), point in expected.items():
        for field, value in point.fields:
            got = samples[(f"{point.measurement}_{field}", domain, object_id)].get(time_ns // 10**6)
            assert got, (point, field)
            if len(got) == 1:  # two points of one series in the same millisecond: skip
                assert got[0] == (0 if isinstance(value, str) else pytest.approx(value))
                checked += 1
    assert checked > len(expected), "every point's fields, numbers and strings"


Found = dict[tuple[str, str, str], list[tuple[dict[str, str], dict[int, list[float]]]]]


def victoria_stack(
    tmp_path: Path, redis_url: str, victoria: Victoria, max_texts: int
) -> tuple[dict[SeriesKey, Point], Found, int]:
    """Run the stack into VictoriaMetrics: the expected points, the series found by (name,
    domain, entity_id) with their labels and {ms: values}, and the texts counted left out."""
    with stack(
        tmp_path,
        redis_url,
        INFLUXDB_KIND="victoriametrics",
        INFLUXDB_URL=victoria.url,
        VICTORIA_TEXT_VALUES_MAX=str(max_texts),
    ) as expected:
        series = victoria.export()
        client = redis.Redis.from_url(redis_url)
        left_out = int(client.get(RedisKeys().counter("text_left_out")) or 0)
    found: Found = defaultdict(list)
    for one in series:
        labels = one["metric"]
        at: dict[int, list[float]] = defaultdict(list)
        for ms, value in zip(one["timestamps"], one["values"], strict=True):
            at[ms].append(value)
        name = (labels["__name__"], labels.get("domain", ""), labels.get("entity_id", ""))
        found[name].append((labels, at))
    return expected, found, left_out


def compare_victoria(expected: dict[SeriesKey, Point], found: Found) -> tuple[int, int, int]:
    """Every number must be there; texts (read back, missing, stored as 0) are counted."""
    texts = missing = zeroed = 0
    for (domain, object_id, time_ns), point in expected.items():
        tag_keys = {key for key, _ in point.tags}
        for field, value in point.fields:
            candidates = found[(f"{point.measurement}_{field}", domain, object_id)]
            if isinstance(value, str):
                label = field + "_text" if field in tag_keys else field
                got = [
                    v
                    for labels, at in candidates
                    if labels.get(label) == value
                    for v in at.get(time_ns // 10**6, [])
                ]
                zeroed += sum(v == 0 for v in got)
                texts += bool(got)
                missing += not got
            else:
                numbers = [at for labels, at in candidates if field not in labels]
                got = [v for at in numbers for v in at.get(time_ns // 10**6, [])]
                assert got, (point, field)
                if len(got) == 1:  # two points of one series in the same millisecond: skip
                    assert got[0] == pytest.approx(value)
    return texts, missing, zeroed


def test_victoriametrics_kind_keeps_every_text_as_a_label(
    tmp_path: Path, redis_url: str, victoria: Victoria
) -> None:
    expected, found, left_out = victoria_stack(tmp_path, redis_url, victoria, 100_000)
    texts, missing, zeroed = compare_victoria(expected, found)
    assert texts > len(expected), "text states and attributes were read back"
    assert (missing, zeroed, left_out) == (0, 0, 0)


def test_victoriametrics_guard_counts_the_texts_it_leaves_out(
    tmp_path: Path, redis_url: str, victoria: Victoria
) -> None:
    expected, found, left_out = victoria_stack(tmp_path, redis_url, victoria, 1)
    texts, missing, zeroed = compare_victoria(expected, found)
    assert texts > 0
    assert missing > 0, "one text per entity and field a day leaves some out"
    assert zeroed == 0
    assert left_out == missing


def write_stats(influx_db: InfluxDatabase) -> tuple[int, int]:
    """(write requests, points written) since influxd started, from its own statistics."""
    [result] = influx_db.client.results("SHOW STATS FOR 'httpd'", epoch=None)
    [series] = result["series"]
    row = dict(zip(series["columns"], series["values"][0], strict=True))
    return int(row["writeReq"]), int(row["pointsWrittenOK"])


def test_batches_are_large_under_load_and_a_lone_event_lands_within_a_second(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase
) -> None:
    from config.celery_app import create_app
    from config.settings import load_settings
    from core.task_message import INGEST_TASK

    env = app_env(
        CELERY_BROKER_URL=redis_url, INFLUXDB_URL=influx_db.url, INFLUXDB_DATABASE=influx_db.name
    )
    app = create_app(load_settings(celery_broker_url=redis_url))
    client = redis.Redis.from_url(redis_url)
    written_key = RedisKeys().counter("written")

    def payload(i: int) -> dict[str, Any]:
        state = {"entity_id": f"sensor.s{i % 25}", "state": str(i), "attributes": {},
                 "last_updated": 1_780_000_000 + i}  # fmt: skip
        return {"event": state_events([state])[0], "received_at": 0.0, "source": "live", "seq": i}

    backlog = 2000
    with app.producer_or_acquire() as producer:
        for i in range(backlog):
            app.send_task(INGEST_TASK, args=[payload(i)], producer=producer)
    requests_before, points_before = write_stats(influx_db)
    worker = AppProcess("worker", worker_argv(), env, tmp_path).start()
    try:
        wait_until(lambda: int(client.get(written_key) or 0) >= backlog, 60, 0.2,
                   message="the backlog written")  # fmt: skip
        requests_after, points_after = write_stats(influx_db)
        per_request = (points_after - points_before) / max(1, requests_after - requests_before)
        latencies: list[float] = []
        for i in range(backlog, backlog + 3):
            sent_at = time.monotonic()
            app.send_task(INGEST_TASK, args=[payload(i)])
            wait_until(lambda: int(client.get(written_key) or 0) > backlog + len(latencies), 5,
                       0.01, message="a lone event written")  # fmt: skip
            latencies.append(time.monotonic() - sent_at)
    finally:
        worker.stop()
    print(
        f"\nFIGURES batching: backlog of {backlog} written in "
        f"{requests_after - requests_before} requests ({per_request:.0f} points per request); "
        f"lone events written after {', '.join(f'{s:.2f}' for s in latencies)} s"
    )
    assert per_request >= 100
    assert max(latencies) < 1.0
