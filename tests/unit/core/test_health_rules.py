"""The shared health rules (core.health_rules, core.health_check): every subscription and beat
rule, both sides of its threshold (the pipeline rules: test_health_pipeline.py)."""

from __future__ import annotations

from typing import Any

import pytest

from config.settings import load_settings
from core.health_check import Check, Thresholds, ordered, overall
from core.health_rules import beat_checks, redis_unreadable, subscription_checks
from core.listener_figures import ListenerFigures

T = Thresholds(
    event_gap_s=600,
    listener_stale_s=15,
    reconnects_per_hour=5,
    beat_interval_s=5,
    event_types=("state_changed",),
)
NOW = 1_800_000_000.0
OK: dict[str, Any] = {
    "connection_state": "subscribed",
    "heartbeat_age_s": 1.0,
    "attempts": 1,
    "subscribed_types": ("state_changed",),
    "uptime_s": 3600,
    "last_event_age_s": 1.0,
    "usual_rate_per_min": 35.0,
    "reconnects_last_hour": 0,
}
"""A healthy listener, in the terms of the rules' messages (ages, not times)."""


def judge(**changes: Any) -> list[Check]:
    """The subscription rules on OK with `changes`: ages become the times the listener reports
    (as of NOW), beat's figures go as beat's; None for the heartbeat's age means no listener."""
    f = OK | changes
    beat = {name: f.pop(name) for name in ("usual_rate_per_min", "reconnects_last_hour")}
    heartbeat_age, last_event_age = f.pop("heartbeat_age_s"), f.pop("last_event_age_s")
    listener = None
    if heartbeat_age is not None:
        listener = ListenerFigures(
            started_at=NOW - f.pop("uptime_s"),
            reported_at=NOW - heartbeat_age,
            last_event_at=None if last_event_age is None else NOW - last_event_age,
            connect_attempts=f.pop("attempts"),
            connects_failed=f.pop("failed", 0),
            subscriptions={t: n for n, t in enumerate(f.pop("subscribed_types"), start=2)},
            **f,
        )
    return subscription_checks(listener, NOW, T, **beat)


def codes(checks: list[Check]) -> list[str]:
    return [c.code for c in checks]


def test_a_subscribed_listener_with_events_is_healthy() -> None:
    assert judge() == []
    assert overall([]) == "healthy"


@pytest.mark.parametrize(
    ("changes", "expected_codes", "severity", "words"),
    [
        ({"heartbeat_age_s": None}, ["listener_down"], "unhealthy", "start `ha-ingestor listener`"),
        ({"connection_state": "stopped"}, ["listener_down"], "unhealthy", "a clean shutdown"),
        ({"heartbeat_age_s": 15.5}, ["listener_stale"], "unhealthy", "listener silent for 16 s"),
        (
            {"connection_state": "auth_invalid"},
            ["auth_invalid"],
            "unhealthy",
            "create a new long-lived access token",
        ),
        (
            {
                "connection_state": "backing_off",
                "attempts": 4,
                "failed": 3,
                "last_error": "refused",
            },
            ["not_subscribed"],
            "unhealthy",
            "(backing off, 4 connection attempts, 3 failed); last error: refused",
        ),
        (
            {"subscribed_types": ()},
            ["subscriptions_missing"],
            "degraded",
            "subscribed to 0 of 1 event types; missing: state_changed",
        ),
        (
            {"last_event_age_s": 12 * 60},
            ["no_events"],
            "degraded",
            "no events for 12 min while subscribed — HA usually sends 35/min",
        ),
        (
            {"last_event_age_s": None, "usual_rate_per_min": None, "uptime_s": 700},
            ["no_events"],
            "degraded",
            "no events since the listener started 11 min ago while subscribed",
        ),
        (
            {"reconnects_last_hour": 5, "last_error": "connection closed (code 1006)"},
            ["reconnects"],
            "degraded",
            "dropped 5 times in the last hour (last error: connection closed (code 1006))",
        ),
        (
            {"broker_up": False, "spool_depth": 48000},
            ["broker_down"],
            "degraded",
            "broker unreachable: 48,000 events kept in the local spool",
        ),
        ({"spool_depth": 12}, ["spool_draining"], "degraded", "12 events left"),
        ({"history_available": False}, ["no_recorder"], "degraded", "enable `recorder:`"),
    ],
)
def test_each_subscription_rule(
    changes: dict[str, object], expected_codes: list[str], severity: str, words: str
) -> None:
    checks = judge(**changes)
    assert codes(checks) == expected_codes
    assert checks[0].severity == severity
    assert words in checks[0].message
    assert overall(checks) == severity


