"""The sans-I/O HA protocol: frames, auth replies, results and id rules."""

from __future__ import annotations

import json
from typing import Any

import pytest

from listener.ha import protocol


def test_a_frame_with_one_message_gives_a_list_of_one() -> None:
    assert protocol.parse_frame('{"type": "pong", "id": 3}') == [{"type": "pong", "id": 3}]


def test_a_frame_read_as_bytes_parses_as_its_text_does(fixtures_dir) -> None:
    """The reader takes frames as bytes (no text decoding before orjson)."""
    frame = (fixtures_dir / "sample_coalesced.jsonl").read_text(encoding="utf-8").splitlines()[0]
    assert protocol.parse_frame(frame.encode()) == protocol.parse_frame(frame) == json.loads(frame)


def test_what_orjson_refuses_but_ha_can_send_still_parses() -> None:
    """HA's fallback encoder writes lone surrogates as escapes; orjson refuses them."""
    frame = b'{"type": "event", "id": 1, "event": {"event_type": "x", "name": "a\\ud800"}}'
    assert protocol.parse_frame(frame) == [json.loads(frame)]
    assert protocol.parse_frame(frame)[0]["event"]["name"] == "a\ud800"


def test_a_coalesced_frame_gives_every_message(fixtures_dir) -> None:
    frame = (fixtures_dir / "sample_coalesced.jsonl").read_text(encoding="utf-8").splitlines()[0]
    messages = protocol.parse_frame(frame)
    assert len(messages) == len(json.loads(frame)) > 1
    assert all(m["type"] == "event" for m in messages)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not an object"),
        ('"text"', "JSON str"),
        (b"\xff\xfe", "not JSON"),
        ("", "not JSON"),
    ],
)
def test_malformed_frames_raise_with_a_reason(frame: str | bytes, reason: str) -> None:
    with pytest.raises(protocol.MalformedFrame, match=reason):
        protocol.parse_frame(frame)


def test_auth_ok_returns_the_version_and_auth_invalid_is_fatal() -> None:
    assert protocol.check_auth_reply({"type": "auth_ok", "ha_version": "2024.3.3"}) == "2024.3.3"
    with pytest.raises(protocol.AuthInvalid, match="Invalid access token"):
        protocol.check_auth_reply(
            {"type": "auth_invalid", "message": "Invalid access token or password"}
        )
    with pytest.raises(protocol.ProtocolError, match="expected auth_ok"):
        protocol.check_auth_reply({"type": "result"})


def test_session_ids_increase_strictly_from_one() -> None:
    session = protocol.Session()
    assert session.peek_next_id() == 1
    first = session.command("subscribe_events", event_type="state_changed")
    second = session.command("ping")
    assert first == {"id": 1, "type": "subscribe_events", "event_type": "state_changed"}
    assert second["id"] == 2
    assert session.peek_next_id() == 3


def test_results_and_errors_as_ha_sends_them(fixtures_dir) -> None:
    exchanges = [
        json.loads(line)
        for line in (fixtures_dir / "protocol_exchanges.jsonl").read_text("utf-8").splitlines()
    ]
    by_note = {e["note"]: e for e in exchanges}
    assert protocol.result_of(by_note["subscribe_events"]["recv"], "subscribe_events") is None
    with pytest.raises(protocol.CommandFailed, match="unknown_command") as info:
        protocol.result_of(by_note["unknown command"]["recv"], "no_such_command")
    assert info.value.code == "unknown_command"
    with pytest.raises(protocol.CommandFailed, match="id_reuse"):
        protocol.result_of(by_note["id reuse"]["recv"], "ping")


def test_a_frame_splits_into_events_by_subscription_and_replies_in_order() -> None:
    event = {"event_type": "state_changed"}
    messages: list[dict[str, Any]] = [
        {"id": 5, "type": "event", "event": event},
        {"id": 5, "type": "result", "success": True},
        {"id": 9, "type": "event", "event": "not an object"},
        {"type": "event", "event": event},
        {"id": "7", "type": "event", "event": event},
        {"id": 6, "type": "pong"},
    ]
    assert [(r.subscription, r.event, r.problem) for r in protocol.classify(messages)] == [
        (5, event, None),
        (None, None, None),
        (-1, None, "event_not_object"),
        (-1, event, None),
        (-1, event, None),
        (None, None, None),
    ]
    assert [r.message for r in protocol.classify(messages)] == messages


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        ({"type": ["event"], "id": 1}, "bad_type"),
        ({"id": 1}, "bad_type"),
        ({"type": "result", "id": [1], "success": True}, "bad_id"),
        ({"type": "pong", "id": {"a": 1}}, "bad_id"),
        ({"type": "pong", "id": True}, "bad_id"),
        ({"type": "event", "id": 2, "event": {"event_type": ["state_changed"]}}, "bad_event_type"),
        ({"type": "event", "id": 2, "event": {"data": {}}}, "bad_event_type"),
        ({"type": "event", "id": 2, "event": [1]}, "event_not_object"),
    ],
)
def test_shapes_ha_never_sends_are_skipped_with_their_reason(
    message: dict[str, Any], problem: str
) -> None:
    (routed,) = protocol.classify([message])
    assert routed.problem == problem
    assert routed.event is None


def test_deep_nesting_is_a_malformed_frame_not_a_recursion_error() -> None:
    with pytest.raises(protocol.MalformedFrame) as info:
        protocol.parse_frame("[" * 100_000)
    assert info.value.reason == "too_deep"


def test_an_empty_frame_in_the_auth_phase_is_a_protocol_error() -> None:
    with pytest.raises(protocol.ProtocolError, match="empty frame"):
        protocol.first_message("[]")


def test_an_error_that_is_not_an_object_still_fails_the_command() -> None:
    reply = {"id": 3, "type": "result", "success": False, "error": "boom"}
    with pytest.raises(protocol.CommandFailed, match=r"ping failed: \?"):
        protocol.result_of(reply, "ping")
