"""The alert rules against a real stack and a real Prometheus.

One stack (simulator, listener, worker, beat, Flower, its own broker Redis and InfluxDB) with
a Prometheus scraping the listener and Flower every second and evaluating
deploy/prometheus/alerts.yml (its `for` durations set to 0 s: promtool's tests cover them).
Each condition is brought about for real — a worker, InfluxDB, the broker, HA's events, beat,
the listener stopped; a database that refuses points — and /health, /metrics, the status page,
`ha-ingestor status` and Prometheus's alerts must all say the same: the reason, by name, with
its severity. Thresholds are seconds here (HEALTH_* settings).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from devtools.local_servers import InfluxDBServer, RedisServer
from tests.e2e.alert_stack import TOKEN, Stack, get, rule_metric_names
from tests.helpers import InfluxQL, wait_until
from tests.sim_thread import SimulatorThread

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("alerts")
    broker = RedisServer(tmp / "broker", appendonly=True)
    influx = InfluxDBServer(tmp / "influx")
    broker.start()
    influx.start()
    sim = SimulatorThread(token=TOKEN, rate=20, entities=30).start()
    state_url = f"redis://127.0.0.1:{redis_server.port}/0"  # the per-test fixture uses 1..15
    redis.Redis.from_url(state_url).flushdb()
    stack = Stack(tmp, sim, broker, influx, state_url)
    try:
        for name in ("worker", "beat", "listener", "flower"):
            stack.start(name)
        stack.start_prometheus()
        yield stack
    finally:
        stack.stop_all()
        sim.stop()
        broker.stop()
        influx.stop()


# --- the conditions, in order: each leaves the next a known state ------------------------------


def test_every_metric_the_rules_name_is_on_the_real_metrics(stack: Stack) -> None:
    stack.wait_healthy(40)
    # Beat's fleet view lists the home from the listener's first report (every 2 s) on.
    wait_until(lambda: "ha_ingestor_home_silent{" in get(stack.health_port, "/metrics")[1],
               15, 0.3, "the home in beat's fleet view")  # fmt: skip
    listener = {
        name
        for family in text_string_to_metric_families(get(stack.health_port, "/metrics")[1])
        for name in (family.name, *(s.name for s in family.samples))
    }
    wait_until(lambda: b"flower_events_total" in get(stack.flower_port, "/metrics")[1].encode(),
               30, 0.5, "batches in Flower's metrics")  # fmt: skip
    flower = {
        family.name
        for family in text_string_to_metric_families(get(stack.flower_port, "/metrics")[1])
    }
    named = rule_metric_names()
    assert "ha_ingestor_health_check" in named
    assert named <= listener | flower, f"not on any real /metrics: {named - listener - flower}"

    # Prometheus scrapes both, under the job names the rules select.
    def up() -> dict[str, str]:
        body = json.loads(get(stack.prometheus_port, "/api/v1/query?query=up")[1])
        return {r["metric"]["job"]: r["value"][1] for r in body["data"]["result"]}

    both = {"ha-ingestor-listener": "1", "ha-ingestor-flower": "1"}
    wait_until(lambda: up() == both, 15, 0.3, f"Prometheus scraping both (up: {up()})")
    assert stack.firing() == {}


def test_no_events(stack: Stack) -> None:
    stack.sim.do(stack.sim.sim.pause_events)
    try:
        assert stack.agree("no_events") == "degraded"
    finally:
        stack.sim.do(stack.sim.sim.resume_events)
    stack.wait_healthy()


def test_a_stopped_worker_lets_the_broker_fill(stack: Stack) -> None:
    broker = redis.Redis.from_url(stack.broker.url)
    stack.stop("worker")
    try:
        assert stack.agree("no_workers") == "degraded"
        assert stack.agree("backlog") == "degraded"
        assert stack.agree("stalled") == "unhealthy"
        # The queue fills the broker: give it a limit the waiting events already take 85% of.
        used = int(broker.info("memory")["used_memory"])
        broker.config_set("maxmemory", int(used / 0.85))
        assert stack.agree("broker_memory") == "degraded"
    finally:
        broker.config_set("maxmemory", 0)
        stack.start("worker")
    stack.wait_healthy()


def test_influxdb_stopped(stack: Stack) -> None:
    stack.influx.stop()
    try:
        assert stack.agree("write_errors") == "degraded"
        assert stack.agree("outage_store") == "degraded"  # waited beyond MAX_EVENT_AGE
    finally:
        stack.influx.start()
    wait_until(lambda: "outage_store" not in stack.checks(), 30, 0.3, "the outage replayed")


def test_a_broker_outage(stack: Stack) -> None:
    stack.stop("worker")  # what it holds when the broker vanishes would wait out its timeout
    stack.broker.stop()
    try:
        assert stack.agree("broker_down") == "degraded"
        assert stack.agree("broker_unreadable") == "degraded"
    finally:
        stack.broker.start()
        stack.start("worker")
    wait_until(lambda: "broker_down" not in stack.checks(), 30, 0.3, "the broker back")


def test_points_refused_become_dead_letters(stack: Stack) -> None:
    """A database where the simulator's °C sensors' `value` is a string, and its shadow field
    `value_float` too: InfluxDB refuses, and no shadow field can take the values."""
    InfluxQL(stack.influx.url).results('CREATE DATABASE "strict"')
    line = '°C,domain=sensor,entity_id=seeded value="warm",value_float="warm"'.encode()
    request = urllib.request.Request(f"{stack.influx.url}/write?db=strict", data=line)
    urllib.request.urlopen(request, timeout=10).close()
    stack.stop("worker")
    stack.start("worker", INFLUXDB_DATABASE="strict")
    try:
        assert stack.agree("dead_letters") == "degraded"
        assert stack.agree("dead_letter_store", 30) == "degraded"  # 80 of DEAD_LETTERS_MAX=100
        assert stack.agree("dropping", 30) == "unhealthy"  # beyond it: the oldest deleted
    finally:
        stack.stop("worker")
        stack.start("worker")


def test_reconnects(stack: Stack) -> None:
    for attempt in (1, 2):
        stack.sim.call(stack.sim.sim.drop_clients())
        wait_until(
            lambda: stack.health()[1]["connection"]["reconnects"] >= attempt  # noqa: B023
            and stack.health()[1]["subscription"]["is_subscribed"],
            20, 0.1, f"reconnect {attempt}",
        )  # fmt: skip
    assert stack.agree("reconnects") == "degraded"


def test_home_assistant_gone(stack: Stack) -> None:
    stack.sim.call(stack.sim.sim.stop())
    assert stack.agree("not_subscribed") == "unhealthy"


def test_beat_gone(stack: Stack) -> None:
    stack.stop("beat")
    assert stack.agree("beat_stale") == "degraded"


def test_listener_gone(stack: Stack) -> None:
    """Nothing of the listener answers: Prometheus's `up` and `status` (from Redis) agree."""
    stack.stop("listener")
    wait_until(lambda: stack.firing().get("listener_down") == "unhealthy", 15, 0.3,
               "alert listener_down firing")  # fmt: skip
    found = wait_until(lambda: stack._status_with("listener_down"), 45, 0.5,
                       "listener_down in `status` (its state expired in Redis)")  # fmt: skip
    assert found is not None
    exit_code, report = found
    assert exit_code == 2
    assert {c["code"]: c["severity"] for c in report["checks"]}["listener_down"] == "unhealthy"
    stack.note("listener_down", "unhealthy", report, exit_code)
