"""The fleet view: every home's state in, one section per home, its checks and the totals out."""

from __future__ import annotations

import json

import pytest

from core.fleet_view import FLEET_FIELDS, HOME_FIELDS, HomeReadings, combined, fleet_view
from core.health_beat import Readings, beat_figures
from core.health_check import Check, Thresholds
from core.health_report import BeatFigures, build_report
from core.listener_figures import ListenerFigures
from core.queue_trend import QueueReading

NOW = 1_800_000_000.0
MINUTE = int(NOW // 60)
T = Thresholds(listener_stale_s=15.0)


def listener(**changes: object) -> ListenerFigures:
    values: dict[str, object] = {
        "started_at": NOW - 3600,
        "reported_at": NOW - 1,
        "connection_state": "subscribed",
        "subscriptions": {"state_changed": 1},
        "last_event_at": NOW - 2,
    }
    return ListenerFigures(**(values | changes))  # type: ignore[arg-type]


def home(
    li: ListenerFigures | None = None, per_minute: int = 120, **changes: object
) -> HomeReadings:
    buckets = {"events_received": {m: per_minute for m in range(MINUTE - 30, MINUTE + 1)}}
    values: dict[str, object] = {
        "listener": li,
        "last_seen_at": NOW - 1 if li is None else li.reported_at,
        "buckets": buckets,
        "maps": {"events_by_domain": {MINUTE: {"sensor": per_minute}}},
    }
    return HomeReadings(**(values | changes))  # type: ignore[arg-type]


def test_one_home_is_a_section_and_no_check_of_its_own() -> None:
    view = fleet_view({"main": home(listener())}, NOW, T)
    assert list(view.homes) == ["main"]
    section = view.homes["main"]
    assert tuple(section) == HOME_FIELDS
    assert section["status"] == "healthy"
    assert section["is_subscribed"] is True
    assert section["events_per_second"] == pytest.approx(2.0, rel=0.05)
    assert view.checks == (), "with one home the report's own listener rules speak for it"
    assert tuple(view.fleet) == FLEET_FIELDS
    assert view.fleet["homes"] == 1
    assert view.fleet["silent"] == []


@pytest.mark.parametrize(
    ("silent", "words"),
    [
        (home(None, last_seen_at=NOW - 90), "not reporting (last report 90 s ago)"),
        (home(listener(reported_at=NOW - 40)), "not reporting (last report 40 s ago)"),
        (home(listener(connection_state="stopped", reported_at=NOW - 5)), "listener stopped"),
        (home(None, last_seen_at=None), "never reported"),
    ],
    ids=["state expired", "stale", "stopped", "listed, never reported"],
)
def test_a_silent_home_among_several_is_named(silent: HomeReadings, words: str) -> None:
    view = fleet_view({"main": home(listener()), "holiday": silent}, NOW, T)
    assert [c.code for c in view.checks] == ["home_silent"]
    check = view.checks[0]
    assert check.home == "holiday"
    assert check.severity == "unhealthy"
    assert "home holiday silent" in check.message
    assert words in check.message
    assert "HA_INSTANCE=holiday" in check.message
    assert view.homes["holiday"]["silent"] is True
    assert view.homes["holiday"]["code"] == "home_silent"
    assert view.homes["main"]["status"] == "healthy"
    assert view.fleet["silent"] == ["holiday"]
    assert view.fleet["reporting"] == 1
    assert view.fleet["status"] == "unhealthy"


def test_every_problem_of_a_home_names_it() -> None:
    down = listener(connection_state="connecting", last_error="refused")
    view = fleet_view({"a": home(listener()), "b": home(down)}, NOW, T)
    assert [(c.code, c.home) for c in view.checks] == [("not_subscribed", "b")]
    assert view.checks[0].message.startswith("home b: not subscribed")
    assert view.homes["b"]["is_subscribed"] is False
    assert view.fleet["subscribed"] == 1


def test_the_fleet_adds_up_its_homes() -> None:
    li = listener(memory_queue_depth=3, spool_depth=4)
    homes = {
        "a": home(li, per_minute=60, buckets={
            "events_received": {MINUTE: 60}, "reconnects": {MINUTE: 2}}),
        "b": home(listener(), per_minute=120, buckets={
            "events_received": {MINUTE: 120}, "reconnects": {MINUTE - 5: 1}}),
    }  # fmt: skip
    view = fleet_view(homes, NOW, T)
    assert view.fleet["reconnects_last_hour"] == 3
    assert view.fleet["waiting_events"] == 7
    assert view.fleet["events_per_second"] == pytest.approx(
        view.homes["a"]["events_per_second"] + view.homes["b"]["events_per_second"], abs=0.002
    )
    together = combined(homes)
    assert together.listener is None
    assert together.buckets["events_received"] == {MINUTE: 180}
    assert together.maps["events_by_domain"] == {MINUTE: {"sensor": 180}}
    assert combined({"a": homes["a"]}) is homes["a"], "one home: its own readings"


def readings(homes: dict[str, HomeReadings]) -> Readings:
    fleet = combined(homes)
    return Readings(
        now=NOW,
        listener=fleet.listener,
        buckets=fleet.buckets,
        maps=fleet.maps,
        homes=homes,
        queue=QueueReading(depth=0, in_flight=0),
        dead_letters_stored=0,
    )


def test_beat_s_report_of_two_homes_names_the_silent_one_and_no_listener_down() -> None:
    homes = {"main": home(listener()), "holiday": home(None, last_seen_at=NOW - 60)}
    figures, _ = beat_figures(readings(homes), None, T)
    report = build_report(NOW, None, figures, T, beat_ran_at=NOW)
    codes = [(c["code"], c.get("home")) for c in report["checks"]]
    assert codes == [("home_silent", "holiday")]
    assert report["status"] == "unhealthy"
    assert any("home holiday silent" in reason for reason in report["reasons"])
    assert set(report["homes"]) == {"main", "holiday"}
    assert report["fleet"]["silent"] == ["holiday"]
    assert report["fleet"]["homes"] == 2


def test_beat_s_report_of_one_home_reads_as_before() -> None:
    homes = {"main": home(listener(connection_state="connecting"))}
    figures, _ = beat_figures(readings(homes), None, T)
    report = build_report(NOW, homes["main"].listener, figures, T, beat_ran_at=NOW)
    assert [c["code"] for c in report["checks"]] == ["not_subscribed"]
    assert "home" not in report["checks"][0]
    assert report["reasons"][0].startswith("not subscribed"), "worded as always"
    assert report["connection"]["state"] == "connecting"
    assert report["fleet"]["homes"] == 1


def test_a_listener_reads_back_its_own_home_s_rates() -> None:
    homes = {
        "a": home(listener(), per_minute=60),
        "b": home(listener(), per_minute=600),
    }
    figures, _ = beat_figures(readings(homes), None, T)
    stored = json.loads(json.dumps(build_report(NOW, None, figures, T, beat_ran_at=NOW)))
    mine = BeatFigures.from_report(stored, home="a")
    fleet = BeatFigures.from_report(stored)
    assert mine is not None
    assert fleet is not None
    assert mine.events_per_minute is not None
    assert fleet.events_per_minute is not None
    assert mine.events_per_minute == stored["homes"]["a"]["event_rate_per_minute"]
    assert fleet.events_per_minute == stored["subscription"]["event_rate_per_minute"]
    assert mine.events_per_minute["5m"] < fleet.events_per_minute["5m"]
    assert [c.code for c in mine.checks] == [], "another home's problems stay beat's"
    assert set(mine.homes) == {"a", "b"}


def test_a_home_s_check_keeps_its_home_through_a_stored_report() -> None:
    view = fleet_view({"a": home(listener()), "b": home(None, last_seen_at=NOW - 60)}, NOW, T)
    check = view.checks[0]
    assert check.as_dict()["home"] == "b"
    assert Check.from_dict(json.loads(json.dumps(check.as_dict()))) == check
