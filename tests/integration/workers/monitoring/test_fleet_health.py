"""Beat's fleet view against a real Redis: two homes' listeners report under their own keys,
beat reads every listed home, and a home that stopped reporting is named, in the report, the
status lines and a listener's /metrics."""

from __future__ import annotations

import re
import time

import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from config.redis_keys import RedisKeys
from config.settings import load_settings
from core.listener_figures import ListenerFigures
from listener.health.server import HealthCollector
from listener.health.state_reporter import StateReporter
from listener.health.stats import ListenerStats
from listener.health.view import HealthView
from workers.commands.status_command import rows
from workers.monitoring.health_job import Monitor

pytestmark = pytest.mark.integration

KEYS = RedisKeys()


def live_stats(home: str, events: int) -> ListenerStats:
    stats = ListenerStats(time.time() - 600)
    stats.instance = home
    stats.connection_state = "subscribed"
    stats.subscriptions = {"state_changed": 1}
    for n in range(events):
        stats.count_entity({"data": {"entity_id": f"sensor.{home}_{n % 3}"}})
    stats.events_received = events
    stats.last_event_at = time.time()
    return stats


def test_two_homes_keep_their_own_keys_and_a_silent_one_is_named(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    settings = load_settings(celery_broker_url=redis_url, health_listener_stale=15)
    main, holiday = live_stats("main", 30), live_stats("holiday", 12)
    StateReporter(client, KEYS, main).report()
    StateReporter(client, KEYS, holiday, clock=lambda: time.time() - 60).report()

    # Each home's keys are its own; nothing at the prefix level; both listed.
    assert not client.exists(KEYS.listener_state())
    for home, stats in (("main", main), ("holiday", holiday)):
        keys = KEYS.for_home(home)
        state = ListenerFigures.from_json(client.get(keys.listener_state()))
        assert state is not None
        assert state.instance == home
        minute = int(state.reported_at // 60)
        assert (
            client.get(keys.counter_bucket("events_received", minute))
            == str(stats.events_received).encode()
        )
        assert client.hget(keys.counter_map_bucket("events_by_domain", minute), "sensor")
    assert sorted(client.hkeys(KEYS.homes())) == [b"holiday", b"main"]

    report = Monitor.from_settings(settings).run()
    named = {(c["code"], c.get("home")) for c in report["checks"]}
    assert ("home_silent", "holiday") in named
    assert not any(code in ("listener_down", "listener_stale") for code, _ in named)
    assert report["status"] == "unhealthy"
    assert report["fleet"]["silent"] == ["holiday"]
    assert report["homes"]["main"]["is_subscribed"] is True
    assert report["homes"]["holiday"]["lag_s"] == pytest.approx(60, abs=5)

    # The silent home's state expires (its TTL): the `homes` hash still names it.
    client.delete(KEYS.for_home("holiday").listener_state())
    report = Monitor.from_settings(settings).run()
    assert report["homes"]["holiday"]["present"] is False
    silent = next(c for c in report["checks"] if c["code"] == "home_silent")
    assert silent["home"] == "holiday"
    assert "home holiday silent" in silent["message"]
    lines = dict(rows(report))
    assert lines["Home holiday"].startswith("SILENT, ")
    assert re.search(
        r", lag 6\d s, 0 reconnects in the last hour; home holiday silent", lines["Home holiday"]
    )
    assert lines["Home main"].startswith("subscribed, ")
    assert "2 homes, 1 subscribed" in lines["Fleet"]
    assert lines["Fleet"].endswith("SILENT: holiday")

    # The main home's listener: its own /health (healthy: another home's silence is not its
    # problem), the fleet in its sections, and /metrics naming the silent home.
    served = HealthView(settings, main, client).report()
    assert served["listener"]["instance"] == "main"
    assert "home_silent" not in {c["code"] for c in served["checks"]}
    assert served["homes"]["holiday"]["silent"] is True
    registry = CollectorRegistry()
    registry.register(HealthCollector(lambda: served))
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(generate_latest(registry).decode())
        for s in f.samples
    }
    assert samples[("ha_ingestor_home_silent", (("home", "holiday"), ("instance", "main")))] == 1
    assert samples[("ha_ingestor_home_silent", (("home", "main"), ("instance", "main")))] == 0
    assert samples[("ha_ingestor_ha_subscribed", (("instance", "main"),))] == 1


def test_a_listener_named_at_login_drops_its_provisional_entry(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    stats = live_stats("unnamed-host-42", 0)
    reporter = StateReporter(client, KEYS, stats)
    reporter.report()
    assert client.hkeys(KEYS.homes()) == [b"unnamed-host-42"]
    stats.instance = "main"  # what the listener does once HA's location name names the home
    reporter.report()
    assert client.hkeys(KEYS.homes()) == [b"main"]
    assert not client.exists(KEYS.for_home("unnamed-host-42").listener_state())
    assert client.exists(KEYS.for_home("main").listener_state())
