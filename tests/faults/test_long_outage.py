"""Long outages and stores that stop answering, with real processes.

The long outage is scaled down to run in `make test`: MAX_EVENT_AGE 5 s instead of a day, a
dead-letter cap of 100 that would have deleted most of the outage's events before, InfluxDB
down 30 s at 50 events/s, two workers. A state Redis paused with SIGSTOP while a batch waits
shows that every blocking call of a worker has a deadline.
"""

from __future__ import annotations

import os
import re
import signal
import time
import urllib.request
from pathlib import Path

import pytest
import redis

from config.redis_keys import RedisKeys
from devtools.local_servers import InfluxDBServer, RedisServer
from tests.expectations import recorded_events
from tests.faults.test_worker_faults import Run, assert_exactly_once, check_codes, rss_mb
from tests.faults.test_worker_faults import influx as influx  # the fixture
from tests.helpers import InfluxDatabase, wait_until
from tests.processes import beat_argv
from workers.consumers.bulk_queue import given_back, in_flight
from workers.stores.dead_letters import TOO_OLD_DURING_OUTAGE

pytestmark = pytest.mark.faults

KEYS = RedisKeys()
HANDED_BACK = re.compile(r"(\d+) events handed back to the broker unwritten")
REPLAYED = re.compile(r"(\d+) events that waited too long during the outage were enqueued again")


def test_a_long_outage_scaled_down_loses_nothing_and_health_says_so(
    tmp_path: Path, own_redis: RedisServer, influx: tuple[InfluxDBServer, InfluxDatabase]
) -> None:
    server, db = influx
    broker = own_redis
    outage_s, rate = 30.0, 50
    run = Run(tmp_path, broker.url, db, rate, events=int(rate * (outage_s + 8)), settings={
        "MAX_EVENT_AGE": "5",
        "DEAD_LETTERS_MAX": "100",
        "WORKER_HOLD_TIMEOUT": "40",  # hold limit 40/2 - (0.5 + 2 + 2 + 6 x 0.5) = 12.5 s
        "INFLUXDB_TIMEOUT": "2",
        "WRITE_RETRY_MAX_DELAY": "2",
        "REDIS_SOCKET_TIMEOUT": "0.5",
        "BEAT_INTERVAL": "1",
        "HEALTH_QUEUE_MAX_AGE": "10",
        "HEALTH_WINDOW": "60",
    })  # fmt: skip
    try:
        run.start("beat", beat_argv(tmp_path / "beat-schedule"))
        run.start_flowing(workers=2)
        workers = run.processes[1:3]
        wait_until(lambda: run.counter("written") >= len(run.initial) + rate, 30, 0.2,
                   message="events flowing into InfluxDB")  # fmt: skip
        rss_before = max(rss_mb(w.pid) for w in workers)
        server.stop()
        down_at = time.monotonic()
        seen: dict[str, str] = {}
        while time.monotonic() - down_at < outage_s:
            for check in run.health()["checks"]:
                seen.setdefault(check["code"], check["message"])
            time.sleep(0.5)  # sampling what health shows during the outage, not awaiting
        outage_letters = int(run.client.xlen(KEYS.outage_letters()))
        metrics = metric_values(run.health_port)
        rss_during = max(rss_mb(w.pid) for w in workers)
        write_errors = run.counter("write_errors")
        server.start()
        up_at = time.monotonic()

        expected = run.expected()
        landed_at = run.wait_all_landed(expected, timeout=120)
        wait_until(lambda: run.client.xlen(KEYS.outage_letters()) == 0, 30, 0.5,
                   message="the outage store written")  # fmt: skip
        rows = assert_exactly_once(db, expected)
        too_old = run.counter(f"dead_lettered:{TOO_OLD_DURING_OUTAGE}")
        wait_until(lambda: "outage_store" not in check_codes(run.health()), 15, 0.5,
                   message="health no longer reports the outage store")  # fmt: skip
        replayed = sum(  # as the workers' AutoReplay reports it
            int(n) for w in workers for n in REPLAYED.findall(w.log_text())
        )
        handed_back = sum(w.log_text().count("handed back to the broker") for w in workers)
        print(
            f"\nFIGURES scaled long outage (InfluxDB down {outage_s:.0f} s at {rate}/s, "
            f"MAX_EVENT_AGE 5 s, DEAD_LETTERS_MAX 100): events sent "
            f"{len(recorded_events(run.record))} + snapshot {len(run.initial)}, points expected "
            f"{len(expected)}, points found {rows}; moved to the outage store {too_old} "
            f"({outage_letters} there at the end of the outage), dead letters dropped "
            f"{run.counter('dropped')}; replayed automatically {replayed}; failed write "
            f"attempts {write_errors}, batch hand-backs {handed_back}; 2 workers, largest RSS "
            f"{rss_before:.0f} -> {rss_during:.0f} MB; health during the outage: {sorted(seen)}; "
            f"all landed {landed_at - up_at:.1f} s after InfluxDB came back"
        )
        assert too_old > 100, "more events waited than the dead-letter cap: none was deleted"
        assert replayed >= too_old
        assert write_errors < outage_s * 4, "backoff, not a hot loop"
        assert rss_during - rss_before < 100, "memory bounded by the prefetch window"
        assert run.client.scard(KEYS.dead_letters_auto_replay()) == 0
        assert run.counter("dropped") == 0
        assert int(run.client.xlen(KEYS.dead_letters())) == 0
        assert {"write_errors", "outage_store", "stalled"} <= seen.keys(), seen
        assert "write them, oldest first" in seen["outage_store"]
        assert "dropping" not in seen
        assert "dead_letters" not in seen, "waiting out an outage is not a dead letter"
        assert metrics["ha_ingestor_outage_letters_stored"] > 100
        assert metrics["ha_ingestor_events_dropped_total"] == 0
        assert metrics['ha_ingestor_health_check{code="outage_store",severity="degraded"}'] == 1
    except BaseException:
        print(run.logs())
        raise
    finally:
        run.stop()


