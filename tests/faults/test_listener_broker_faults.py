"""The listener when the broker fails, with real processes: down, slow or hanging, and the
listener killed or stopped meanwhile. Nothing HA sends is lost."""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import datetime
from pathlib import Path

import pytest
import redis

from config.redis_keys import RedisKeys
from devtools.local_servers import RedisServer
from tests.expectations import ha_states
from tests.helpers import InfluxDatabase, wait_until
from tests.sim_thread import SimulatorThread
from tests.stack import TOKEN, Stack, assert_everything_landed
from tests.tcp_proxy import SlowProxy

pytestmark = pytest.mark.faults

FAST_REDELIVERY = {
    # hold limit 16/2 - (0.5 + 2 + 2 + 6 x 0.5) = 0.5 s
    "WORKER_HOLD_TIMEOUT": "16",
    "INFLUXDB_TIMEOUT": "2",
    "WRITE_RETRY_MAX_DELAY": "2",
    "REDIS_SOCKET_TIMEOUT": "0.5",
}
"""Messages a worker held when the broker went away come back after 16 s, not an hour."""


def _written(url: str) -> int:
    try:
        return int(redis.Redis.from_url(url).get(RedisKeys().counter("written")) or 0)
    except redis.RedisError:
        return 0


def test_broker_down_for_20_seconds_loses_nothing(
    tmp_path: Path, own_redis: RedisServer, influx_db: InfluxDatabase
) -> None:
    rate, outage_s = 200, 20
    record = tmp_path / "sent.jsonl"
    sim = SimulatorThread(
        token=TOKEN, rate=rate, events=rate * 30, entities=30, record_path=record
    ).start(paused=True)
    # A worker's messages taken before the outage are redelivered after the visibility timeout.
    stack = Stack(tmp_path, sim, own_redis.url, influx_db, FAST_REDELIVERY)
    try:
        initial = ha_states(sim.sim.url, TOKEN)
        stack.start_worker()
        stack.start_listener()
        stack.wait_ready(len(initial))
        sim.do(sim.sim.resume_events)
        wait_until(lambda: _written(own_redis.url) >= 500, 20, message="events flowing")
        own_redis.stop()
        # The outage lasts as long as HA takes to send outage_s seconds of events.
        wait_until(
            lambda: stack.health()["listener"]["spool_depth"] >= rate * outage_s,
            outage_s + 20,
            interval=0.2,
            message=f"{outage_s} s of events spooled",
        )
        assert stack.health()["status"] != "healthy"
        own_redis.start()
        sim.call(sim.sim.wait_done(), timeout=60)
        expected, found = assert_everything_landed(influx_db, initial, record, 90)
        assert expected == found
        wait_until(lambda: stack.health()["listener"]["spool_depth"] == 0, 20)
    finally:
        codes = stack.stop()
        sim.stop()
    assert set(codes.values()) == {0}, stack.logs()


def test_a_killed_listener_drains_its_spool_and_fills_its_gap_on_restart(
    tmp_path: Path, own_redis: RedisServer, influx_db: InfluxDatabase
) -> None:
    rate = 200
    record = tmp_path / "sent.jsonl"
    sim = SimulatorThread(
        token=TOKEN, rate=rate, events=rate * 20, entities=30, record_path=record
    ).start(paused=True)
    stack = Stack(tmp_path, sim, own_redis.url, influx_db, FAST_REDELIVERY)
    try:
        initial = ha_states(sim.sim.url, TOKEN)
        stack.start_worker()
        listener = stack.start_listener()
        stack.wait_ready(len(initial))
        sim.do(sim.sim.resume_events)
        wait_until(lambda: _written(own_redis.url) >= 300, 20, message="events flowing")
        own_redis.stop()
        wait_until(lambda: stack.health()["listener"]["spool_depth"] >= 600, 20, message="spooling")
        listener.kill()
        received_before = sim.do(lambda: sim.sim.events_emitted)
        # HA goes on while no listener runs: the restart must backfill these from history.
        wait_until(lambda: sim.do(lambda: sim.sim.events_emitted) >= received_before + 400, 10)
        own_redis.start()
        stack.start_listener()
        sim.call(sim.sim.wait_done(), timeout=60)
        assert_everything_landed(influx_db, initial, record, 90)
        health = stack.health()
        assert health["listener"]["spool_depth"] == 0
    finally:
        stack.stop()
        sim.stop()