@pytest.mark.parametrize(
    ("changes", "fires"),
    [
        ({"last_event_age_s": 599.0}, False),  # below the gap
        ({"last_event_age_s": 600.0}, True),
        # A quiet home: 0.2/min means 2 events in 10 min, fewer than the 3 worth an alarm.
        ({"last_event_age_s": 600.0, "usual_rate_per_min": 0.2}, False),
        ({"last_event_age_s": 600.0, "usual_rate_per_min": 0.3}, True),
        ({"last_event_age_s": 600.0, "usual_rate_per_min": None}, True),
        # Not subscribed: that is the problem to report, not the silence.
        ({"last_event_age_s": 6000.0, "connection_state": "connecting"}, False),
        ({"last_event_age_s": None, "uptime_s": 599.0}, False),
    ],
)
def test_silence_is_judged_against_the_usual_rate(changes: dict[str, object], fires: bool) -> None:
    checks = judge(**changes)
    assert ("no_events" in codes(checks)) is fires


def test_a_silent_listener_hides_its_stale_figures() -> None:
    """An old report says nothing reliable about the connection: only the silence is shown."""
    stale = judge(heartbeat_age_s=60, connection_state="backing_off", broker_up=False)
    assert codes(stale) == ["listener_stale"]


def test_reconnects_below_the_threshold_or_unknown_are_fine() -> None:
    assert judge(reconnects_last_hour=4) == []
    assert judge(reconnects_last_hour=None) == []


def test_a_refused_token_is_the_one_connection_problem_reported() -> None:
    """Reconnects are what the hourly login tries cause: the refusal says it all."""
    checks = judge(connection_state="auth_invalid", reconnects_last_hour=9, spool_depth=3)
    assert codes(checks) == ["auth_invalid", "spool_draining"]


def test_several_problems_are_all_reported_worst_first() -> None:
    checks = ordered(
        judge(connection_state="connecting", spool_depth=3, reconnects_last_hour=9, last_error="x")
    )
    assert codes(checks) == ["not_subscribed", "reconnects", "spool_draining"]
    assert overall(checks) == "unhealthy"


@pytest.mark.parametrize(
    ("age", "expected"),
    [(None, ["beat_missing"]), (0.0, []), (17.0, []), (17.5, ["beat_stale"])],
)
def test_beat_freshness(age: float | None, expected: list[str]) -> None:
    assert T.beat_stale_s == 17.0
    assert codes(beat_checks(age, T)) == expected
    assert all(c.severity == "degraded" for c in beat_checks(age, T))


def test_unreadable_redis_is_a_beat_problem_with_its_error() -> None:
    check = redis_unreadable("ConnectionError: refused")
    assert (check.code, check.severity, check.area) == ("redis_unreadable", "degraded", "beat")
    assert "(ConnectionError: refused) — check REDIS_URL" in check.message


def test_a_check_round_trips_through_its_dict_and_garbage_is_none() -> None:
    check = Check("backlog", "degraded", "pipeline", "queue backlog 4")
    assert Check.from_dict(check.as_dict()) == check
    for garbage in (
        None,
        "backlog",
        {},
        check.as_dict() | {"severity": "fatal"},
        check.as_dict() | {"area": "moon"},
        check.as_dict() | {"message": 3},
    ):
        assert Check.from_dict(garbage) is None, garbage


def test_thresholds_come_from_the_settings() -> None:
    settings = load_settings(
        health_event_gap=3,
        health_listener_stale=7,
        health_reconnects_per_hour=2,
        health_queue_backlog=50,
        health_queue_max_age=5,
        health_window=60,
        beat_interval=1,
        ha_event_types="state_changed,call_service",
    )
    t = Thresholds.from_settings(settings)
    assert t == Thresholds(3, 7, 2, 50, 5, 60, 1, ("state_changed", "call_service"))
    assert t.beat_stale_s == 5.0
