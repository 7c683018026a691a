"""The listener under faults, with real processes: nothing HA sends is lost (issue 3)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
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
    "CELERY_VISIBILITY_TIMEOUT": "10",
    "INFLUXDB_TIMEOUT": "2",
    "WRITE_RETRY_MAX_DELAY": "2",
}
"""Messages a worker held when the broker went away come back after 10 s, not an hour."""


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A broker this test may stop and start; it keeps its queue across restarts."""
    server = RedisServer(tmp_path / "redis", appendonly=True)
    server.start()
    yield server
    server.stop()


def _written(url: str) -> int:
    try:
        return int(redis.Redis.from_url(url).get(RedisKeys().counter("written")) or 0)
    except redis.RedisError:
        return 0


def test_a_wrong_token_stops_the_listener_at_once(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase
) -> None:
    sim = SimulatorThread(token=TOKEN).start()
    stack = Stack(tmp_path, sim, redis_url, influx_db)
    try:
        listener = stack.start_listener(HA_TOKEN="wrong-token-4242")
        code = listener.wait(5)
        log = listener.log_text()
        assert code != 0
        assert "HA_TOKEN" in log
        assert "auth_invalid" in log
        assert sim.do(lambda: sim.sim.auth_failures) == 1, "no second attempt"
        assert "wrong-token-4242" not in log
    finally:
        stack.stop()
        sim.stop()


def test_a_silent_ha_is_detected_by_the_heartbeat(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase
) -> None:
    sim = SimulatorThread(token=TOKEN, rate=20).start()
    stack = Stack(tmp_path, sim, redis_url, influx_db)
    try:
        listener = stack.start_listener()
        stack.wait_subscribed()
        # A hung HA: the socket stays open, but nothing comes, not even a pong.
        sim.do(sim.sim.pause_events)
        sim.do(sim.sim.set_answer_pings, False)
        wait_until(lambda: "no pong within" in listener.log_text(), 10, message="dead link seen")
        sim.do(sim.sim.set_answer_pings, True)
        sim.do(sim.sim.resume_events)
        wait_until(
            lambda: sim.do(lambda: sim.sim.clients_connected) >= 2 and stack.subscribed(),
            15,
            message="reconnected and subscribed again",
        )
        assert stack.health()["connection"]["reconnects"] >= 1
    finally:
        stack.stop()
        sim.stop()


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
    rate, seconds = 2000, 30
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


def test_ha_unreachable_for_a_while_is_backfilled_from_history(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase
) -> None:
    record = tmp_path / "sent.jsonl"
    sim = SimulatorThread(
        token=TOKEN,
        rate=200,
        events=4000,
        entities=30,
        record_path=record,
        recorder_commit_interval=1.0,
    ).start(paused=True)
    stack = Stack(tmp_path, sim, redis_url, influx_db)
    try:
        initial = ha_states(sim.sim.url, TOKEN)
        stack.start_worker()
        listener = stack.start_listener()
        stack.wait_ready(len(initial))
        sim.do(sim.sim.resume_events)
        wait_until(lambda: stack.health()["subscription"]["total_events_received"] >= 800, 20)
        # HA restarts: clients dropped (1006), unreachable for a while, its entities go on.
        sim.do(sim.sim.set_accepting, False)
        sim.call(sim.sim.drop_clients())
        missed_from = sim.do(lambda: sim.sim.events_emitted)
        wait_until(lambda: sim.do(lambda: sim.sim.events_emitted) >= missed_from + 1000, 20)
        sim.do(sim.sim.set_accepting, True)
        sim.call(sim.sim.wait_done(), timeout=60)
        assert_everything_landed(influx_db, initial, record, 90)
        health = stack.health()
        assert health["connection"]["reconnects"] >= 1
        log = listener.log_text()
        assert "connection closed (code 1006)" in log
        assert log.count("backfill: enqueued") >= 2, "asked again after the commit interval"
    finally:
        stack.stop()
        sim.stop()


def test_malformed_frames_are_counted_and_skipped(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase
) -> None:
    record = tmp_path / "sent.jsonl"
    sim = SimulatorThread(token=TOKEN, rate=100, events=600, record_path=record).start(paused=True)
    stack = Stack(tmp_path, sim, redis_url, influx_db)
    try:
        initial = ha_states(sim.sim.url, TOKEN)
        stack.start_worker()
        listener = stack.start_listener()
        stack.wait_ready(len(initial))
        subscription = stack.health()["subscription"]
        assert subscription["is_subscribed"]
        for frame in (
            "this is not JSON",
            "[1, 2, 3]",
            '"a string"',
            '{"type": "event", "id": 2, "event": "not an object"}',
            '{"id": 99999, "type": "something_new", "payload": {}}',
            '{"type": "result", "id": "not-a-number", "success": true}',
        ):
            sim.do(sim.sim.send_raw, frame)
        wait_until(lambda: stack.health()["listener"]["malformed_frames"] >= 4, 10)
        # A frame beyond the size limit: the connection is dropped, never the process.
        sim.do(sim.sim.send_raw, '{"type": "event", "id": 2, "junk": "' + "x" * (65 << 20) + '"}')
        wait_until(lambda: "too big" in listener.log_text(), 20, message="the giant frame seen")
        stack.wait_subscribed()
        sim.do(sim.sim.resume_events)
        sim.call(sim.sim.wait_done(), timeout=30)
        assert_everything_landed(influx_db, initial, record, 60)
        assert listener.running()
        log = listener.log_text()
        assert "frame is not JSON" in log
        assert "Traceback" not in log
    finally:
        stack.stop()
        sim.stop()
