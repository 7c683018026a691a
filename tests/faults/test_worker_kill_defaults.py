"""With DEFAULT settings: a SIGKILLed worker's taken messages are back in the queue
within 60 s, with no other worker running (beat's sweep gives them back), and a worker stuck
in InfluxDB retries far longer than its liveness timeout is never taken for dead."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import redis

from core.task_message import INGEST_TASK, TaskWire
from tests.expectations import state_events
from tests.helpers import wait_until
from tests.processes import AppProcess, app_env, beat_argv, worker_argv
from workers.consumers.bulk_queue import given_back, in_flight

pytestmark = pytest.mark.faults

QUEUE = "ha_events"


def _fill(client: redis.Redis, n: int) -> None:
    wire = TaskWire(INGEST_TASK, QUEUE, origin="gen1@test")
    raws = []
    for seq in range(n):
        state = {"entity_id": f"sensor.k{seq % 20}", "state": str(seq), "attributes": {},
                 "last_updated": 1_780_000_000 + seq}  # fmt: skip
        raws.append(wire.encode({"event": state_events([state])[0], "received_at": time.time(),
                                 "source": "live", "seq": seq}))  # fmt: skip
    client.lpush(QUEUE, *raws)


def test_with_default_settings_a_killed_workers_batch_is_back_within_60_s(
    redis_url: str, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(redis_url)
    _fill(client, 1500)
    # Defaults throughout; only where InfluxDB is: nowhere, so the worker holds its batch.
    env = app_env(CELERY_BROKER_URL=redis_url, INFLUXDB_URL="http://127.0.0.1:9",
                  DATA_DIR=str(tmp_path / "data"))  # fmt: skip
    worker = AppProcess("worker", worker_argv(), env, tmp_path).start()
    beat = AppProcess("beat", beat_argv(tmp_path / "beat-schedule"), env, tmp_path).start()
    try:
        wait_until(lambda: sum(in_flight(client).values()) == 1000, 30, 0.05,
                   message="the worker holding a batch of BATCH_SIZE")  # fmt: skip
        os.kill(worker.pid, signal.SIGKILL)
        killed = time.monotonic()
        wait_until(lambda: client.llen(QUEUE) == 1500, 90, 0.1,
                   message="the killed worker's batch back in the queue")  # fmt: skip
        back = time.monotonic() - killed
        assert not any(in_flight(client).values())
        assert given_back(client) == 1000
        print(
            "\nFIGURES SIGKILL with default settings (liveness 20 s, beat every 5 s, no other "
            f"worker): 1000 taken messages back in the queue {back:.1f} s after the kill"
        )
        assert back <= 60
        assert "are back in the queue" in beat.log_text()
    finally:
        worker.stop()
        beat.stop()


def test_a_worker_stuck_in_retries_far_past_its_liveness_is_never_taken_for_dead(
    redis_url: str, tmp_path: Path
) -> None:
    """Lowered values: liveness 2 s, a batch held 12 s (6 liveness timeouts) by an unreachable
    InfluxDB, while a second worker sweeps every second: nothing is given back or taken twice."""
    client = redis.Redis.from_url(redis_url)
    _fill(client, 300)
    before = given_back(client)
    env = app_env(CELERY_BROKER_URL=redis_url, INFLUXDB_URL="http://127.0.0.1:9",
                  WORKER_LIVENESS_TIMEOUT="2", BATCH_SIZE="300", INFLUXDB_TIMEOUT="1",
                  WRITE_RETRY_MAX_DELAY="1")  # fmt: skip
    stuck = AppProcess("worker", worker_argv("stuck"), env, tmp_path).start()
    sweeper: AppProcess | None = None
    try:
        wait_until(lambda: sum(in_flight(client).values()) == 300, 30, 0.05,
                   message="the first worker holding every message")  # fmt: skip
        sweeper = AppProcess("worker", worker_argv("sweeper"), env, tmp_path).start()
        held_since = time.monotonic()
        wait_until(lambda: "bulk consumer" in sweeper.log_text(), 30, 0.1,
                   message="the second worker consuming")  # fmt: skip
        while time.monotonic() - held_since < 12:
            counts = in_flight(client)
            assert sorted(counts.values()) in ([0, 300], [300]), counts
            assert client.llen(QUEUE) == 0
            time.sleep(0.25)
        assert given_back(client) == before
        print("\nFIGURES a worker held its batch 12 s with liveness 2 s and a sweeping peer: "
              "0 messages given back, 300 still held by it alone")  # fmt: skip
    finally:
        stuck.stop()
        if sweeper is not None:
            sweeper.stop()
    assert client.llen(QUEUE) == 300, "stopping, the stuck worker handed every message back"
