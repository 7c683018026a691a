"""The task message contract (DESIGN.md §3.1)."""

from __future__ import annotations

from typing import Any

import pytest

from core.task_message import InvalidMessage, TaskMessage, parse_message


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
