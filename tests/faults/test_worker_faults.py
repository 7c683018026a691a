"""The workers under faults, with real processes: nothing InfluxDB could take is lost.

A real simulator feeds a real listener, which enqueues into Redis; real `celery worker`
processes write to an influxd this test owns, so it can stop it, pause it (SIGSTOP) and start it
again. Each test prints its figures (events sent, points found, dead letters, recovery time).
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from config.redis_keys import RedisKeys, broker_inflight
from core.transform import Point
from devtools.local_servers import InfluxDBServer, RedisServer, free_port
from tests.expectations import (
    SeriesKey,
    expected_points,
    ha_states,
    points_in_influx,
    recorded_events,
    state_events,
)
from tests.helpers import InfluxDatabase, InfluxQL, stored_arg, wait_until
from tests.processes import AppProcess, app_env, listener_argv, worker_argv
from tests.sim_thread import SimulatorThread
from workers.consumers.bulk_queue import given_back, in_flight

pytestmark = pytest.mark.faults

TOKEN = "worker-faults-token-0123456789"
KEYS = RedisKeys()


@pytest.fixture
def influx(tmp_path: Path) -> Iterator[tuple[InfluxDBServer, InfluxDatabase]]:
    """An influxd of this test's own, to stop and pause; same port across restarts."""
    server = InfluxDBServer(tmp_path / "influxdb")
    server.start()
    client = InfluxQL(server.url)
    client.results('CREATE DATABASE "home"')
    try:
        yield server, InfluxDatabase(url=server.url, name="home", client=client)
    finally:
        if server.pid is not None:
            os.kill(server.pid, signal.SIGCONT)  # in case a test left it paused
        server.stop()


@dataclass
class Run:
    """Simulator, listener and workers for one test, with the Redis they share."""

    tmp: Path
    redis_url: str
    influx: InfluxDatabase
    rate: float
    events: int
    settings: dict[str, str]
    sim: SimulatorThread = field(init=False)
    processes: list[AppProcess] = field(default_factory=list)
    initial: dict[SeriesKey, Point] = field(default_factory=dict)
    health_port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.record = self.tmp / "sent.jsonl"
        self.client = redis.Redis.from_url(self.redis_url)
        self.sim = SimulatorThread(
            token=TOKEN, rate=self.rate, events=self.events, entities=40, record_path=self.record
        ).start(paused=True)

    def env(self) -> dict[str, str]:
        return app_env(
            HA_URL=self.sim.sim.url,
            HA_TOKEN=TOKEN,
            CELERY_BROKER_URL=self.redis_url,
            INFLUXDB_URL=self.influx.url,
            INFLUXDB_DATABASE=self.influx.name,
            HEALTH_PORT=str(self.health_port),
            DATA_DIR=str(self.tmp / "data"),
            **self.settings,
        )

    def start(self, name: str, argv: list[str]) -> AppProcess:
        process = AppProcess(name, argv, self.env(), self.tmp).start()
        self.processes.append(process)
        return process

    def start_flowing(self, workers: int = 1) -> None:
        """Listener and workers up, the snapshot written, then the events flow."""
        for n in range(workers):
            self.start("worker", worker_argv(f"worker{n}"))
        self.start("listener", listener_argv())
        self.initial = expected_points(state_events(ha_states(self.sim.sim.url, TOKEN)))
        wait_until(lambda: self.counter("written") >= len(self.initial), 30, 0.2,
                   message="the listener's snapshot written")  # fmt: skip
        self.sim.do(self.sim.sim.resume_events)

    def counter(self, name: str) -> int:
        return int(self.client.get(KEYS.counter(name)) or 0)

    def expected(self) -> dict[SeriesKey, Point]:
        self.sim.call(self.sim.sim.wait_done(), timeout=120)
        return {**self.initial, **expected_points(recorded_events(self.record))}

    def wait_all_landed(self, expected: dict[SeriesKey, Point], timeout: float) -> float:
        """Wait until every expected point is in InfluxDB; returns when that was (monotonic)."""
        # InfluxDB itself is the judge; the written counter is statistics, not proof.
        wait_until(lambda: points_in_influx(self.influx).keys() >= expected.keys(), timeout,
                   1.0, message=f"{len(expected)} points in InfluxDB")  # fmt: skip
        return time.monotonic()

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.sim.stop()

    def logs(self) -> str:
        return "\n".join(f"== {p.log_path.name}\n{p.log_text()[-3000:]}" for p in self.processes)

    def health(self) -> dict[str, Any]:
        """The listener's /health (200 or 503, both with the report)."""
        url = f"http://127.0.0.1:{self.health_port}/health"
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                body: dict[str, Any] = json.load(reply)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        return body


