"""Messages of several homes through one pipeline: each enriched from its own home's
registries and, with INSTANCE_TAG, every kind of point tagged with its home."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.renames import Rename, rename_event
from core.rules import Rules
from core.state_heartbeat import state_heartbeat_event
from core.statistics_point import statistics_event
from core.task_message import Source, TaskMessage
from tests.memory_sink import MemorySink
from workers.pipeline import IngestPipeline

AREAS = {"north": "Barn", "south": "Beach hut", None: "Old listener's area"}


def _tags_for(entity_id: str, home: str | None) -> Mapping[str, str]:
    return {"area": AREAS[home]} if entity_id else {}


def _state(entity_id: str, state: str, when: str) -> dict[str, Any]:
    return {"entity_id": entity_id, "state": state, "attributes": {}, "last_updated": when}


def _messages(home: str | None) -> list[dict[str, Any]]:
    state = _state("sensor.t", "21.5", "2026-01-01T00:00:00+00:00")
    live = {"event_type": "state_changed", "data": {"entity_id": "sensor.t", "new_state": state}}
    row = {"start": 1767225600.0, "mean": 20.0}
    events: list[tuple[dict[str, Any], Source]] = [
        (live, "live"),
        (live, "snapshot"),
        (live, "backfill"),
        (state_heartbeat_event(state, 1767225700.0), "heartbeat"),
        (statistics_event("sensor.t", "°C", "hour", row), "import"),
        (rename_event(Rename("r1", "sensor.a", "sensor.b", 1.5, "registry")), "live"),
    ]
    return [
        TaskMessage(event, 1.0, source, seq, instance=home).to_json()
        for seq, (event, source) in enumerate(events)
    ]


def _letters() -> list[tuple[Any, str, str]]:
    return []


def _pipeline(sink: MemorySink, *, instance_tag: bool) -> IngestPipeline:
    letters: list[tuple[Any, str, str]] = []
    return IngestPipeline(
        rules=Rules.from_mapping(None),
        sink=sink,
        dead_letters=letters.extend,
        tags_for=_tags_for,
        instance_tag=instance_tag,
    )


def test_every_kind_of_point_carries_its_home_and_its_own_homes_area() -> None:
    sink = MemorySink()
    outcome = _pipeline(sink, instance_tag=True).process(
        _messages("north") + _messages("south") + _messages(None)
    )
    assert outcome.written == 18
    lines = sink.stored
    assert all(",instance=north" in line for line in lines[:6]), lines[:6]
    assert all(",instance=south" in line for line in lines[6:12]), lines[6:12]
    assert not any("instance=" in line for line in lines[12:]), "an old listener's: no home"
    assert all("area=Barn" in line for line in lines[:5])
    assert all(r"area=Beach\ hut" in line for line in lines[6:11])
    assert not any("area=" in line for line in (lines[5], lines[11])), "renames: no area"


def test_without_instance_tag_points_keep_has_schema_but_each_homes_area() -> None:
    sink = MemorySink()
    outcome = _pipeline(sink, instance_tag=False).process(_messages("north") + _messages("south"))
    assert outcome.written == 12
    assert not any("instance=" in line for line in sink.stored)
    assert "area=Barn" in sink.stored[0]
    assert r"area=Beach\ hut" in sink.stored[6]


def test_the_home_wins_over_a_static_tag_of_that_name() -> None:
    sink = MemorySink()
    pipeline = IngestPipeline(
        rules=Rules.from_mapping({"tags": {"instance": "static"}}),
        sink=sink,
        dead_letters=_letters().extend,
        instance_tag=True,
    )
    assert pipeline.process(_messages("north")[:1]).written == 1
    assert ",instance=north" in sink.stored[0]
    assert "static" not in sink.stored[0]
