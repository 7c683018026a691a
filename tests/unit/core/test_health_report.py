"""The one report builder (core.health_report): every view has one shape, and the listener
reads beat's figures back from the report beat stored."""

from __future__ import annotations

import json
from typing import Any

import pytest

from core.health_beat import Readings, beat_figures
from core.health_check import Thresholds
from core.health_report import BeatFigures, build_report
from core.queue_trend import QueueReading
from listener.health.stats import ListenerStats
from listener.health.view import listener_health

NOW = 1_800_000_000.0
T = Thresholds(event_gap_s=60, beat_interval_s=1)
MINUTE = int(NOW // 60)


def stats() -> ListenerStats:
    s = ListenerStats(started_at=NOW - 600)
    s.connection_state = "subscribed"
    s.connect_attempts = s.connects_ok = 1
    s.subscriptions = {"state_changed": 2}
    s.events_received = 10
    s.events_by_type["state_changed"] = 10
    s.last_event_at = NOW - 1
    return s


def readings(with_listener: bool = True) -> Readings:
    events = {m: 35 for m in range(MINUTE - 20, MINUTE + 1)}
    return Readings(
        now=NOW,
        listener=stats().snapshot(NOW - 1) if with_listener else None,
        buckets={
            "events_received": events,
            "written": events,
            "reconnects": {MINUTE: 1},
            "write_errors": {MINUTE: 2},
            "dead_lettered": {MINUTE: 2},
        },
        maps={
            "events_by_entity": {MINUTE: {"sensor.a": 3}},
            "events_by_domain": {MINUTE: {"sensor": 3}},
        },
        totals={"written": 700},
        dead_letter_reasons={"rejected_by_influxdb": 2},
        queue=QueueReading(depth=20_000, in_flight=3, oldest_received_at=NOW - 400),
        last_write_error="400 field type conflict",
    )


def shape(report: dict[str, Any]) -> dict[str, Any]:
    """The keys of the report and of each of its sections."""
    return {
        key: sorted(value) if isinstance(value, dict) else type(value).__name__
        for key, value in report.items()
    }


def every_view() -> dict[str, dict[str, Any]]:
    """Each way a report is built: the listener's /health (with or without beat, or Redis
    unreadable) and beat's report or `status` (with or without a listener)."""
    figures, _ = beat_figures(readings(), None, T)
    alone, _ = beat_figures(readings(with_listener=False), None, T)
    stored = build_report(NOW, readings().listener, figures, T, beat_ran_at=NOW)
    read_back = BeatFigures.from_report(json.loads(json.dumps(stored)))
    return {
        "beat": stored,
        "beat without listener": build_report(NOW, None, alone, T, beat_ran_at=NOW),
        "status, beat never ran": build_report(NOW, None, alone, T, beat_ran_at=None),
        "/health": listener_health(stats(), NOW + 1, beat=read_back, thresholds=T),
        "/health without beat": listener_health(stats(), NOW, thresholds=T),
        "/health, Redis unreadable": listener_health(stats(), NOW, beat_error="down", thresholds=T),
    }


def test_every_view_has_one_shape() -> None:
    views = every_view()
    expected = shape(views["/health"])
    assert set(expected) == {
        "status", "reasons", "checks", "time", "uptime_s", "connection", "subscription",
        "listener", "pipeline", "rates", "destinations", "homes", "fleet", "beat",
    }  # fmt: skip
    for name, report in views.items():
        assert shape(report) == expected | {"uptime_s": shape(report)["uptime_s"]}, name
        json.dumps(report)  # JSON-ready


def test_what_nobody_knows_is_null() -> None:
    views = every_view()
    absent = views["beat without listener"]
    assert absent["listener"]["present"] is False
    assert set(absent["connection"].values()) - {None} == {1}  # reconnects_last_hour, beat's
    assert absent["uptime_s"] is None
    no_beat = views["/health without beat"]
    assert set(no_beat["pipeline"].values()) == {None}
    assert no_beat["rates"] == {"by_domain": {}, "top_entities": [], "history": []}
    assert no_beat["beat"] == {"last_run_at": None, "age_s": None}


def test_health_shows_beat_s_figures_as_beat_stored_them() -> None:
    views = every_view()
    beat, health = views["beat"], views["/health"]
    assert health["pipeline"] == beat["pipeline"] | {"age_s": 1.0}
    assert health["rates"] == beat["rates"]
    for field in ("event_rate_per_minute", "usual_rate_per_minute"):
        assert health["subscription"][field] == beat["subscription"][field]
    assert health["connection"]["reconnects_last_hour"] == 1
    pipeline_codes = [c["code"] for c in beat["checks"] if c["area"] == "pipeline"]
    assert pipeline_codes == ["queue_age", "backlog", "write_errors", "dead_letters"]
    assert [c["code"] for c in health["checks"]] == pipeline_codes
    assert health["beat"] == {"last_run_at": NOW, "age_s": 1.0}


def test_beat_s_figures_round_trip_through_its_report() -> None:
    figures, _ = beat_figures(readings(), None, T)
    report = build_report(NOW, readings().listener, figures, T, beat_ran_at=NOW)
    assert BeatFigures.from_report(json.loads(json.dumps(report))) == figures


@pytest.mark.parametrize(
    "stored",
    [
        None,
        [],
        {},
        {"computed_at": NOW, "listener": {"present": False}, "rates": {}, "pipeline": {}},
        {"time": "now", "checks": [], "connection": {}, "subscription": {}, "pipeline": {},
         "rates": {}},
        {"time": NOW, "checks": None, "connection": {}, "subscription": {}, "pipeline": {},
         "rates": {}},
        {"time": NOW, "checks": [], "connection": [], "subscription": {}, "pipeline": {},
         "rates": {}},
    ],
)  # fmt: skip
def test_what_is_not_a_report_gives_no_figures(stored: Any) -> None:
    assert BeatFigures.from_report(stored) is None


def test_status_judges_beat_by_its_last_stored_report() -> None:
    figures, _ = beat_figures(readings(), None, T)
    fresh = build_report(NOW, readings().listener, figures, T, beat_ran_at=NOW - 60)
    assert "beat_stale" in [c["code"] for c in fresh["checks"]]
    assert fresh["beat"] == {"last_run_at": NOW - 60, "age_s": 60.0}
    assert fresh["pipeline"]["age_s"] == 0.0  # the figures themselves are fresh
    never = build_report(NOW, readings().listener, figures, T, beat_ran_at=None)
    assert "beat_missing" in [c["code"] for c in never["checks"]]
