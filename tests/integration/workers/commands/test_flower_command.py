"""`ha-ingestor flower` against the test broker and a real worker running with events (-E)."""

from __future__ import annotations

import ast
import base64
import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from config.celery_app import create_app
from config.settings import load_settings
from core.task_message import INGEST_TASK, TaskMessage
from devtools.local_servers import free_port
from tests.helpers import InfluxDatabase, wait_until
from tests.processes import BIN, AppProcess, app_env, worker_argv
from workers.batch_events import BATCH_TASK
from workers.commands.flower_command import is_loopback

pytestmark = pytest.mark.integration

USER, PASSWORD = "operator", "flower-pw-5b1e7c"


def flower(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "ha-ingestor"), "flower"], env=env, capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize(
    ("address", "loopback"),
    [("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("", False), ("::", False), ("192.0.2.10", False), ("ha.lan", False)],
)  # fmt: skip
def test_what_counts_as_loopback(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


@pytest.mark.parametrize("address", ["0.0.0.0", ""])
def test_refuses_to_serve_beyond_loopback_without_auth(address: str, tmp_path: Path) -> None:
    env = app_env(FLOWER_ADDRESS=address, FLOWER_PORT=str(free_port()), DATA_DIR=str(tmp_path))
    done = flower(env)
    assert done.returncode == 2
    assert "refusing to serve" in done.stderr
    assert "FLOWER_BASIC_AUTH=user:password" in done.stderr


def api(port: int, path: str, auth: str | None = f"{USER}:{PASSWORD}") -> tuple[int, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            body = reply.read()
            return reply.status, json.loads(body) if path.startswith("/api") else body
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except OSError:
        return 0, None


def test_flower_reads_workers_queues_and_tasks(
    redis_url: str, influx_db: InfluxDatabase, tmp_path: Path
) -> None:
    port = free_port()
    env = app_env(
        CELERY_BROKER_URL=redis_url,
        INFLUXDB_URL=influx_db.url,
        INFLUXDB_DATABASE=influx_db.name,
        DATA_DIR=str(tmp_path / "data"),
        FLOWER_ADDRESS="0.0.0.0",  # beyond loopback: allowed because auth is set
        FLOWER_PORT=str(port),
        FLOWER_BASIC_AUTH=f"{USER}:{PASSWORD}",
    )
    worker = AppProcess("worker", [*worker_argv("flowertest"), "-E"], env, tmp_path).start()
    server = AppProcess("flower", [str(BIN / "ha-ingestor"), "flower"], env, tmp_path).start()
    try:
        wait_until(lambda: api(port, "/healthcheck", None)[0] == 200, 30, 0.2, "Flower up")
        assert api(port, "/api/workers", auth=None)[0] == 401
        assert api(port, "/api/workers", auth=f"{USER}:wrong")[0] == 401

        workers = wait_until(
            lambda: api(port, "/api/workers?refresh=1")[1], 30, 0.5, "a worker in Flower"
        )
        name = next(iter(workers))
        assert name.startswith("flowertest-")
        # The bulk consumer (workers/consumers/bulk_consumer.py) takes ha_events itself, not
        # Celery's task consumer, so the worker lists no active queue; Flower then reads the lengths
        # of the app's default queue, ha_events.
        assert workers[name]["active_queues"] == []

        code, lengths = api(port, "/api/queues/length")
        assert code == 200
        assert {q["name"]: q["messages"] for q in lengths["active_queues"]} == {"ha_events": 0}

        app = create_app(load_settings(celery_broker_url=redis_url))
        event = {"event_type": "state_changed", "time_fired": "2024-03-01T12:00:00+00:00",
                 "data": {"entity_id": "sensor.flower", "new_state": {
                     "entity_id": "sensor.flower", "state": "21.5", "attributes": {},
                     "last_updated": "2024-03-01T12:00:00+00:00"}}}  # fmt: skip
        app.send_task(INGEST_TASK, args=[TaskMessage(event, time.time(), "live", 1).to_json()])
        wait_until(lambda: influx_db.query('SELECT * FROM "sensor.flower"'), 20, 0.2, "written")
        # The task view answers; celery-batches hands messages to the task in batches without
        # per-message task events, so ingest tasks are not listed one by one.
        code, tasks = api(port, "/api/tasks")
        assert code == 200
        assert isinstance(tasks, dict)
    finally:
        server.stop()
        worker.stop()
    assert server.proc is not None
    assert server.proc.returncode == 0, server.log_text()[-3000:]
    # --persistent: the state survives in DATA_DIR (a dbm file; its suffix depends on the dbm).
    assert list((tmp_path / "data").glob("flower.db*")), server.log_text()[-3000:]


@pytest.mark.parametrize("bulk_take", ["true", "false"])  # the bulk consumer, celery-batches
def test_flower_lists_each_written_batch_with_its_count_and_outcome(
    redis_url: str, influx_db: InfluxDatabase, tmp_path: Path, bulk_take: str
) -> None:
    """One task per batch (not per message), enabled by Flower itself."""
    port = free_port()
    env = app_env(
        CELERY_BROKER_URL=redis_url,
        INFLUXDB_URL=influx_db.url,
        INFLUXDB_DATABASE=influx_db.name,
        DATA_DIR=str(tmp_path / "data"),
        FLOWER_PORT=str(port),
        FLOWER_BASIC_AUTH=f"{USER}:{PASSWORD}",
        BATCH_SIZE="50",
        BATCH_INTERVAL="0.2",
        WORKER_BULK_TAKE=bulk_take,
    )
    # No -E: the worker sends task events once Flower enables them (it repeats enable_events).
    worker = AppProcess("worker", worker_argv("batches"), env, tmp_path).start()
    server = AppProcess("flower", [str(BIN / "ha-ingestor"), "flower"], env, tmp_path).start()
    sent = 120
    try:
        wait_until(lambda: api(port, "/healthcheck", None)[0] == 200, 30, 0.2, "Flower up")
        wait_until(lambda: "enabled by remote" in worker.log_text(), 30, 0.2, "events enabled")
        app = create_app(load_settings(celery_broker_url=redis_url))
        for n in range(sent):
            moment = f"2024-03-01T12:{n // 60:02d}:{n % 60:02d}+00:00"
            event = {"event_type": "state_changed", "time_fired": moment,
                     "data": {"entity_id": "sensor.batch", "new_state": {
                         "entity_id": "sensor.batch", "state": str(n), "attributes": {},
                         "last_updated": moment}}}  # fmt: skip
            app.send_task(INGEST_TASK, args=[TaskMessage(event, time.time(), "live", n).to_json()])
        wait_until(
            lambda: len(influx_db.query('SELECT * FROM "sensor.batch"')) == sent, 30, 0.2, "written"
        )

        def batches() -> list[dict[str, Any]]:
            code, tasks = api(port, f"/api/tasks?taskname={BATCH_TASK}")
            assert code == 200
            found = list(tasks.values())
            counts = [ast.literal_eval(t["kwargs"])["events"] for t in found]
            done = all(t["state"] in ("SUCCESS", "FAILURE") for t in found)
            return found if done and sum(counts) == sent else []

        found = wait_until(batches, 20, 0.3, f"batches of {sent} events in Flower")
        assert 2 <= len(found) < sent, "one task per batch, not per message"
        for task in found:
            events = ast.literal_eval(task["kwargs"])["events"]
            assert task["name"] == BATCH_TASK
            assert task["state"] == "SUCCESS"
            assert task["worker"].startswith("batches-")
            assert task["runtime"] > 0
            result = ast.literal_eval(task["result"])
            assert result["written"] == events
            assert result["handed_back"] == 0
            assert task["received"] <= task["started"] <= task["succeeded"]

        # Flower's own counters (its workers page and /metrics) count the batches too.
        code, metrics = api(port, "/metrics")
        assert code == 200
        succeeded = [
            s.value
            for family in text_string_to_metric_families(metrics.decode())
            for s in family.samples
            if s.name == "flower_events_total"
            and s.labels["type"] == "task-succeeded"
            and s.labels["task"] == BATCH_TASK
        ]
        assert succeeded == [len(found)]
        (tmp_path / "flower-batches.json").write_text(json.dumps(found, indent=1))

        code, lengths = api(port, "/api/queues/length")
        assert code == 200
        assert "ha_events" in {q["name"] for q in lengths["active_queues"]}
        code, page = api(port, "/broker")
        assert code == 200
        assert b"ha_events" in page, "the Broker tab does not show the ingest queue"
    finally:
        server.stop()
        worker.stop()
