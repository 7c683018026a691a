"""The listener's /health document (listener.health.view) and the status page's embedding of it."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

from core.health_check import Check, Thresholds
from core.health_report import BeatFigures, build_report
from listener.health.stats import ListenerStats
from listener.health.status_page import render_status_page
from listener.health.view import listener_health

NOW = 1_800_000_000.0
T = Thresholds(event_gap_s=60, beat_interval_s=1)

ISSUE_FIELDS = {
    "": {"status", "reasons", "uptime_s", "connection", "subscription", "pipeline"},
    "connection": {"state", "attempts", "successful", "failed", "last_error"},
    "subscription": {
        "is_subscribed",
        "active_subscriptions",
        "total_events_received",
        "events_by_type",
        "event_rate_per_minute",
        "last_event_time",
    },
    "pipeline": {"queue_depth", "oldest_message_age_s", "written", "retried", "dead_letters"},
}


def subscribed_stats() -> ListenerStats:
    stats = ListenerStats(started_at=NOW - 600)
    stats.connection_state = "subscribed"
    stats.connect_attempts = stats.connects_ok = 1
    stats.subscriptions = {"state_changed": 2}
    stats.events_received = 10
    stats.events_by_type["state_changed"] = 10
    stats.last_event_at = NOW - 1
    return stats


def beat(**pipeline: Any) -> BeatFigures:
    """Beat's figures as the listener reads them: from the report beat stored, as JSON."""
    figures = BeatFigures(
        computed_at=NOW - 0.5,
        pipeline={"queue_depth": 12_000, "in_flight": 5, "oldest_message_age_s": 2.5,
                  "written": 900, "retried": 1, "write_errors": 0, "dead_letters": 3,
                  **pipeline},
        rates={
            "by_domain": {"sensor": {"1m": 30.0, "5m": 30.0, "15m": 30.0}},
            "top_entities": [{"entity_id": "sensor.a", "1m": 1.0, "5m": 1.0, "15m": 1.0}],
            "history": [[NOW - 60, 35], [NOW, 10]],
        },
        events_per_minute={"1m": 35.0, "5m": 34.0, "15m": 33.0},
        usual_per_minute=34.5,
        written_per_minute={"1m": 35.0, "5m": 34.0, "15m": 33.0},
        reconnects_last_hour=2,
        checks=(Check("backlog", "degraded", "pipeline", "big"),),
    )  # fmt: skip
    # Beat's older view of the listener (not subscribed yet): the listener's live one replaces it.
    old = replace(subscribed_stats().snapshot(NOW - 3), connection_state="connecting")
    stored = build_report(NOW - 0.5, old, figures, T, beat_ran_at=NOW - 0.5)
    assert "not_subscribed" in [c["code"] for c in stored["checks"]]
    read = BeatFigures.from_report(json.loads(json.dumps(stored)))
    assert read is not None
    return read


def test_the_document_has_every_field_the_issue_names() -> None:
    health = listener_health(subscribed_stats(), NOW, beat=beat(), thresholds=T)
    for section, fields in ISSUE_FIELDS.items():
        assert fields <= set(health[section] if section else health), section
    json.dumps(health)  # JSON-ready


def test_live_subscription_figures_and_beat_pipeline_checks_are_merged() -> None:
    health = listener_health(subscribed_stats(), NOW, beat=beat(), thresholds=T)
    assert health["status"] == "degraded"
    assert [c["code"] for c in health["checks"]] == ["backlog"]
    assert health["reasons"] == ["big"]
    assert health["subscription"]["event_rate_per_minute"]["1m"] == 35.0
    assert health["connection"]["reconnects_last_hour"] == 2
    assert health["pipeline"]["queue_depth"] == 12_000
    assert health["pipeline"]["age_s"] == 0.5
    assert health["rates"]["top_entities"][0]["entity_id"] == "sensor.a"


def test_a_live_disconnection_shows_at_once() -> None:
    stats = subscribed_stats()
    stats.connection_state = "backing_off"
    stats.last_error = "connection refused: is Home Assistant running and HA_URL right?"
    health = listener_health(stats, NOW, beat=beat(), thresholds=T)
    assert health["status"] == "unhealthy"
    assert health["checks"][0]["code"] == "not_subscribed"
    assert "connection refused" in health["reasons"][0]


def test_silence_uses_beat_s_usual_rate() -> None:
    stats = subscribed_stats()
    stats.last_event_at = NOW - 120
    health = listener_health(stats, NOW, beat=beat(), thresholds=T)
    assert "no events for 2 min while subscribed — HA usually sends 34/min" in health["reasons"][0]


def test_without_beat_the_pipeline_is_unknown_and_said_so() -> None:
    health = listener_health(subscribed_stats(), NOW, thresholds=T)
    assert health["status"] == "degraded"
    assert [c["code"] for c in health["checks"]] == ["beat_missing"]
    assert health["pipeline"]["queue_depth"] is None
    assert health["subscription"]["event_rate_per_minute"] is None
    old = replace(beat(), computed_at=NOW - 30)
    stale = listener_health(subscribed_stats(), NOW, beat=old, thresholds=T)
    assert "beat_stale" in [c["code"] for c in stale["checks"]]


def test_unreadable_redis_is_a_reason() -> None:
    health = listener_health(
        subscribed_stats(), NOW, beat_error="ConnectionError: refused", thresholds=T
    )
    assert [c["code"] for c in health["checks"]] == ["redis_unreadable"]
    assert "ConnectionError: refused" in health["reasons"][0]


def test_the_page_embeds_the_document_so_no_text_can_end_the_script() -> None:
    stats = subscribed_stats()
    stats.last_error = "</script><script>alert(1)</script>"
    stats.connection_state = "backing_off"
    page = render_status_page(listener_health(stats, NOW, beat=beat(), thresholds=T))
    assert page.count("</script>") == 2  # the data block's and the code's own
    data = re.search(r'<script id="health-data" type="application/json">(.*?)</script>', page)
    assert data is not None
    assert json.loads(data.group(1))["connection"]["last_error"] == stats.last_error
    assert "<li>not subscribed" in page  # the reasons are there without JavaScript too
    # Self-contained: no URL but the SVG namespace name, no src= or href= at all.
    assert re.findall(r"https?://[^\s\"']+", page) == ["http://www.w3.org/2000/svg"]
    assert "src=" not in page
    assert "href=" not in page
