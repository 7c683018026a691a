"""JSON in and out, one way for the listener and the workers: orjson, the standard library where
orjson refuses.

orjson is several times faster both ways, and the listener's path is JSON from end to end: HA's
frames in, task messages out. It refuses what HA's JSON can still carry: lone surrogates
(`"\\ud800"`, which HA's own fallback encoder writes) and, when writing, integers beyond 64 bits;
the standard library takes both (writing ASCII only, as Celery's own JSON does, so a lone
surrogate cannot break an encoding). Two differences are accepted: orjson writes NaN and the
infinities as null, and reads an integer beyond 64 bits as a float; the worker drops non-finite
numbers and makes every number field a float anyway (DESIGN §3.2).

Every module of the product reads and writes JSON here (tests/unit/test_one_json_library.py
checks it), so these choices are made once; the few that must keep the standard library's exact
text say why where they use it.
"""

from __future__ import annotations

import json  # the fallback for what orjson refuses
from collections.abc import Callable
from typing import Any

import orjson

_dumps_ascii = json.JSONEncoder(separators=(",", ":")).encode


def dumps(
    value: Any, *, default: Callable[[Any], Any] | None = None, indent: bool = False
) -> bytes:
    """`value` as compact UTF-8 JSON; `default` makes what JSON cannot hold something it can
    (as the standard library's), `indent` lays it out for people (two spaces)."""
    try:
        return orjson.dumps(value, default, orjson.OPT_INDENT_2 if indent else None)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return _standard(value, default, indent)


def _standard(value: Any, default: Callable[[Any], Any] | None, indent: bool) -> bytes:
    """What orjson refused (lone surrogates, huge integers, keys that are not strings)."""
    if default is None and not indent:
        return _dumps_ascii(value).encode("ascii")
    separators = (",", ": ") if indent else (",", ":")
    text = json.dumps(value, default=default, indent=2 if indent else None, separators=separators)
    return text.encode("ascii")


def loads(data: bytes | str) -> Any:
    """The value JSON text holds; ValueError when it is not JSON, RecursionError when it is
    nested deeper than the interpreter's recursion limit (both from the standard library, which
    reads whatever orjson refused)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
