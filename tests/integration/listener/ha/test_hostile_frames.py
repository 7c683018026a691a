"""Hostile frames never end the listener's reading: a property over shapes.

One real HA simulator and one HAClient on a loop in a thread serve every example: the
simulator sends the generated frames exactly as drawn, each followed by a valid event carrying
a marker; the client must stay on the same connection and every valid event must reach it, in
order, while each unusable frame or message is counted with a reason.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from listener.ha.client import HAClient
from listener.health.stats import ListenerStats
from tests.helpers import wait_until
from tests.sim_thread import SimulatorThread

pytestmark = pytest.mark.integration

TOKEN = "hostile-token-0123456789"
MARKER = "__marker__"


@dataclass
class Reader:
    """The client under test and what reached its event handler."""

    sim: SimulatorThread
    client: HAClient
    stats: ListenerStats
    received: list[dict[str, Any]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    @property
    def subscription(self) -> int:
        return int(self.stats.subscriptions["state_changed"])

    def markers(self) -> list[int]:
        return [e[MARKER] for e in self.received if isinstance(e.get(MARKER), int)]


@pytest.fixture(scope="module")
def reader() -> Iterator[Reader]:
    sim = SimulatorThread(token=TOKEN, rate=1).start(paused=True)
    stats = ListenerStats()
    received: list[dict[str, Any]] = []

    async def on_event(event: dict[str, Any]) -> None:
        received.append(event)

    async def make() -> Reader:
        client = HAClient(sim.sim.url, TOKEN, ("state_changed",), on_event, stats)
        found = Reader(sim, client, stats, received)
        found.task = asyncio.create_task(client.run())
        return found

    found = sim.call(make())
    wait_until(lambda: stats.connection_state == "subscribed", 10, message="subscribed")
    try:
        yield found
    finally:

        async def finish() -> None:
            await found.client.stop()
            if found.task is not None:
                await asyncio.wait_for(found.task, 10)

        sim.call(finish())
        sim.stop()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)
not_a_string = json_values.filter(lambda v: not isinstance(v, str))
not_an_int = json_values.filter(lambda v: not isinstance(v, int) or isinstance(v, bool))


def deep(depth: int, opener: str) -> str:
    return opener * depth


@st.composite
def hostile_messages(draw: st.DrawFn) -> Any:
    """A message HA never sends: wrong types in the envelope or the event, anything at all."""
    event = draw(
        st.fixed_dictionaries(
            {"event_type": not_a_string | st.just("state_changed")},
            optional={"data": json_values, "time_fired": json_values, "context": json_values},
        )
    )
    return draw(
        st.one_of(
            json_values,
            st.fixed_dictionaries({"type": not_a_string, "id": json_values}),
            st.fixed_dictionaries(
                {"type": st.just("event"), "id": not_an_int, "event": st.just(event)}
            ),
            st.fixed_dictionaries(
                {"type": st.just("event"), "id": st.just(2), "event": st.just(event)}
            ),
            st.fixed_dictionaries(
                {"type": st.just("event"), "id": st.just(2), "event": not_a_string}
            ),
            st.fixed_dictionaries(
                {"type": st.sampled_from(["result", "pong"]), "id": not_an_int},
                optional={"success": json_values, "error": json_values, "result": json_values},
            ),
        )
    )


@st.composite
def hostile_frames(draw: st.DrawFn) -> tuple[str, bool]:
    """A frame, and whether it is one JSON object (which HA could coalesce with others)."""
    kind = draw(st.sampled_from(["message", "array", "deep", "text"]))
    if kind == "deep":
        opener = draw(st.sampled_from(["[", '{"a":', "[{}"]))
        return deep(draw(st.integers(500, 120_000)), opener), False
    if kind == "text":
        return draw(st.text(max_size=40)), False
    if kind == "array":
        return json.dumps(draw(st.lists(hostile_messages(), max_size=5))), False
    message = draw(hostile_messages())
    return json.dumps(message), isinstance(message, dict)


counter = itertools.count(1)


def valid_event(subscription: int) -> tuple[int, str]:
    marker = next(counter)
    event = {
        "event_type": "state_changed",
        "data": {"entity_id": "sensor.hostile", "old_state": None, "new_state": None},
        "time_fired": "2024-03-01T12:00:00+00:00",
        MARKER: marker,
    }
    return marker, json.dumps({"type": "event", "id": subscription, "event": event})


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(frames=st.lists(hostile_frames(), min_size=1, max_size=6), mixed=st.booleans())
def test_hostile_frames_are_skipped_and_every_valid_event_lands(
    reader: Reader, frames: list[tuple[str, bool]], mixed: bool
) -> None:
    subscription = reader.subscription
    connects = reader.stats.connects_ok
    sent: list[int] = []
    to_send: list[str] = []
    for frame, one_object in frames:
        marker, good = valid_event(subscription)
        sent.append(marker)
        if mixed and one_object:
            # HA coalesces: a valid event in the same array as a hostile message still lands.
            to_send.append(f"[{frame},{good}]")
        else:
            to_send.extend((frame, good))

    def send_all() -> None:
        for frame in to_send:
            reader.sim.sim.send_raw(frame)

    reader.sim.do(send_all)
    wait_until(
        lambda: reader.markers()[-1:] == sent[-1:], 10, message=f"the valid event {sent[-1]}"
    )
    assert reader.markers()[-len(sent) :] == sent, "every valid event, in order"
    assert reader.stats.connects_ok == connects, "the same connection: nothing was fatal"
    assert reader.task is not None
    assert not reader.task.done()


def test_each_hostile_shape_is_counted_with_its_reason(reader: Reader) -> None:
    subscription = reader.subscription
    before = dict(reader.stats.skipped_messages)
    marker, good = valid_event(subscription)
    frames = [
        "[" * 100_000,
        json.dumps({"type": "event", "id": [subscription], "event": {"event_type": "x"}}),
        json.dumps({"type": "event", "id": subscription, "event": {"event_type": ["x"]}}),
        json.dumps({"type": "result", "id": [1, 2], "success": True}),
        json.dumps({"type": {"nested": True}}),
        "not json at all",
        good,
    ]

    def send_all() -> None:
        for frame in frames:
            reader.sim.sim.send_raw(frame)

    reader.sim.do(send_all)
    wait_until(lambda: marker in reader.markers(), 10, message="the valid event after them")
    after = reader.stats.skipped_messages
    added = {reason: after[reason] - before.get(reason, 0) for reason in after}
    assert {k: v for k, v in added.items() if v} == {
        "too_deep": 1,
        "bad_event_type": 1,
        "bad_id": 1,
        "bad_type": 1,
        "not_json": 1,
    }
    # The event with a list for an id names no subscription: it goes nowhere, uncounted.
