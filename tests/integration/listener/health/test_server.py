"""Health plumbing against a real Redis: the listener's buckets, beat's readings of a real
Celery queue, and the HTTP endpoints (/health, /metrics, /) serving beat's summary."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
import redis
from kombu.connection import Connection
from prometheus_client.parser import text_string_to_metric_families

from config.celery_app import create_app
from config.redis_keys import RedisKeys
from config.settings import Settings, load_settings
from core.listener_figures import DESCRIBED, ListenerFigures
from core.task_message import INGEST_TASK, TaskMessage
from devtools.local_servers import free_port
from listener.health.server import HealthServer
from listener.health.state_reporter import StateReporter
from listener.health.stats import ListenerStats
from listener.health.view import HealthView
from tests.unit.listener.health.test_every_figure import every_figure_set, shown
from workers.monitoring.health_job import Monitor, RedisQueueProbe, queue_probe

pytestmark = pytest.mark.integration

KEYS = RedisKeys("ha_ingestor:")


def event(entity_id: str) -> dict[str, Any]:
    return {"event_type": "state_changed", "data": {"entity_id": entity_id}}


def live(stats: ListenerStats, entity_id: str) -> None:
    """What the listener does per live event."""
    stats.events_received += 1
    stats.events_by_type["state_changed"] += 1
    stats.count_entity(event(entity_id))
    stats.last_event_at = time.time()


def settings_for(redis_url: str, **overrides: Any) -> Settings:
    return load_settings(celery_broker_url=redis_url, beat_interval=1, **overrides)


def test_the_state_reporter_counts_only_what_is_new(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    stats = ListenerStats()
    now = 1_800_000_030.0
    reporter = StateReporter(client, KEYS, stats, clock=lambda: now)
    for entity in ("sensor.a", "sensor.a", "light.b"):
        live(stats, entity)
    stats.count_entity({"event_type": "call_service", "data": {}})  # no entity: overall only
    stats.events_received += 1
    stats.reconnects = 2
    reporter.report()
    for entity in ("sensor.a", "switch.c"):
        live(stats, entity)
    reporter.report()
    minute = int(now // 60)
    assert client.get(KEYS.counter_bucket("events_received", minute)) == b"6"
    assert client.get(KEYS.counter_bucket("reconnects", minute)) == b"2"
    assert client.hgetall(KEYS.counter_map_bucket("events_by_entity", minute)) == {
        b"sensor.a": b"3",
        b"light.b": b"1",
        b"switch.c": b"1",
    }
    assert client.hgetall(KEYS.counter_map_bucket("events_by_domain", minute)) == {
        b"sensor": b"3",
        b"light": b"1",
        b"switch": b"1",
    }
    assert 0 < client.ttl(KEYS.counter_map_bucket("events_by_domain", minute)) <= 7200
    state = ListenerFigures.from_json(client.get(KEYS.listener_state()))
    assert state is not None
    assert state.reported_at == now
    assert state.events_received == 6
    assert state.reconnects == 2
    assert 0 < client.ttl(KEYS.listener_state()) <= 30


def test_every_figure_reaches_redis_and_beat_s_report(redis_url: str) -> None:
    """Each field of the listener's figures, set live, is read back from Redis by beat and lands
    in beat's report in its section under its key."""
    client = redis.Redis.from_url(redis_url)
    stats, values = every_figure_set()
    now = time.time()
    StateReporter(client, KEYS, stats, clock=lambda: now).report()
    home = KEYS.for_home(stats.instance)  # a name: its state is that home's, listed in `homes`
    assert ListenerFigures.from_json(client.get(home.listener_state())) == stats.snapshot(now)
    assert client.hkeys(KEYS.homes()) == [str(stats.instance).encode()]
    report, _ = Monitor.from_settings(settings_for(redis_url)).compute()
    for described in DESCRIBED:
        value = now if described.name == "reported_at" else values[described.name]
        section = report[described.figure.section]
        assert section[described.key] == shown(described, value), described.name


def test_beat_reads_depth_in_flight_and_the_oldest_event_of_a_real_queue(redis_url: str) -> None:
    settings = settings_for(redis_url)
    app = create_app(settings)
    sent_at = time.time() - 42
    with app.producer_or_acquire() as producer:
        for seq in range(5):
            message = TaskMessage(event("sensor.a"), sent_at + seq, "live", seq).to_json()
            app.send_task(INGEST_TASK, args=[message], queue="ha_events", producer=producer)
    probe = queue_probe(settings)
    assert isinstance(probe, RedisQueueProbe)
    reading = probe.read()
    assert (reading.depth, reading.in_flight) == (5, 0)
    assert reading.oldest_received_at == pytest.approx(sent_at)
    # A consumer takes the oldest without acknowledging it, as a worker does (acks_late).
    with Connection(redis_url) as connection:
        queue = connection.SimpleQueue("ha_events", no_ack=False)
        taken = queue.get(timeout=5)
        reading = probe.read()
        assert (reading.depth, reading.in_flight) == (4, 1)
        assert reading.oldest_received_at == pytest.approx(sent_at)  # still not written
        taken.ack()
        reading = probe.read()
        assert (reading.depth, reading.in_flight) == (4, 0)
        assert reading.oldest_received_at == pytest.approx(sent_at + 1)
        queue.close()