def check_codes(health: dict[str, Any]) -> set[str]:
    return {check["code"] for check in health["checks"]}


def assert_exactly_once(influx: InfluxDatabase, expected: dict[SeriesKey, Point]) -> int:
    """Every expected point once per (series, time), nothing else; returns the rows found."""
    rows = influx.query("SELECT * FROM /.*/ GROUP BY *")
    found = {(r["domain"], r["entity_id"], int(r["time"])): r for r in rows}
    assert len(rows) == len(found), "one row per (entity, time): no second series for a point"
    assert found.keys() == expected.keys()
    for key, point in expected.items():
        for name, value in point.fields:
            if name in ("value", "state"):
                assert found[key][name] == value, (key, name)
    return len(rows)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def held_messages(client: redis.Redis) -> dict[str, list[dict[str, Any]]]:
    """Consumer id → the task arguments its bulk consumer took and has not finished."""
    return {
        consumer: [stored_arg(raw) for raw in client.lrange(broker_inflight(consumer), 0, -1)]
        for consumer, count in in_flight(client).items()
        if count
    }


def test_a_worker_killed_mid_batch_has_its_messages_redelivered(
    tmp_path: Path, redis_url: str, influx: tuple[InfluxDBServer, InfluxDatabase]
) -> None:
    """Lowered values (liveness 4 s); tests/faults/test_worker_kill_defaults.py runs the same
    with the defaults."""
    server, db = influx
    assert server.pid is not None
    run = Run(tmp_path, redis_url, db, rate=200, events=2400, settings={
        "WORKER_LIVENESS_TIMEOUT": "4",
        "INFLUXDB_TIMEOUT": "1.5",
        "WRITE_RETRY_MAX_DELAY": "1",
    })  # fmt: skip
    try:
        run.start_flowing()
        first = run.processes[0]
        wait_until(lambda: run.counter("written") >= len(run.initial) + 200, 30, 0.2,
                   message="events flowing into InfluxDB")  # fmt: skip
        os.kill(server.pid, signal.SIGSTOP)  # the next write hangs: the worker is mid-batch
        try:
            wait_until(lambda: "InfluxDB unavailable" in first.log_text(), 20, 0.2,
                       message="the worker stuck in a batch")  # fmt: skip
            held_by = wait_until(lambda: held_messages(run.client), 10, 0.1,
                                 message="messages the worker holds")  # fmt: skip
            ((consumer, held),) = held_by.items()
            first.kill()
            killed_at = time.monotonic()
        finally:
            os.kill(server.pid, signal.SIGCONT)
        run.start("worker", worker_argv())
        wait_until(lambda: consumer not in in_flight(run.client), 30, 0.1,
                   message="the killed worker's messages given back")  # fmt: skip
        redelivered_after = time.monotonic() - killed_at

        expected = run.expected()
        run.wait_all_landed(expected, timeout=60)
        rows = assert_exactly_once(db, expected)
        found = points_in_influx(db)
        held_points = expected_points([m["event"] for m in held])
        assert held_points
        assert held_points.keys() <= found.keys(), "what the killed worker held landed"
        assert run.client.xlen(KEYS.dead_letters()) == 0
        assert given_back(run.client) >= len(held)
        print(
            f"\nFIGURES worker SIGKILL mid-batch: events sent {len(recorded_events(run.record))} "
            f"+ snapshot {len(run.initial)}, points expected {len(expected)}, found {rows}; "
            f"messages held by the killed worker {len(held)}, back in the queue "
            f"{redelivered_after:.1f} s after the kill (liveness 4 s); dead letters 0"
        )
    except BaseException:
        print(run.logs())
        raise
    finally:
        run.stop()


