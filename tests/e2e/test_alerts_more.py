"""The alert conditions tests/e2e/test_alerts.py does not reach, brought about for real too.

A second, smaller stack (simulator, listener, worker, Prometheus; beat only from the second
test) that owns its state Redis (to stop it) and logs in with HA_TOKEN_FILE (to replace the
token). Each condition is made the way it happens: beat not yet started, the state Redis
stopped, a refused token, an event type HA refuses, a spool row that cannot be read back, a
worker paced by a slow InfluxDB, a broker too full to take events, a second HA without
recorder flooding a 1 MB spool. Then /health, /metrics, the status page, `ha-ingestor status`
and Prometheus must agree (tests/e2e/alert_stack.py).

`listener_stale` has no alert (see tests/unit/deploy/test_alert_rules.py). `spool_disk` is seen
degraded past 80% of SPOOL_MAX_MB, then unhealthy once the spool refuses a batch (reading from
HA pauses).
"""

from __future__ import annotations

import os
import signal
import sqlite3
from collections.abc import Iterator

import pytest
import redis

from devtools.local_servers import InfluxDBServer, RedisServer
from tests.e2e.alert_stack import TOKEN, Stack
from tests.helpers import wait_until
from tests.sim_thread import SimulatorThread
from tests.tcp_proxy import SlowProxy

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, influxdb_server: InfluxDBServer
) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("alerts-more")
    broker = RedisServer(tmp / "broker", appendonly=True)
    state = RedisServer(tmp / "state", appendonly=True)
    broker.start()
    state.start()
    sim = SimulatorThread(token=TOKEN, rate=20, entities=30).start()
    token_file = tmp / "ha-token"
    token_file.write_text(TOKEN, "utf-8")
    stack = Stack(
        tmp, sim, broker, influxdb_server, state.url,
        database="alerts_more", token_file=token_file, state=state,
    )  # fmt: skip
    try:
        for name in ("worker", "listener"):  # beat not yet: the first test wants it missing
            stack.start(name)
        stack.start_prometheus()
        yield stack
    finally:
        stack.stop_all()
        sim.stop()
        broker.stop()
        state.stop()


# --- the conditions, in order: each leaves the next a known state ------------------------------


def test_beat_not_yet_run(stack: Stack) -> None:
    """A fresh installation whose beat never ran: no pipeline figures at all."""
    assert stack.agree("beat_missing", 30) == "degraded"
    stack.start("beat")
    stack.wait_healthy(40)


def test_state_redis_stopped(stack: Stack) -> None:
    """The broker stays up; the Redis of state (REDIS_URL) is gone."""
    assert stack.state is not None
    stack.state.stop()
    try:
        assert stack.agree("redis_unreadable", in_status=False) == "degraded"
        done = stack.status_run()  # it reads that Redis itself: no report, exit code 3
        assert done.returncode == 3, done.stdout
        assert "cannot read Redis" in done.stderr
        assert "check REDIS_URL" in done.stderr
    finally:
        stack.state.start()
    stack.wait_healthy()


def test_a_refused_token(stack: Stack) -> None:
    """HA refuses the token; a new one in HA_TOKEN_FILE and SIGHUP recover, no restart."""
    assert stack.token_file is not None
    stack.stop("listener")
    stack.token_file.write_text("a-revoked-token-000000", "utf-8")
    listener = stack.start("listener")
    try:
        assert stack.agree("auth_invalid") == "unhealthy"
        assert stack.sim.do(lambda: stack.sim.sim.auth_failures) == 1
    finally:
        stack.token_file.write_text(TOKEN, "utf-8")
    os.kill(listener.pid, signal.SIGHUP)
    stack.wait_healthy()
    assert listener.running()


def test_a_refused_event_type(stack: Stack) -> None:
    """HA refuses one of HA_EVENT_TYPES (as for a non-admin token); the others are recorded."""
    stack.sim.do(stack.sim.sim.refuse_subscriptions, frozenset({"call_service"}))
    stack.settings["HA_EVENT_TYPES"] = "state_changed,call_service"
    stack.stop("listener")
    listener = stack.start("listener")
    try:
        assert stack.agree("subscriptions_missing") == "degraded"
        assert "HA refused the subscription to call_service" in listener.log_text()
        subscribed = stack.health()[1]["subscription"]["event_types"]
        assert "state_changed" in subscribed
        assert "call_service" not in subscribed
    finally:
        del stack.settings["HA_EVENT_TYPES"]
        stack.stop("listener")
        stack.start("listener")
    stack.wait_healthy()


def test_an_unreadable_spool_row(stack: Stack) -> None:
    """A row the listener cannot read back (text, not broker bytes) waits in its spool."""
    path = stack.tmp / "data" / "spool" / "events.sqlite3"
    stack.stop("listener")
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO spool (body) VALUES (?)", ('{"event": "torn',))
    db.close()
    stack.start("listener")
    assert stack.agree("spool_quarantine") == "degraded"
    stack.stop("listener")
    with sqlite3.connect(path) as db:
        reasons = db.execute("SELECT reason FROM quarantine").fetchall()
        assert reasons == [("the row is not bytes",)]
        db.execute("DELETE FROM quarantine")  # what the reason tells the user to do
    db.close()
    stack.start("listener")
    stack.wait_healthy()


def test_workers_behind_a_slow_influxdb(stack: Stack) -> None:
    """Writes go on, slower than events come: events wait longer and longer (not stalled)."""
    proxy = SlowProxy(stack.influx.port, delay=0.5).start()
    stack.stop("worker")
    stack.start("worker", INFLUXDB_URL=f"http://127.0.0.1:{proxy.port}", BATCH_SIZE="5")
    try:
        assert stack.agree("queue_age") == "degraded"
        assert "stalled" not in stack.checks()
    finally:
        stack.stop("worker")
        proxy.stop()
        stack.start("worker")
    stack.wait_healthy(40)


def test_a_full_broker_keeps_events_in_the_spool(stack: Stack) -> None:
    """Above BROKER_MEMORY_SPOOL_PERCENT the listener spools; the spool cannot drain."""
    stack.stop("worker")
    with redis.Redis.from_url(stack.broker.url) as broker:
        wait_until(lambda: broker.llen("ha_events") >= 20, 10, 0.2, "events waiting")
        used = int(broker.info("memory")["used_memory"])
        broker.config_set("maxmemory", int(used / 0.95))
    assert stack.agree("spool_draining") == "degraded"
    assert stack.agree("broker_memory") == "degraded"


def test_a_second_ha_without_recorder_fills_a_small_spool(stack: Stack) -> None:
    """The broker still full: a busy HA without recorder, SPOOL_MAX_MB=1 filling up."""
    busy = SimulatorThread(token=TOKEN, rate=200, entities=30, recorder=False).start()
    try:
        stack.stop("listener")
        listener = stack.start("listener", HA_URL=busy.sim.url, SPOOL_MAX_MB="1")
        # The restart has a gap to fill: the listener asks HA's history and learns it is off.
        assert stack.agree("no_recorder") == "degraded"
        wait_until(lambda: "spool_disk" in stack.checks(), 30, 0.2, "spool_disk (past 80%)")
        wait_until(lambda: "reached its limit" in listener.log_text(), 15, 0.3, "a full spool")
        assert stack.agree("spool_disk", 15, severity="unhealthy") == "unhealthy"
    finally:
        busy.stop()
        with redis.Redis.from_url(stack.broker.url) as broker:
            broker.config_set("maxmemory", 0)
        stack.stop("listener")
        stack.start("listener")
        stack.start("worker")
    stack.wait_healthy(60)