def test_sigkill_while_the_broker_hangs_loses_nothing_held_in_memory(
    tmp_path: Path, own_redis: RedisServer, redis_url: str, influx_db: InfluxDatabase
) -> None:
    """The gap starts at the newest event durably handed off.

    The broker hangs (SIGSTOP: connections open, no answer), so events pile up in memory and
    in a publish that does not return; SIGKILL then loses them all. The restart backfills from
    the state file's watermark, older than every one of them, and the simulator's history
    gives them back. A publish gives up after LISTENER_BROKER_TIMEOUT (5 s by default, then
    memory goes to the spool): raised to 20 s here, so more than the 5 s overlap of the
    backfill (which hid the loss before) is held in memory.
    """
    rate = 200
    record = tmp_path / "sent.jsonl"
    sim = SimulatorThread(
        token=TOKEN, rate=rate, events=rate * 40, entities=30, record_path=record
    ).start(paused=True)
    stack = Stack(tmp_path, sim, own_redis.url, influx_db, FAST_REDELIVERY)
    state_file = tmp_path / "data" / "listener-state.json"
    hung = False
    try:
        initial = ha_states(sim.sim.url, TOKEN)
        stack.start_worker()
        # The listener's own state store stays up: only its broker hangs.
        listener = stack.start_listener(REDIS_URL=redis_url, LISTENER_BROKER_TIMEOUT="20")
        stack.wait_ready(len(initial))
        sim.do(sim.sim.resume_events)
        wait_until(lambda: _written(own_redis.url) >= 300, 20, message="events flowing")
        assert own_redis.pid is not None
        os.kill(own_redis.pid, signal.SIGSTOP)
        hung = True
        hung_at = time.monotonic()
        wait_until(
            lambda: stack.health()["listener"]["memory_queue_depth"] >= rate * 8,
            20,
            interval=0.2,
            message="more than 5 s of events in memory",
        )
        held = stack.health()["listener"]["memory_queue_depth"]
        received = stack.health()["subscription"]["total_events_received"]
        listener.kill()
        hung_s = time.monotonic() - hung_at
        mark = json.loads(state_file.read_text())["handed_off_through"]
        newest_sent = sim.do(lambda: sim.sim.home.last_timestamp_us) / 1e6
        lag_s = newest_sent - datetime.fromisoformat(mark).timestamp()
        assert lag_s > 5, "the saved mark is older than everything memory held"
        emitted = sim.do(lambda: sim.sim.events_emitted)
        wait_until(lambda: sim.do(lambda: sim.sim.events_emitted) >= emitted + 400, 10)
        os.kill(own_redis.pid, signal.SIGCONT)
        hung = False
        stack.start_listener(REDIS_URL=redis_url)
        sim.call(sim.sim.wait_done(), timeout=60)
        expected, found = assert_everything_landed(influx_db, initial, record, 120)
        print(
            f"SIGKILL with the broker hung {hung_s:.1f} s: {held} events in memory of "
            f"{received} received; saved mark {lag_s:.1f} s behind the newest sent; "
            f"{expected} points expected, {found} found"
        )
    finally:
        if hung and own_redis.pid is not None:
            os.kill(own_redis.pid, signal.SIGCONT)
        stack.stop()
        sim.stop()


def test_sigterm_flushes_memory_and_exits_0(
    tmp_path: Path, own_redis: RedisServer, influx_db: InfluxDatabase
) -> None:
    record = tmp_path / "sent.jsonl"
    sim = SimulatorThread(token=TOKEN, rate=500, events=1000, record_path=record).start(paused=True)
    stack = Stack(tmp_path, sim, own_redis.url, influx_db)
    try:
        initial = ha_states(sim.sim.url, TOKEN)
        listener = stack.start_listener()
        stack.wait_ready(len(initial))
        own_redis.stop()
        sim.do(sim.sim.resume_events)
        sim.call(sim.sim.wait_done(), timeout=30)
        wait_until(lambda: stack.health()["subscription"]["total_events_received"] == 1000, 10)
        assert listener.proc is not None
        listener.proc.send_signal(signal.SIGTERM)
        assert listener.wait(15) == 0
        assert sim.do(lambda: sim.sim.subscriber_count) == 0
        own_redis.start()
        stack.start_worker()
        stack.start_listener()
        assert_everything_landed(influx_db, initial, record, 60)
    finally:
        stack.stop()
        sim.stop()


def test_a_slow_broker_never_gets_the_listener_cut_off_by_ha(
    tmp_path: Path, own_redis: RedisServer, influx_db: InfluxDatabase
) -> None:
    rate, seconds = 2000, 15
    record = tmp_path / "sent.jsonl"
    sim = SimulatorThread(
        token=TOKEN, rate=rate, events=rate * seconds, entities=100, record_path=record
    ).start(paused=True)
    proxy = SlowProxy(own_redis.port, delay=0.05).start()
    stack = Stack(tmp_path, sim, own_redis.url, influx_db)
    try:
        initial = ha_states(sim.sim.url, TOKEN)
        # Only the listener's broker is slow; its state store and the worker are not.
        listener = stack.start_listener(CELERY_BROKER_URL=proxy.url, REDIS_URL=own_redis.url)
        stack.wait_ready(len(initial))
        stack.start_worker()
        sim.do(sim.sim.resume_events)
        sim.call(sim.sim.wait_done(), timeout=seconds + 30)

        def all_read() -> bool:
            return bool(stack.health()["subscription"]["total_events_received"] >= rate * seconds)

        wait_until(all_read, 10, 0.2, message="the last events read")
        health = stack.health()
        assert health["subscription"]["total_events_received"] == rate * seconds
        assert health["listener"]["events_spooled"] > 0, "publishing fell behind and spooled"
        assert sim.do(lambda: sim.sim.clients_cut) == 0, "HA never cut the listener off"
        assert "disconnected" not in listener.log_text()
        assert_everything_landed(influx_db, initial, record, 240, interval=5)
    finally:
        stack.stop()
        proxy.stop()
        sim.stop()