def test_a_worker_stopped_during_an_outage_gives_its_batch_back_at_once(
    tmp_path: Path, redis_url: str, influx: tuple[InfluxDBServer, InfluxDatabase]
) -> None:
    """SIGTERM while a batch waits for InfluxDB: the worker exits promptly and the broker keeps
    the messages (rejected with requeue), so the next worker writes them."""
    from config.celery_app import create_app
    from config.settings import load_settings
    from core.task_message import INGEST_TASK

    server, db = influx
    env = app_env(CELERY_BROKER_URL=redis_url, INFLUXDB_URL=db.url, INFLUXDB_DATABASE=db.name,
                  WRITE_RETRY_MAX_DELAY="5")  # fmt: skip
    server.stop()
    first = AppProcess("worker", worker_argv(), env, tmp_path).start()
    second: AppProcess | None = None
    try:
        app = create_app(load_settings(celery_broker_url=redis_url))
        events = [
            state_events(
                [
                    {
                        "entity_id": f"sensor.s{i % 10}",
                        "state": str(i),
                        "attributes": {},
                        "last_updated": 1_780_000_000 + i,
                    }
                ]
            )[0]
            for i in range(300)
        ]
        with app.producer_or_acquire() as producer:
            for seq, event in enumerate(events):
                payload = {"event": event, "received_at": time.time(), "source": "live", "seq": seq}
                app.send_task(INGEST_TASK, args=[payload], producer=producer)
        client = redis.Redis.from_url(redis_url)
        wait_until(lambda: "InfluxDB unavailable" in first.log_text(), 20, 0.2,
                   message="a batch waiting for InfluxDB")  # fmt: skip
        stopping_at = time.monotonic()
        assert first.stop(timeout=20) == 0
        stop_s = time.monotonic() - stopping_at
        assert stop_s < 5, "the retry wait is cut short"
        assert "handed back to the broker unwritten (the worker is stopping)" in first.log_text()
        assert client.llen("ha_events") == 300, "every message back in the queue, none copied"
        server.start()
        second = AppProcess("worker", worker_argv(), env, tmp_path).start()
        wait_until(lambda: int(client.get(KEYS.counter("written")) or 0) >= 300, 30, 0.2,
                   message="300 points written by the next worker")  # fmt: skip
        assert len(db.query("SELECT * FROM /.*/ GROUP BY *")) == 300
        print(f"\nFIGURES worker stopped during an outage: exited in {stop_s:.1f} s, 300 of 300 "
              "messages requeued and written by the next worker")  # fmt: skip
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_after_a_broker_outage_a_lone_event_still_lands_within_a_second(
    tmp_path: Path, influx_db: InfluxDatabase
) -> None:
    """A broker reconnect restarts Celery's consumer and clears its timer, where the batch
    flush lives: the flush must be armed again, or a partial batch waits forever."""
    from config.celery_app import create_app
    from config.settings import load_settings
    from core.task_message import INGEST_TASK
    from devtools.local_servers import RedisServer

    broker = RedisServer(tmp_path / "redis", appendonly=True)
    broker.start()
    worker: AppProcess | None = None
    try:
        url = f"redis://127.0.0.1:{broker.port}/0"
        env = app_env(CELERY_BROKER_URL=url, INFLUXDB_URL=influx_db.url,
                      INFLUXDB_DATABASE=influx_db.name)  # fmt: skip
        worker = AppProcess("worker", worker_argv(), env, tmp_path).start()
        app = create_app(load_settings(celery_broker_url=url))
        client = redis.Redis.from_url(url)

        def send(seq: int) -> float:
            state = {"entity_id": "sensor.lone", "state": str(seq), "attributes": {},
                     "last_updated": 1_780_000_000 + seq}  # fmt: skip
            payload = {"event": state_events([state])[0], "received_at": time.time(),
                       "source": "live", "seq": seq}  # fmt: skip
            app.send_task(INGEST_TASK, args=[payload])
            return time.monotonic()

        sent_at = send(1)
        wait_until(lambda: client.get(KEYS.counter("written")) == b"1", 10, 0.02,
                   message="the first event written")  # fmt: skip
        broker.stop()
        broker.start()
        wait_until(lambda: "Connected to" in worker.log_text().split("broker lost")[-1], 30, 0.2,
                   message="the worker reconnected")  # fmt: skip
        sent_at = send(2)
        wait_until(lambda: client.get(KEYS.counter("written")) == b"2", 10, 0.02,
                   message="the lone event after the reconnect written")  # fmt: skip
        latency = time.monotonic() - sent_at
        print(f"\nFIGURES after a broker reconnect a lone event was written in {latency:.2f} s")
        assert latency < 1.0
    finally:
        if worker is not None:
            worker.stop()
        broker.stop()