def test_an_unreachable_broker_is_a_reason_not_a_crash(redis_url: str) -> None:
    secret = "broker-pw-7f3a9c"
    settings = load_settings(
        celery_broker_url=f"redis://:{secret}@127.0.0.1:{free_port()}/0", redis_url=redis_url
    )
    started = time.monotonic()
    report, _ = Monitor.from_settings(settings).compute()
    assert time.monotonic() - started < 2  # no retries: beat's next run is the retry
    check = next(c for c in report["checks"] if c["code"] == "broker_unreadable")
    assert "Connection refused" in check["message"]
    assert secret not in json.dumps(report)
    assert report["pipeline"]["queue_depth"] is None


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_the_endpoints_serve_beat_s_summary_and_the_live_figures(redis_url: str) -> None:
    settings = settings_for(redis_url, health_queue_backlog=3)
    client = redis.Redis.from_url(redis_url)
    stats = ListenerStats(started_at=time.time() - 10)  # up for a while: rates over 10 s
    stats.connection_state = "subscribed"
    stats.subscriptions = {"state_changed": 2}
    for entity in ("sensor.a", "sensor.a", "light.b"):
        live(stats, entity)
    StateReporter(client, KEYS, stats).report()
    app = create_app(settings)
    for seq in range(4):  # a backlog: no worker consumes these
        message = TaskMessage(event("sensor.a"), time.time(), "live", seq).to_json()
        app.send_task(INGEST_TASK, args=[message], queue="ha_events")
    beat_report = Monitor.from_settings(settings).run()
    assert [c["code"] for c in beat_report["checks"]] == ["no_workers", "backlog"]

    view = HealthView(settings, stats, client)
    server = HealthServer("127.0.0.1", 0, view.report)
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        code, _, body = get(f"{base}/health")
        health = json.loads(body)
        assert code == 200
        assert health["status"] == "degraded"
        assert health["reasons"][1:] == ["queue backlog 4"]
        assert health["reasons"][0].startswith("no worker takes the ingest queue")
        assert health["subscription"]["total_events_received"] == 3
        assert health["subscription"]["event_rate_per_minute"]["1m"] > 0
        assert health["pipeline"]["queue_depth"] == 4
        assert health["pipeline"]["oldest_message_age_s"] < 30
        assert [e["entity_id"] for e in health["rates"]["top_entities"]] == ["sensor.a", "light.b"]
        assert set(health["rates"]["by_domain"]) == {"sensor", "light"}
        # One shape: /health and the report beat stored have the same fields, section by section.
        assert {k: sorted(v) for k, v in health.items() if isinstance(v, dict)} == {
            k: sorted(v) for k, v in beat_report.items() if isinstance(v, dict)
        }
        assert set(health) == set(beat_report)

        code, headers, body = get(f"{base}/metrics")
        assert code == 200
        assert headers["Content-Type"].startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for f in families.values() for s in f.samples}  # fmt: skip
        assert samples[("ha_ingestor_health_status", (("status", "degraded"),))] == 1
        assert samples[("ha_ingestor_health_status", (("status", "healthy"),))] == 0
        check = ("ha_ingestor_health_check", (("code", "backlog"), ("severity", "degraded")))
        assert samples[check] == 1
        assert samples[("ha_ingestor_queue_depth", ())] == 4
        assert samples[("ha_ingestor_ha_subscribed", ())] == 1
        received = ("ha_ingestor_events_received_total", (("event_type", "state_changed"),))
        assert samples[received] == 3
        assert ("ha_ingestor_points_written_total", (("destination", "default"),)) in samples
        assert families["ha_ingestor_points_written"].type == "counter"
        assert families["ha_ingestor_queue_oldest_message_age_seconds"].type == "gauge"
        assert all(name.startswith("ha_ingestor_") for name in families)

        stats.connection_state = "backing_off"  # HA went away: unhealthy, at once
        code, _, body = get(f"{base}/health")
        assert code == 503
        assert json.loads(body)["checks"][0]["code"] == "not_subscribed"

        code, headers, body = get(f"{base}/")
        assert code == 200
        assert headers["Content-Type"] == "text/html; charset=utf-8"
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert b'id="health-data"' in body
        assert get(f"{base}/nope")[0] == 404
    finally:
        server.stop()


def test_a_hash_left_by_an_older_listener_reads_as_no_state_until_replaced(
    redis_url: str,
) -> None:
    client = redis.Redis.from_url(redis_url)
    client.hset(KEYS.listener_state(), mapping={"connection_state": "subscribed", "x": "True"})
    monitor = Monitor.from_settings(settings_for(redis_url))
    report, _ = monitor.compute()
    assert report["checks"][0]["code"] == "listener_down"
    stats = ListenerStats()
    stats.connection_state = "subscribed"
    StateReporter(client, KEYS, stats).report()
    assert client.type(KEYS.listener_state()) == b"string"
    report, _ = monitor.compute()
    assert report["listener"]["present"] is True
    assert report["connection"]["state"] == "subscribed"
