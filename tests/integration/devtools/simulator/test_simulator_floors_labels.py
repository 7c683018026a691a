"""The simulator's floor and label registries (HA 2024.4+), shaped as HA's source sends them
(tests/fixtures/floors_labels_2024_4.jsonl), edited live, and absent when it plays HA 2024.3."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devtools.simulator import HASimulator
from tests.integration.devtools.simulator.test_simulator import FIXTURES, HAClient, run, started

pytestmark = pytest.mark.integration


def shaped() -> dict[str, dict[str, Any]]:
    lines = (FIXTURES / "floors_labels_2024_4.jsonl").read_text("utf-8").splitlines()
    return {item["note"]: item for item in map(json.loads, lines)}


async def lists(client: HAClient) -> dict[str, list[dict[str, Any]]]:
    kinds = ("area", "device", "entity", "floor", "label")
    return {k: (await client.command(f"config/{k}_registry/list"))["result"] for k in kinds}


def test_floors_labels_and_areas_have_the_shapes_of_has_source() -> None:
    fixture = shaped()

    async def body() -> None:
        sim = await started(rate=1.0, entities=20, paused=True)
        try:
            found = await lists(await HAClient.open(sim.url))
            for kind in ("area", "floor", "label"):
                keys = set(fixture[f"{kind} registry"]["recv"]["result"][0])
                assert found[kind], kind
                assert all(set(item) == keys for item in found[kind]), kind
            floor_ids = {f["floor_id"] for f in found["floor"]}
            label_ids = {label["label_id"] for label in found["label"]}
            assert {a["floor_id"] for a in found["area"]} <= floor_ids
            held = [
                *(a["labels"] for a in found["area"]),
                *(d["labels"] for d in found["device"]),
                *(e["labels"] for e in found["entity"]),
            ]
            assert {label for labels in held for label in labels} == label_ids, "all in use"
            assert all(any(item["labels"] for item in found[k]) for k in ("area", "device"))
            assert any(e["labels"] for e in found["entity"])
        finally:
            await sim.stop()

    run(body())


def test_live_edits_fire_the_registry_events_ha_fires() -> None:
    async def body() -> None:
        sim = await started(rate=1.0, entities=20, paused=True)
        try:
            client = await HAClient.open(sim.url)
            for kind in ("floor", "label", "area", "entity"):
                reply = await client.command(
                    "subscribe_events", event_type=f"{kind}_registry_updated"
                )
                assert reply["success"] is True
            entity_id = sim.home.registry[0].entity_id
            sim.create_floor("attic", "Attic", 2)
            sim.create_label("outdoor", "Outdoor", "green")
            sim.move_area("kitchen", "attic")
            sim.set_labels("entity", entity_id, ["outdoor"])
            events = [m["event"] for m in await client.collect_events(4)]
            assert [(e["event_type"], e["data"]) for e in events] == [
                ("floor_registry_updated", {"action": "create", "floor_id": "attic"}),
                ("label_registry_updated", {"action": "create", "label_id": "outdoor"}),
                ("area_registry_updated", {"action": "update", "area_id": "kitchen"}),
                (
                    "entity_registry_updated",
                    {"action": "update", "entity_id": entity_id, "changes": {"labels": []}},
                ),
            ]
            found = await lists(client)
            assert {"floor_id": "attic", "name": "Attic", "level": 2}.items() <= next(
                f for f in found["floor"] if f["floor_id"] == "attic"
            ).items()
            assert (
                next(a for a in found["area"] if a["area_id"] == "kitchen")["floor_id"] == "attic"
            )
            entity = next(e for e in found["entity"] if e["entity_id"] == entity_id)
            assert entity["labels"] == ["outdoor"]
            with pytest.raises(KeyError):
                sim.set_labels("entity", entity_id, ["no_such_label"])
        finally:
            await sim.stop()

    run(body())


def test_as_ha_2024_3_it_answers_unknown_command() -> None:
    fixture = shaped()["HA 2024.3 (captured: see protocol_exchanges.jsonl, unknown command)"]

    async def body() -> None:
        sim: HASimulator = await started(rate=1.0, paused=True, floors_and_labels=False)
        try:
            client = await HAClient.open(sim.url)
            for kind in ("floor", "label"):
                reply = await client.command(f"config/{kind}_registry/list")
                assert {k: reply[k] for k in ("success", "error")} == {
                    k: fixture["recv"][k] for k in ("success", "error")
                }
            areas = (await client.command("config/area_registry/list"))["result"]
            assert not any("floor_id" in a or "labels" in a for a in areas)
            with pytest.raises(RuntimeError):
                sim.create_floor("attic", "Attic")
        finally:
            await sim.stop()

    run(body())