def test_a_full_broker_drains_once_influxdb_is_back(
    tmp_path: Path, influx: tuple[InfluxDBServer, InfluxDatabase]
) -> None:
    """Redis with a small maxmemory and noeviction (what docs/operations.md
    recommends), InfluxDB down until the broker's memory passes BROKER_MEMORY_SPOOL_PERCENT
    (default 90%) and the listener spools, before Redis refuses anything; health says
    `broker_memory`. Then InfluxDB back: the spool drains, every event lands exactly once, and
    no one has to act. (Workers at a Redis that is really full: test_bulk_consumer.py.)"""
    server, db = influx
    broker = RedisServer(tmp_path / "full-redis", appendonly=True, extra_args=[
        "--maxmemory", "6mb", "--maxmemory-policy", "noeviction"])  # fmt: skip
    broker.start()
    rate = 500
    run = Run(tmp_path, broker.url, db, rate, events=rate * 24, settings={
        "INFLUXDB_TIMEOUT": "2", "WRITE_RETRY_MAX_DELAY": "2"})  # fmt: skip
    try:
        run.start_flowing(workers=1)
        server.stop()
        listener = run.processes[-1]
        wait_until(lambda: "the broker's memory is at" in listener.log_text(), 60, 0.2,
                   message="the broker at its memory threshold, the listener spooling")  # fmt: skip
        full_at = time.monotonic()
        wait_until(lambda: "broker_memory" in check_codes(run.health()), 10, 0.2,
                   message="health says broker_memory")  # fmt: skip
        health = run.health()
        assert health["listener"]["broker_full"] is True
        assert health["listener"]["spool_depth"] > 0
        memory = run.client.info("memory")
        used, limit = int(memory["used_memory"]), int(memory["maxmemory"])
        assert used < limit, "the listener stopped before Redis was full"
        run.client.lpush("probe", b"x" * 100)  # Redis still takes writes: room for the workers
        run.client.delete("probe")
        waiting = int(run.client.llen("ha_events"))
        held = sum(in_flight(run.client).values())
        expected = run.expected()  # the simulator has sent everything
        time.sleep(max(0.0, 3 - (time.monotonic() - full_at)))  # spooling a while
        server.start()
        up_at = time.monotonic()
        landed_at = run.wait_all_landed(expected, timeout=120)
        rows = assert_exactly_once(db, expected)
        drained = "spool drained" in listener.log_text()
        print(
            f"\nFIGURES broker at its memory threshold (maxmemory 6 MB, noeviction, used "
            f"{used / 2**20:.1f} MB = {100 * used / limit:.0f}%): "
            f"events sent {len(recorded_events(run.record))} + snapshot {len(run.initial)}, "
            f"points expected {len(expected)}, points found {rows}; at the full mark "
            f"{waiting} waiting + {held} in flight, the listener spooling; all landed "
            f"{landed_at - up_at:.1f} s after InfluxDB came back; spool drained: {drained}"
        )
        assert drained
        assert rows == len(expected)
        wait_until(lambda: run.health()["listener"]["broker_full"] is False, 10, 0.2,
                   message="the listener publishing again")  # fmt: skip
    except BaseException:
        print(run.logs())
        raise
    finally:
        run.stop()
        broker.stop()


def test_events_held_by_an_outage_land_within_2_s_of_influxdb_coming_back(
    tmp_path: Path, redis_url: str, influx: tuple[InfluxDBServer, InfluxDatabase]
) -> None:
    """Default retry settings (WRITE_RETRY_MAX_DELAY 30 s): after a 9 s outage the backoff
    has grown to several seconds, yet the worker, probing InfluxDB while it waits, writes the
    ~2,000 held events within 2 s of InfluxDB's return, each once."""
    server, db = influx
    run = Run(tmp_path, redis_url, db, rate=500, events=2000, settings={})
    try:
        run.start("worker", worker_argv())
        run.start("listener", listener_argv())
        run.initial = expected_points(state_events(ha_states(run.sim.sim.url, TOKEN)))
        wait_until(lambda: run.counter("written") >= len(run.initial), 30, 0.2,
                   message="the listener's snapshot written")  # fmt: skip
        server.stop()
        down_at = time.monotonic()
        run.sim.do(run.sim.sim.resume_events)
        expected = run.expected()  # every event sent while InfluxDB is down
        wait_until(lambda: "InfluxDB unavailable" in run.processes[0].log_text(), 20, 0.2,
                   message="the worker waiting for InfluxDB")  # fmt: skip
        time.sleep(max(0.0, 9 - (time.monotonic() - down_at)))  # the outage lasts 9 s
        held = run.client.llen("ha_events") + sum(in_flight(run.client).values())
        server.start()
        up_at = time.monotonic()
        wait_until(lambda: points_in_influx(db).keys() >= expected.keys(), 30, 0.05,
                   message=f"{len(expected)} points in InfluxDB")  # fmt: skip
        landed_after = time.monotonic() - up_at
        rows = assert_exactly_once(db, expected)
        print(
            f"\nFIGURES outage of {up_at - down_at:.1f} s with default retry settings: "
            f"{len(recorded_events(run.record))} events sent during it ({held} held at the "
            f"return), points expected {len(expected)}, found {rows}; the last landed "
            f"{landed_after:.2f} s after InfluxDB came back"
        )
        assert landed_after < 2.0
    except BaseException:
        print(run.logs())
        raise
    finally:
        run.stop()
