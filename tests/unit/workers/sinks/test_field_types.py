"""The field type cache: learnt from refusals (and the schema where there is one), forgotten."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from workers.sinks.errors import SinkUnavailable
from workers.sinks.field_types import FieldTypeCache


def refusal(field: str, measurement: str, given: str, held: str) -> str:
    return (
        f'partial write: field type conflict: input field "{field}" on measurement '
        f'"{measurement}" is type {given}, already exists as type {held} dropped=1'
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_refusal_teaches_its_field_once() -> None:
    cache = FieldTypeCache()
    assert cache.held("°C") == {}
    assert cache.learn(refusal("value", "°C", "float", "integer")) is True
    assert cache.held("°C") == {"value": "integer"}
    assert cache.learn(refusal("value", "°C", "float", "integer")) is False, "nothing new"
    assert cache.learn("unable to parse 'x': missing fields") is False
    assert cache.learn(refusal("state", "°C", "string", "float")) is True
    assert cache.held("°C") == {"value": "integer", "state": "float"}
    assert cache.held("%") == {}


def test_the_schema_tells_the_measurements_other_fields_but_the_refusal_wins() -> None:
    asked: list[str] = []

    def schema(measurement: str) -> Mapping[str, Iterable[str]]:
        asked.append(measurement)
        # `value` in two shards with two types: only a refusal says which one a write meets.
        return {"value": {"float", "integer"}, "battery": {"boolean"}, "mode_str": {"string"}}

    cache = FieldTypeCache(schema)
    assert cache.learn(refusal("value", "%", "float", "integer")) is True
    assert cache.held("%") == {"value": "integer", "battery": "boolean", "mode_str": "string"}
    assert asked == ["%"]


def test_a_schema_that_cannot_answer_leaves_the_refusal() -> None:
    def schema(measurement: str) -> Mapping[str, Iterable[str]]:
        raise SinkUnavailable("InfluxDB at http://127.0.0.1:1 is unavailable (503)")

    cache = FieldTypeCache(schema)
    assert cache.learn(refusal("value", "W", "float", "string")) is True
    assert cache.held("W") == {"value": "string"}


def test_what_was_learnt_is_forgotten_after_keep_s_and_learnt_again() -> None:
    clock = Clock()
    cache = FieldTypeCache(keep_s=3600, clock=clock)
    cache.learn(refusal("value", "°C", "float", "integer"))
    clock.now = 3600
    assert cache.held("°C") == {"value": "integer"}
    clock.now = 3601
    assert cache.held("°C") == {}, "the stored schema may have been fixed meanwhile"
    assert cache.learn(refusal("value", "°C", "float", "integer")) is True
    assert cache.held("°C") == {"value": "integer"}
