"""JSON in and out: orjson's output where it can, the standard library's where it refuses."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

import orjson
import pytest

from core import json_codec


@pytest.mark.parametrize(
    "value",
    [
        {"event_type": "state_changed", "data": {"unit": "°C", "name": 'Küche "Nord" 温度 🌡'}},
        [1, 2.5, None, True, {"empty": {}}],
        "text",
    ],
)
def test_what_orjson_writes_is_written_by_orjson(value: Any) -> None:
    assert json_codec.dumps(value) == orjson.dumps(value)
    assert json_codec.loads(json_codec.dumps(value)) == value


@pytest.mark.parametrize(
    "value", [{"lone": "a\ud800b"}, {"big": 2**64}, [-(2**70)]], ids=["surrogate", "u64+1", "neg"]
)
def test_what_orjson_refuses_to_write_the_standard_library_writes(value: Any) -> None:
    data = json_codec.dumps(value)
    data.decode("ascii")  # escaped: nothing can break an encoding downstream
    assert json.loads(data) == value, "exact, as the standard library reads it"


@pytest.mark.parametrize(
    "value", [{"a": [1, {"b": None}], "c": {}, "d": []}, {"lone": "a\ud800b", "n": [2**64]}]
)
def test_indented_output_is_the_standard_library_s_layout(value: Any) -> None:
    assert json_codec.dumps(value, indent=True) == json.dumps(value, indent=2).encode()


def test_default_makes_what_json_cannot_hold_something_it_can() -> None:
    assert json_codec.dumps({"at": Decimal("1.5")}, default=str) == b'{"at":"1.5"}'
    # Keys that are not strings: orjson refuses them, the standard library writes them.
    odd = {1: Decimal("2"), "lone": "\ud800"}
    assert json_codec.dumps(odd, default=str) == json.dumps(
        odd, separators=(",", ":"), default=str
    ).encode("ascii")


def test_lone_surrogates_read_back_exactly() -> None:
    assert json_codec.loads(b'{"lone": "a\\ud800b"}') == {"lone": "a\ud800b"}


def test_accepted_differences_non_finite_numbers_and_huge_integers() -> None:
    assert json_codec.dumps([math.nan, math.inf]) == b"[null,null]"
    (huge,) = json_codec.loads(b"[18446744073709551616]")
    assert huge == float(2**64)


@pytest.mark.parametrize("data", [b"not json", b"\xff\xfe", b"", "{"])
def test_what_is_not_json_is_a_value_error(data: bytes | str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - every reason is a ValueError by contract
        json_codec.loads(data)


def test_nesting_deeper_than_the_recursion_limit_is_a_recursion_error() -> None:
    with pytest.raises(RecursionError):
        json_codec.loads("[" * 100_000)
