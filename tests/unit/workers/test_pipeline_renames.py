"""A rename's task message through the pipeline: its point, never enrichment, never a letter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.renames import Rename, rename_event
from core.rules import Rules
from tests.memory_sink import MemorySink
from workers.pipeline import IngestPipeline


def test_a_rename_message_is_written_as_its_point_without_enrichment() -> None:
    sink = MemorySink()
    letters: list[tuple[Any, str, str]] = []
    asked: list[str] = []

    def tags_for(entity_id: str, _home: str | None = None) -> Mapping[str, str]:
        asked.append(entity_id)
        return {"area": "Kitchen"}

    pipeline = IngestPipeline(
        rules=Rules.from_mapping(None), sink=sink, dead_letters=letters.extend, tags_for=tags_for
    )
    rename = Rename("r1", "sensor.kitchen_temp", "sensor.kitchen_temperature", 1.5, "registry")
    message = {"event": rename_event(rename), "received_at": 2.0, "source": "snapshot", "seq": 1}
    outcome = pipeline.process([message])
    assert outcome.written == 1
    assert letters == []
    assert sink.stored == [
        'ha_entity_renames,domain=sensor,entity_registry_id=r1 found_by="registry",'
        'new_entity_id="kitchen_temperature",old_entity_id="kitchen_temp" 1500000000'
    ]
    assert all(entity_id == "" for entity_id in asked), "no entity's tags on a rename point"