def metric_values(port: int) -> dict[str, float]:
    """The listener's /metrics as {name{labels}: value}, without the `instance` label every
    series carries (the home's name: one home here)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {
        _without_instance(name): float(value)
        for line in text.splitlines()
        if line and not line.startswith("#")
        for name, value in [line.rsplit(" ", 1)]
    }


def _without_instance(series: str) -> str:
    name, _, labels = series.partition("{")
    kept = [
        part for part in labels.rstrip("}").split(",") if part and not part.startswith("instance=")
    ]
    return f"{name}{{{','.join(kept)}}}" if kept else name


def test_a_paused_state_redis_mid_batch_hands_the_batch_back_within_the_hold_limit(
    tmp_path: Path, own_redis: RedisServer, influx: tuple[InfluxDBServer, InfluxDatabase]
) -> None:
    """The counters, the write error text and the dead letters live in the state Redis
    (REDIS_URL, here apart from the broker). Paused while a batch waits for InfluxDB, every
    call to it ends at REDIS_SOCKET_TIMEOUT: the batch goes back to the broker within the
    hold limit, the bulk consumer's liveness (on the broker) keeps others off its messages,
    and once both are back every point is written once."""
    server, db = influx
    broker = own_redis
    state = RedisServer(tmp_path / "state", appendonly=True)
    state.start()
    assert state.pid is not None
    hold_limit = 40 / 2 - (0.5 + 2 + 2 + 6 * 1.0)
    rate = 100
    run = Run(tmp_path, broker.url, db, rate, events=rate * 15, settings={
        "REDIS_URL": state.url,
        "WORKER_HOLD_TIMEOUT": "40",
        "INFLUXDB_TIMEOUT": "2",
        "WRITE_RETRY_MAX_DELAY": "2",
        "REDIS_SOCKET_TIMEOUT": "1",
        "WORKER_LIVENESS_TIMEOUT": "4",
    })  # fmt: skip
    run.client = state_client = redis.Redis.from_url(state.url)
    try:
        run.start_flowing(workers=1)
        worker = run.processes[0]
        wait_until(lambda: run.counter("written") >= len(run.initial) + rate, 30, 0.2,
                   message="events flowing into InfluxDB")  # fmt: skip
        server.stop()
        broker_client = redis.Redis.from_url(broker.url)
        wait_until(lambda: "retrying" in worker.log_text() and sum(
            in_flight(broker_client).values()) > 0, 20, 0.1,
            message="a batch held, waiting for InfluxDB")  # fmt: skip
        held_before = HANDED_BACK.findall(worker.log_text())
        os.kill(state.pid, signal.SIGSTOP)
        paused_at = time.monotonic()
        try:
            worst = hold_limit + 2 + 2 + 6 * 1.0  # the hold, and what it allows after it
            wait_until(lambda: len(HANDED_BACK.findall(worker.log_text())) > len(held_before),
                       worst, 0.1, message="the batch handed back, Redis paused")  # fmt: skip
            handed_back_after = time.monotonic() - paused_at
            wait_until(lambda: sum(in_flight(broker_client).values()) == 0 or len(
                HANDED_BACK.findall(worker.log_text())) > len(held_before) + 1, 10, 0.1,
                message="the hand-back finished on the broker")  # fmt: skip
        finally:
            os.kill(state.pid, signal.SIGCONT)
        server.start()
        expected = run.expected()
        run.wait_all_landed(expected, timeout=90)
        rows = assert_exactly_once(db, expected)
        wait_until(lambda: run.counter("written") >= len(expected), 20, 0.5,
                   message="the written counter caught up")  # fmt: skip
        written = run.counter("written")
        print(
            f"\nFIGURES state Redis SIGSTOPped mid-batch (REDIS_SOCKET_TIMEOUT 1 s, hold limit "
            f"{hold_limit:g} s): handed back {handed_back_after:.1f} s after the pause; points "
            f"expected {len(expected)}, found {rows}, written counter {written}; messages "
            f"swept from the worker {given_back(broker_client)}"
        )
        assert written == len(expected), "a message written twice would count twice"
        assert given_back(broker_client) in (None, 0), "nothing taken from a live worker"
    except BaseException:
        print(run.logs())
        raise
    finally:
        run.stop()
        state_client.close()
        if state.pid is not None:
            os.kill(state.pid, signal.SIGCONT)
        state.stop()
