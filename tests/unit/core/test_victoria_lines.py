"""The VictoriaMetrics mapping: numbers as values, texts as labels of a 1, the guard's limit."""

from __future__ import annotations

import pytest

from core.transform import Point
from core.victoria_lines import TextGuard, encode_victoria

HOUR_NS = 3600 * 10**9
T0 = 1_700_000_000 * 10**9


def _point(fields: tuple[tuple[str, float | str], ...], *, time_ns: int = T0) -> Point:
    tags = (("domain", "binary_sensor"), ("entity_id", "door"))
    return Point("state", tags, fields, time_ns)


def _guard(max_values: int = 3) -> TextGuard:
    return TextGuard(max_values, HOUR_NS)


def test_text_state_becomes_a_label_of_a_one() -> None:
    lines = encode_victoria(_point((("state", "on"), ("value", 1.0))), _guard())
    assert lines.text.split("\n") == [
        f"state,domain=binary_sensor,entity_id=door value=1.0 {T0}",
        f"state,domain=binary_sensor,entity_id=door,state=on state=1.0 {T0}",
    ]
    assert lines.left_out == 0


def test_numbers_only_stay_one_line() -> None:
    lines = encode_victoria(_point((("temperature", 21.5), ("value", 3.0))), _guard())
    expected = f"state,domain=binary_sensor,entity_id=door temperature=21.5,value=3.0 {T0}"
    assert lines.text == expected


def test_text_attribute_follows_the_mapping_and_is_escaped() -> None:
    lines = encode_victoria(_point((("friendly_name_str", "Front door, main"),)), _guard())
    assert lines.text == (
        "state,domain=binary_sensor,entity_id=door,friendly_name_str=Front\\ door\\,\\ main "
        f"friendly_name_str=1.0 {T0}"
    )


def test_label_renamed_when_a_tag_has_the_field_name() -> None:
    point = Point("state", (("entity_id", "x"), ("state", "tagged")), (("state", "away"),), T0)
    lines = encode_victoria(point, _guard())
    assert lines.text == f"state,entity_id=x,state=tagged,state_text=away state=1.0 {T0}"


def test_precision_applies_to_every_line() -> None:
    lines = encode_victoria(_point((("state", "on"), ("value", 1.0))), _guard(), "s")
    assert all(line.endswith(f" {T0 // 10**9}") for line in lines.text.split("\n"))


def test_empty_text_is_left_out_and_counted() -> None:
    lines = encode_victoria(_point((("note_str", ""), ("value", 2.0))), _guard())
    assert lines.text == f"state,domain=binary_sensor,entity_id=door value=2.0 {T0}"
    assert lines.left_out == 1


def test_guard_keeps_at_most_n_texts_per_series_per_window() -> None:
    guard = _guard(2)
    kept = [
        encode_victoria(_point((("state", text),), time_ns=T0 + i), guard)
        for i, text in enumerate(["a", "b", "a", "c", "d"])
    ]
    assert [k.left_out for k in kept] == [0, 0, 0, 1, 1]
    assert kept[3].text == ""
    # A new window: a fresh allowance.
    later = encode_victoria(_point((("state", "c"),), time_ns=T0 + HOUR_NS), guard)
    assert later.left_out == 0
    # A late point of the old window is judged against the newest window.
    late = encode_victoria(_point((("state", "e"),), time_ns=T0 + 5), guard)
    assert late.left_out == 0
    assert encode_victoria(_point((("state", "f"),), time_ns=T0 + 6), guard).left_out == 1


def test_guard_is_per_entity_and_per_field() -> None:
    guard = _guard(1)
    door = encode_victoria(_point((("state", "on"), ("mode_str", "x"))), guard)
    other = Point("state", (("entity_id", "window"),), (("state", "off"),), T0)
    assert door.left_out == 0
    assert encode_victoria(other, guard).left_out == 0


@pytest.mark.parametrize(("max_values", "window_ns"), [(0, HOUR_NS), (3, 0)])
def test_guard_refuses_nonsense_limits(max_values: int, window_ns: int) -> None:
    with pytest.raises(ValueError, match="max_values"):
        TextGuard(max_values, window_ns)
