"""Beat's figures per destination, against a real Redis: each destination's counters, write
error, dead letters and backlog under its own keys, read into the report, /metrics and the
status views, with the reasons naming the destination that has the problem."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from config.celery_app import create_app
from config.destinations import load_destinations
from config.redis_keys import RedisKeys
from config.settings import Settings, load_settings
from core.health_check import Thresholds
from core.health_report import BeatFigures, build_report
from devtools.local_servers import free_port
from listener.health.server import HealthCollector
from listener.health.status_page import render_status_page
from tests.helpers import InfluxDatabase
from workers.commands.status_command import rows
from workers.consumers.task_sender import TaskSender
from workers.monitoring.health_job import Monitor
from workers.stores.backlog import Backlog
from workers.stores.counter_store import CounterStore
from workers.stores.dead_letters import DeadLetterStore
from workers.worker_context import WorkerContext

pytestmark = pytest.mark.integration

KEYS = RedisKeys()
SECRET = "archive-token-5b1e"
TWO = f"""
destinations:
  - name: default
  - name: archive
    kind: influxdb
    api_version: 2
    org: home
    token: {SECRET}
    url: http://127.0.0.1:9
"""


def message(seq: int, received_at: float) -> dict[str, Any]:
    entity_id = f"sensor.s{seq}"
    new_state = {
        "entity_id": entity_id,
        "state": "1",
        "attributes": {},
        "last_updated": "2026-01-01T00:00:00+00:00",
    }
    data = {"entity_id": entity_id, "new_state": new_state}
    event = {"event_type": "state_changed", "data": data}
    return {"event": event, "received_at": received_at, "source": "live", "seq": seq}


def settings_with(redis_url: str, tmp_path: Path, config: str | None) -> Settings:
    overrides: dict[str, Any] = {}
    if config is not None:
        path = tmp_path / "ha_ingestor.yaml"
        path.write_text(config, encoding="utf-8")
        overrides["ha_ingestor_config"] = path
    return load_settings(celery_broker_url=redis_url, health_window=300, **overrides)


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def scrape(report: dict[str, Any]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(HealthCollector(lambda: report))
    families = text_string_to_metric_families(generate_latest(registry).decode())
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def test_two_destinations_one_failing_the_reasons_name_it(
    redis_url: str, tmp_path: Path, client: redis.Redis
) -> None:
    settings = settings_with(redis_url, tmp_path, TWO)
    default = CounterStore(client, KEYS)
    archive_keys = KEYS.for_destination("archive")
    archive = CounterStore(client, archive_keys)
    default.add({"written": 700})
    archive.add({"written": 300, "write_errors": 2, "retries": 2, "backlogged": 40})
    archive.add({"dead_lettered": 1, "dead_lettered:rejected_by_influxdb": 1})  # the pipeline's
    archive.note_write_error(f"connection refused (token {SECRET})")
    DeadLetterStore(client, archive_keys, count=archive.add).add_many(
        [(message(1, time.time()), "rejected_by_influxdb", "field type conflict")]
    )
    backlog = Backlog(client, archive_keys)
    received = time.time() - 90
    backlog.add([message(seq, received + seq) for seq in range(40)])
    backlog.park("40 events could not be written")

    report, _ = Monitor.from_settings(settings).compute()

    assert list(report["destinations"]) == ["default", "archive"]
    mine, other = report["destinations"]["archive"], report["destinations"]["default"]
    assert (mine["written"], mine["write_errors"], mine["dead_letters"]) == (300, 2, 1)
    assert (mine["backlog_events"], mine["parked"], mine["backlogged"]) == (40, True, 40)
    assert mine["lag_s"] == pytest.approx(90, abs=5)
    assert mine["dead_letters_stored"] == 1
    assert "connection refused" in mine["last_write_error"]
    assert (other["written"], other["write_errors"], other["parked"]) == (700, 0, False)
    assert other["backlog_events"] == 0
    assert report["pipeline"]["written"] == 1000, "the pipeline adds every destination up"
    assert SECRET not in str(report)

    named = {(c["code"], c.get("destination")): c for c in report["checks"]}
    assert set(named) == {
        ("write_errors", "archive"),
        ("dead_letters", "archive"),
        ("destination_parked", "archive"),
        ("no_workers", None),
        ("listener_down", None),
    }
    parked = named[("destination_parked", "archive")]
    assert parked["severity"] == "degraded"
    assert parked["message"].startswith(
        "destination archive is unavailable: 40 events wait in its backlog, 40 added in 5 min"
    )
    assert named[("write_errors", "archive")]["message"].startswith(
        "destination archive refused 2 batches in 5 min: connection refused"
    )
    assert named[("dead_letters", "archive")]["message"].startswith("destination archive: 1 ")

    # The listener reads beat's stored report back: the section and the named checks survive.
    read_back = BeatFigures.from_report(Monitor.from_settings(settings).run())
    assert read_back is not None
    served = build_report(time.time(), None, read_back, Thresholds(), beat_ran_at=time.time())
    assert served["destinations"]["archive"]["backlog_events"] == 40
    samples = scrape(served)
    assert samples[("ha_ingestor_points_written_total", (("destination", "archive"),))] == 300
    assert samples[("ha_ingestor_points_written_total", (("destination", "default"),))] == 700
    assert samples[("ha_ingestor_write_errors_total", (("destination", "archive"),))] == 2
    assert samples[("ha_ingestor_write_errors_total", (("destination", "default"),))] == 0
    assert samples[("ha_ingestor_dead_letters_total", (("destination", "archive"),))] == 1
    assert samples[("ha_ingestor_destination_backlog_events", (("destination", "archive"),))] == 40
    assert samples[("ha_ingestor_destination_parked", (("destination", "archive"),))] == 1
    assert samples[("ha_ingestor_destination_parked", (("destination", "default"),))] == 0
    check = (
        "ha_ingestor_health_check",
        (("code", "write_errors"), ("destination", "archive"), ("severity", "degraded")),
    )
    assert samples[check] == 1
    assert ("ha_ingestor_health_check", (("code", "listener_down"), ("severity", "unhealthy"))) in (
        samples
    ), "a check about no destination has no destination label"

    table = dict(rows(served))
    assert table["Destination archive"].startswith("300 written")
    assert "2 refused" in table["Destination archive"]
    assert "backlog 40 events (PARKED" in table["Destination archive"]
    assert table["Destination default"].startswith("700 written")
    assert 'id="destinations"' in render_status_page(served)


def test_one_destination_keeps_its_reasons_and_gains_only_its_section(
    redis_url: str, tmp_path: Path, client: redis.Redis
) -> None:
    settings = settings_with(redis_url, tmp_path, None)
    counters = CounterStore(client, KEYS)
    counters.add({"written": 5, "write_errors": 1})
    counters.note_write_error("timed out")

    report, _ = Monitor.from_settings(settings).compute()

    [refused] = [c for c in report["checks"] if c["code"] == "write_errors"]
    assert "destination" not in refused
    assert refused["message"].startswith("InfluxDB refused 1 batch in 5 min: timed out")
    assert list(report["destinations"]) == ["default"]
    only = report["destinations"]["default"]
    assert (only["written"], only["write_errors"], only["backlog_events"]) == (5, 1, 0)
    assert only["parked"] is False
    assert report["pipeline"]["written"] == 5
    samples = scrape(report)
    assert samples[("ha_ingestor_points_written_total", (("destination", "default"),))] == 5
    assert ("ha_ingestor_health_check", (("code", "write_errors"), ("severity", "degraded"))) in (
        samples
    )
    assert not any(label == "Destination default" for label, _ in rows(report))


def test_what_real_workers_count_for_an_unavailable_destination_reads_back(
    redis_url: str, tmp_path: Path, influx_db: InfluxDatabase
) -> None:
    """A worker fans a batch out to `default` (InfluxDB, up) and `archive` (nothing listens):
    beat reads default's writes and archive's parked backlog, the reasons name archive."""
    config = f"""
