"""The quiet-sensor heartbeat's pure parts: the policy, the clock in virtual time, the point."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from core.rules import EntityFilter, Rules
from core.state_heartbeat import (
    HEARTBEAT_TAG,
    HeartbeatPolicy,
    QuietClock,
    state_heartbeat_event,
    state_heartbeat_point,
)
from core.transform import InvalidEvent, Point, Skipped, event_to_point
from tests.virtual_time import VirtualTime

INTERVAL = 900.0
POLICY = HeartbeatPolicy(INTERVAL, frozenset({"climate"}), frozenset({"sensor.*_temperature"}))


def iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat()


def state(entity_id: str, value: str = "21.5", updated: float = 0.0) -> dict[str, Any]:
    return {
        "entity_id": entity_id,
        "state": value,
        "attributes": {"unit_of_measurement": "°C"},
        "last_changed": iso(updated),
        "last_updated": iso(updated),
    }


def ids(states: list[Any]) -> list[str]:
    return [s["entity_id"] for s in states]


@pytest.mark.parametrize(
    ("entity_id", "chosen"),
    [
        ("climate.bedroom", True),
        ("sensor.kitchen_temperature", True),
        ("sensor.kitchen_humidity", False),
        ("light.kitchen", False),
    ],
)
def test_the_policy_chooses_by_domain_or_glob(entity_id: str, chosen: bool) -> None:
    assert POLICY.covers(entity_id) is chosen
    assert POLICY.covers(entity_id) is chosen  # from the cache


@pytest.mark.parametrize(
    ("interval", "domains", "globs", "problem"),
    [
        (0.0, {"sensor"}, set(), "> 0"),
        (60.0, set(), set(), "domains or entity globs"),
    ],
)
def test_a_policy_that_cannot_work_says_why(
    interval: float, domains: set[str], globs: set[str], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        HeartbeatPolicy(interval, frozenset(domains), frozenset(globs))


def test_a_quiet_entity_is_due_each_interval_and_a_changing_one_never() -> None:
    clock = VirtualTime()
    quiet = QuietClock(POLICY)
    start = clock.time()
    quiet.seed([state("climate.bedroom", updated=start), state("sensor.a_temperature")], start)
    assert ids(quiet.take_due(start)) == ["sensor.a_temperature"]  # last updated at 1970
    sent: list[tuple[float, str]] = []
    for _ in range(3 * 60):  # 3 hours, a minute a step; the sensor changes every 10 minutes
        clock.advance(60)
        if clock.elapsed % 600 == 0:
            quiet.written(state("sensor.a_temperature", updated=clock.time()), clock.time())
        sent += [(clock.elapsed, s["entity_id"]) for s in quiet.take_due(clock.time())]
    assert sent == [(900.0 * n, "climate.bedroom") for n in range(1, 13)]
    assert quiet.take_due(start + 13 * 900.0 - 1) == []


def test_a_restart_seeds_the_clock_from_last_updated_not_from_now() -> None:
    """A state updated 10 minutes before the connect is due 5 minutes after it, not 15; one
    updated hours ago is due at once: the restart loses no beat and adds none early."""
    now = 1_800_000_000.0
    quiet = QuietClock(POLICY)
    quiet.seed(
        [state("climate.fresh", updated=now - 600), state("climate.old", updated=now - 7200)], now
    )
    assert ids(quiet.take_due(now)) == ["climate.old"]
    assert quiet.take_due(now + 299) == []
    assert ids(quiet.take_due(now + 300)) == ["climate.fresh"]
    assert ids(quiet.take_due(now + 900)) == ["climate.old"]


def test_unavailable_and_unknown_are_never_sent_and_a_value_brings_the_entity_back() -> None:
    now = 1_800_000_000.0
    quiet = QuietClock(POLICY)
    quiet.seed(
        [state("climate.a", "unavailable"), state("climate.b", "unknown"), state("climate.c")],
        now,
    )
    assert ids(quiet.take_due(now)) == ["climate.c"]
    quiet.written(state("climate.c", "unavailable", updated=now + 1), now + 1)
    assert "climate.c" not in quiet
    assert quiet.take_due(now + 10 * INTERVAL) == []
    assert quiet.next_due() is None
    quiet.written(state("climate.a", "19.0", updated=now + 20), now + 20)
    assert quiet.take_due(now + 20 + INTERVAL - 1) == []
    due = quiet.take_due(now + 20 + INTERVAL)
    assert [(s["entity_id"], s["state"]) for s in due] == [("climate.a", "19.0")]


def test_a_removed_entity_stops_live_or_found_missing_at_reconnect() -> None:
    now = 1_800_000_000.0
    quiet = QuietClock(POLICY)
    quiet.seed([state("climate.a"), state("climate.b"), state("climate.c")], now)
    quiet.removed("climate.a")
    quiet.seed([state("climate.c")], now + 1)  # climate.b went while we were away
    assert len(quiet) == 1
    assert ids(quiet.take_due(now + 1)) == ["climate.c"]


def test_entities_not_chosen_are_not_watched() -> None:
    quiet = QuietClock(POLICY)
    assert quiet.written(state("sensor.kitchen_humidity"), 0.0) is False
    quiet.seed([state("light.kitchen")], 0.0)
    assert len(quiet) == 0
    assert quiet.take_due(1e12) == []


def test_an_older_copy_never_replaces_a_newer_state() -> None:
    """The snapshot may answer after a newer live event of the same entity was seen."""
    now = 1_800_000_000.0
    quiet = QuietClock(POLICY)
    assert quiet.written(state("climate.a", "22.0", updated=now), now) is True
    quiet.seed([state("climate.a", "unavailable", updated=now - 5)], now + 1)
    assert quiet.written(state("climate.a", "22.5", updated=now), now) is False
    due = quiet.take_due(now + INTERVAL)
    assert [s["state"] for s in due] == ["22.5"]


def test_slack_takes_the_entities_due_just_after_in_the_same_wake_up() -> None:
    now = 1_800_000_000.0
    quiet = QuietClock(POLICY)
    quiet.seed(
        [state("climate.a", updated=now - 900), state("climate.b", updated=now - 899.5)], now
    )
    assert ids(quiet.take_due(now, slack=1.0)) == ["climate.a", "climate.b"]
    assert quiet.next_due() == now + INTERVAL


def test_a_slack_as_long_as_the_interval_takes_each_entity_once() -> None:
    now = 1_800_000_000.0
    quiet = QuietClock(HeartbeatPolicy(1.0, frozenset({"climate"})))
    quiet.seed([state("climate.a"), state("climate.b")], now)
    assert ids(quiet.take_due(now, slack=5.0)) == ["climate.a", "climate.b"]
    assert quiet.next_due() == now + 1.0


def test_a_watched_again_entity_has_one_live_entry() -> None:
    """Unwatched and watched again within an interval: the old heap entry is stale, not sent."""
    now = 1_800_000_000.0
    quiet = QuietClock(POLICY)
    quiet.written(state("climate.a", updated=now), now)
    quiet.removed("climate.a")
    quiet.written(state("climate.a", updated=now + 10), now + 10)
    assert quiet.take_due(now + INTERVAL) == []
    assert ids(quiet.take_due(now + 10 + INTERVAL)) == ["climate.a"]
    assert ids(quiet.take_due(now + 10 + 2 * INTERVAL)) == ["climate.a"]


# --- the event and the point ------------------------------------------------------------------


def test_the_heartbeat_point_is_the_live_point_at_the_heartbeat_time_with_the_tag() -> None:
    updated, beat = 1_800_000_000.0, 1_800_000_900.25
    live_state = state("climate.bedroom", updated=updated)
    event = state_heartbeat_event(live_state, beat)
    assert event["data"]["new_state"] is live_state
    live = event_to_point(event, Rules())
    heartbeat = state_heartbeat_point(event, Rules(), {"area": "Bedroom"})
    assert isinstance(live, Point)
    assert isinstance(heartbeat, Point)
    assert heartbeat.time_ns == 1_800_000_900_250_000_000
    assert live.time_ns == 1_800_000_000_000_000_000
    assert dict(heartbeat.tags) == {
        **dict(live.tags),
        "area": "Bedroom",
        HEARTBEAT_TAG[0]: HEARTBEAT_TAG[1],
    }
    assert heartbeat.fields == live.fields
    assert heartbeat.measurement == live.measurement == "°C"


def test_no_attribute_or_static_tag_hides_the_marker() -> None:
    rules = Rules(tags=(("heartbeat", "no"),), tags_attributes=frozenset({"heartbeat"}))
    live_state = state("climate.bedroom")
    live_state["attributes"]["heartbeat"] = "maybe"
    result = state_heartbeat_point(state_heartbeat_event(live_state, 10.0), rules)
    assert isinstance(result, Point)
    assert dict(result.tags)["heartbeat"] == "true"


def test_the_rules_still_apply_to_a_heartbeat() -> None:
    rules = Rules(entity_filter=EntityFilter(exclude_domains=frozenset({"climate"})))
    event = state_heartbeat_event(state("climate.bedroom"), 10.0)
    assert state_heartbeat_point(event, rules) == Skipped("filtered")


def test_a_heartbeat_without_its_time_is_invalid() -> None:
    event = state_heartbeat_event(state("climate.bedroom"), 10.0)
    event["time_fired"] = None
    with pytest.raises(InvalidEvent, match="time_fired"):
        state_heartbeat_point(event, Rules())
