"""A worker's start-up (workers/worker_start.py), as `celery -A config.celery_app worker` runs it:
nothing is built at import, bad settings or rules stop the start with one message, and a good
start takes messages with the bulk taker and writes them."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from config.celery_app import create_app
from config.redis_keys import broker_consumers
from config.settings import load_settings
from core.task_message import INGEST_TASK
from tests.helpers import InfluxDatabase, wait_until
from tests.processes import AppProcess, app_env, worker_argv

pytestmark = pytest.mark.integration


def run_worker(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(worker_argv(), env=env, capture_output=True, text=True, timeout=60)


def test_importing_the_app_module_builds_nothing() -> None:
    """Nor importing the task modules: invalid settings do not matter until someone asks for
    the app."""
    env = app_env(INFLUXDB_API_VERSION="3")
    probe = (
        "import config.celery_app, workers.consumers.ingest_task, workers.monitoring.beat_tasks; "
        "print(sorted(vars(config.celery_app)).count('app'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"


def test_bad_timing_and_bad_rules_refuse_the_start_with_one_message(
    redis_url: str, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("precision: h\nincldue:\n  domains: [sensor]\n", encoding="utf-8")
    env = app_env(
        CELERY_BROKER_URL=redis_url,
        HA_INGESTOR_CONFIG=str(rules),
        WORKER_HOLD_TIMEOUT="20",
        HA_HEARTBEAT_TIMEOUT="5",
        DATA_DIR=str(tmp_path / "data"),
    )
    done = run_worker(env)
    assert done.returncode == 1
    err = done.stderr
    assert err.count("ha-ingestor cannot start") == 1
    assert "WORKER_HOLD_TIMEOUT: 20 s is too short" in err
    assert "and fix the rules file: HA_INGESTOR_CONFIG" in err
    assert "incldue: unknown option; did you mean include?" in err
    assert "precision: 'h' is not one of ns, us, ms, s" in err
    assert "Traceback" not in done.stdout + err
    assert "celery@" not in done.stdout, "refused before the banner"


def test_bad_rules_alone_refuse_the_start(redis_url: str, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("tags: [not, a, mapping]\n", encoding="utf-8")
    env = app_env(CELERY_BROKER_URL=redis_url, HA_INGESTOR_CONFIG=str(rules))
    done = run_worker(env)
    assert done.returncode == 1
    assert "ha-ingestor cannot start, fix the rules file: HA_INGESTOR_CONFIG" in done.stderr
    assert "tags: expected a mapping of tag: value" in done.stderr
    assert "Traceback" not in done.stderr


def test_invalid_settings_refuse_the_start_with_their_message() -> None:
    done = run_worker(app_env(INFLUXDB_API_VERSION="3", HEALTH_WINDOW="5"))
    assert done.returncode == 1
    assert "ha-ingestor cannot start, fix these settings" in done.stderr
    assert "INFLUXDB_API_VERSION: must be 1" in done.stderr
    assert "HEALTH_WINDOW" in done.stderr
    assert "Traceback" not in done.stderr
    assert "Unable to load celery application" not in done.stderr


def test_a_started_worker_takes_with_the_bulk_taker_and_batches_as_configured(
    redis_url: str, influx_db: InfluxDatabase, tmp_path: Path
) -> None:
    """The consumer step's Redis taker registers in Redis, and BATCH_INTERVAL flushes a lone
    event."""
    settings = {
        "CELERY_BROKER_URL": redis_url,
        "INFLUXDB_URL": influx_db.url,
        "INFLUXDB_DATABASE": influx_db.name,
        "BATCH_SIZE": "500",
        "BATCH_INTERVAL": "0.2",
        "DATA_DIR": str(tmp_path / "data"),
    }
    worker = AppProcess("worker", worker_argv(), app_env(**settings), tmp_path).start()
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        consumers = wait_until(
            lambda: client.hgetall(broker_consumers()), timeout=30, message="the worker consuming"
        )
        assert list(consumers.values()) == ["ha_events"]
        app = create_app(load_settings(celery_broker_url=redis_url))
        event = {
            "event_type": "state_changed",
            "data": {
                "entity_id": "sensor.lone",
                "new_state": {
                    "entity_id": "sensor.lone",
                    "state": "21.5",
                    "attributes": {},
                    "last_updated": "2026-01-01T00:00:00+00:00",
                },
            },
        }
        message = {"event": event, "received_at": time.time(), "source": "live", "seq": 1}
        app.send_task(INGEST_TASK, args=[message])
        rows = wait_until(
            lambda: influx_db.query('SELECT value FROM "sensor.lone"'),
            timeout=20,
            message="a lone event written after BATCH_INTERVAL, not after BATCH_SIZE events",
        )
        assert [row["value"] for row in rows] == [21.5]
    finally:
        assert worker.stop() == 0, worker.log_text()
        client.close()
    log = worker.log_text()
    assert "worker ready to write to database" in log
    assert "batches of 500 events or 0.2 s" in log
