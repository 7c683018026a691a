"""The task message contract (DESIGN.md §3.1)."""

from __future__ import annotations

import json
import zlib
from typing import Any

import pytest

from core.task_message import (
    EXCERPT_BYTES,
    INGEST_TASK,
    InvalidMessage,
    TaskMessage,
    TaskWire,
    Undecodable,
    decode_stored,
    decode_task,
    parse_message,
    received_at_of,
)


def test_a_message_round_trips() -> None:
    message = TaskMessage({"event_type": "state_changed"}, 1.5, "live", 7)
    assert parse_message(message.to_json()) == message


def test_an_import_message_carries_its_run_and_older_ones_need_none() -> None:
    message = TaskMessage({"event_type": "state_changed"}, 1.5, "import", 0, "run1")
    assert message.to_json()["run"] == "run1"
    assert parse_message(message.to_json()) == message
    assert "run" not in TaskMessage({}, 1.5, "live", 7).to_json()
    with pytest.raises(InvalidMessage, match="'run'"):
        parse_message({"event": {}, "received_at": 1.0, "source": "import", "seq": 1, "run": 5})


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "not an object"),
        ({}, "'event'"),
        ({"event": {}, "received_at": "x", "source": "live", "seq": 1}, "received_at"),
        ({"event": {}, "received_at": 1.0, "source": "cron", "seq": 1}, "source"),
        ({"event": {}, "received_at": 1.0, "source": "live", "seq": True}, "seq"),
    ],
)
def test_bad_messages_say_what_is_wrong(raw: Any, reason: str) -> None:
    with pytest.raises(InvalidMessage, match=reason):
        parse_message(raw)


# --- decoding what a worker took: the one decoder, a typed result --------------------------

GOOD = {"event": {"event_type": "state_changed"}, "received_at": 1.5, "source": "live", "seq": 7}


def _stored(arg: Any, *, task: str = INGEST_TASK, compress: bool = True) -> bytes:
    return TaskWire(task, "ha_events", origin="gen1@test", compress=compress).encode(arg)


@pytest.mark.parametrize("compress", [True, False])
def test_a_stored_ingest_task_decodes_to_its_argument(compress: bool) -> None:
    assert decode_stored(_stored(GOOD, compress=compress)) == GOOD
    assert decode_stored(_stored(GOOD).decode()) == GOOD


def test_celerys_decoded_body_and_a_deliverys_compressed_body_decode_alike() -> None:
    body = json.dumps([[GOOD], {}, {"callbacks": None}]).encode()
    assert decode_task(INGEST_TASK, [[GOOD], {}, {}]) == GOOD
    assert decode_task(INGEST_TASK, body, content_type="application/json") == GOOD
    packed = zlib.compress(body)
    assert decode_task(INGEST_TASK, packed, compression="application/x-gzip") == GOOD
    assert decode_task(INGEST_TASK, packed, compression="zlib") == GOOD


def _envelope(**changes: Any) -> bytes:
    message = json.loads(_stored(GOOD, compress=False))
    message.update(changes)
    return json.dumps(message).encode()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "not JSON: "),
        (b"[1, 2]", "not a Celery task message (AttributeError"),
        (b'{"headers": {}}', "not a Celery task message (KeyError: 'body')"),
        (b'{"body": "x"}', "not a Celery task message (no task header)"),
        (_stored(GOOD, task="other.task"), "a 'other.task' task in the ingest queue"),
        (_envelope(body="bm90IGpzb24="), "its body is not JSON: "),
        (_envelope(body="W1tdLHt9LHt9XQ=="), "not a Celery protocol-2 task body with one argument"),
        (_envelope(**{"content-type": "application/x-python-serialize"}),
         "a 'application/x-python-serialize' body, and workers read only application/json"),
    ],
)  # fmt: skip
def test_what_is_no_ingest_task_is_undecodable_with_the_real_reason(
    raw: bytes, reason: str
) -> None:
    decoded = decode_stored(raw)
    assert isinstance(decoded, Undecodable)
    assert decoded.reason.startswith(reason), decoded.reason
    assert decoded.excerpt == repr(raw[:EXCERPT_BYTES])


@pytest.mark.parametrize(
    ("compression", "body", "reason"),
    [
        ("bzip2", b"x", "compressed with 'bzip2', which workers do not read"),
        ("zlib", b"not zlib", "its body is not zlib data as its header says"),
    ],
)
def test_a_body_that_cannot_be_uncompressed_says_why(
    compression: str, body: bytes, reason: str
) -> None:
    decoded = decode_task(INGEST_TASK, body, compression=compression)
    assert isinstance(decoded, Undecodable)
    assert decoded.reason.startswith(reason)


def test_a_celery_request_without_its_argument_is_undecodable() -> None:
    decoded = decode_task(INGEST_TASK, [[], {"event": {}}, {}])
    assert isinstance(decoded, Undecodable)
    assert "with one argument" in decoded.reason


@pytest.mark.parametrize("raw", [None, b"not json", _envelope(body="W1tdLHt9LHt9XQ=="), b"{}"])
def test_received_at_of_a_message_without_one_is_none(raw: bytes | None) -> None:
    assert received_at_of(raw) is None
    assert received_at_of(_stored(GOOD)) == 1.5
    assert received_at_of(_stored(GOOD, task="other.task")) == 1.5, "whatever the task"


def test_a_message_names_its_home_and_older_ones_need_none() -> None:
    message = TaskMessage({"event_type": "state_changed"}, 1.5, "live", 7, instance="lab-2")
    assert message.to_json()["instance"] == "lab-2"
    assert parse_message(message.to_json()) == message
    old = {"event": {}, "received_at": 1.0, "source": "live", "seq": 1}
    assert "instance" not in TaskMessage({}, 1.5, "live", 7).to_json()
    assert parse_message(old).instance is None


@pytest.mark.parametrize("instance", [5, "", "Holiday Home", "home:x", "a" * 65])
def test_a_home_that_is_no_key_safe_name_is_an_invalid_message(instance: Any) -> None:
    raw = {"event": {}, "received_at": 1.0, "source": "live", "seq": 1, "instance": instance}
    with pytest.raises(InvalidMessage, match=r"'instance'.*lower-case letters"):
        parse_message(raw)
