"""The simulator's rename, as HA does it: same registry id, the state moves, history follows."""

from __future__ import annotations

import pytest

from devtools.simulator.entities import Home

NOW_US = 1_795_000_000_000_000
OLD, NEW = "sensor.temperature_du_sejour", "sensor.salon_temperature"


def test_a_rename_keeps_the_registry_id_and_moves_state_and_history() -> None:
    home = Home(12, now_us=NOW_US)
    rid = next(e.registry_id for e in home.registry if e.entity_id == OLD)
    state = home.states[OLD]["state"]
    rows = len(home.history(OLD))
    removed, added = home.rename_entity(OLD, NEW, NOW_US + 1_000_000)
    assert next(e.registry_id for e in home.registry if e.entity_id == NEW) == rid
    assert OLD not in home.entity_ids
    assert OLD not in home.states
    assert removed.event["data"] == {
        "entity_id": OLD, "old_state": removed.event["data"]["old_state"], "new_state": None
    }  # fmt: skip
    assert added.event["data"]["old_state"] is None
    assert added.event["data"]["new_state"]["state"] == state
    assert added.event["data"]["new_state"]["entity_id"] == NEW
    assert home.states[NEW]["last_updated"] == added.event["time_fired"]
    assert len(home.history(NEW)) == rows + 1
    assert home.change(NEW, NOW_US + 2_000_000).event["data"]["entity_id"] == NEW


@pytest.mark.parametrize("new", [NEW.replace("sensor", "binary_sensor"), "sensor.power_usage"])
def test_a_rename_to_another_domain_or_a_taken_id_is_refused(new: str) -> None:
    home = Home(20, now_us=NOW_US)
    with pytest.raises(ValueError, match="cannot rename"):
        home.rename_entity(OLD, new, NOW_US + 1)