destinations:
  - name: default
  - name: archive
    url: http://127.0.0.1:{free_port()}
    timeout: 1
"""
    path = tmp_path / "ha_ingestor.yaml"
    path.write_text(config, encoding="utf-8")
    settings = load_settings(
        celery_broker_url=redis_url,
        influxdb_url=influx_db.url,
        influxdb_database=influx_db.name,
        ha_ingestor_config=path,
        health_window=300,
    )
    context = WorkerContext(
        settings, load_destinations(settings), send_many=TaskSender(create_app(settings))
    )
    try:
        outcome = context.ingest([message(seq, time.time() - 30) for seq in range(12)])
        report, _ = Monitor.from_settings(settings).compute()
    finally:
        context.close()

    assert (outcome.destinations["default"].written, outcome.backlogged) == (12, 12)
    default, archive = report["destinations"]["default"], report["destinations"]["archive"]
    assert (default["written"], default["parked"], default["backlog_events"]) == (12, False, 0)
    assert (archive["written"], archive["parked"], archive["backlog_events"]) == (0, True, 12)
    assert archive["lag_s"] == pytest.approx(30, abs=10)
    assert archive["write_errors"] >= 1
    named = {(c["code"], c.get("destination")) for c in report["checks"]}
    assert ("destination_parked", "archive") in named
    assert not any(d == "default" for _, d in named), named
