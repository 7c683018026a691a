"""classify_disconnect: every way a connection to HA ends, and what the loop does next."""

from __future__ import annotations

from typing import Any

import pytest
import websockets
from websockets.datastructures import Headers
from websockets.frames import Close
from websockets.http11 import Response

from listener.ha import protocol
from listener.ha.disconnect import STABLE_AFTER_S, Action, Decision, classify_disconnect

MB = 2**20


def closed(rcvd: int | None, sent: int | None = None) -> websockets.ConnectionClosed:
    both = None if rcvd is None or sent is None else True  # HA's close came first
    return websockets.ConnectionClosedError(
        None if rcvd is None else Close(rcvd, ""), None if sent is None else Close(sent, ""), both
    )


def status(code: int) -> websockets.InvalidStatus:
    return websockets.InvalidStatus(Response(code, "", Headers()))


def decide(error: BaseException | None, **facts: Any) -> Decision:
    given: dict[str, Any] = {
        "logged_in": True,
        "lasted_s": 1.0,
        "stopping": False,
        "gated": True,
        "max_frame_bytes": 64 * MB,
    }
    return classify_disconnect(error, **(given | facts))


RETRIED_TABLE = [
    # (what ended it, facts, reason expected in the log and last_error)
    (closed(None), {}, "connection closed (code 1006)"),
    (closed(1001), {}, "connection closed (code 1001)"),
    (closed(1011, 1011), {}, "connection closed (code 1011)"),
    (status(503), {"logged_in": False}, "HA refused the connection (HTTP 503); is it starting?"),
    (
        ConnectionRefusedError(111, "refused"),
        {"logged_in": False},
        "connection refused: is Home Assistant running and HA_URL right?",
    ),
    (OSError(113, "No route to host"), {"logged_in": False}, "OSError: [Errno 113] No route"),
    (TimeoutError("timed out"), {"logged_in": False}, "TimeoutError: timed out"),
    (
        protocol.ProtocolError("no pong within 10 s: the connection is dead"),
        {},
        "ProtocolError: no pong within 10 s",
    ),
    (
        protocol.ProtocolError("HA refused every subscription (state_changed)"),
        {},
        "ProtocolError: HA refused every subscription",
    ),
    (ConnectionError("the connection to HA was lost"), {}, "ConnectionError: the connection"),
    (
        protocol.CommandFailed("get_states", "unknown_error", "boom"),
        {},
        "CommandFailed: get_states failed",
    ),
]


@pytest.mark.parametrize(("error", "facts", "reason"), RETRIED_TABLE)
def test_a_lost_refused_or_confused_connection_is_retried_after_a_delay(
    error: BaseException, facts: dict[str, Any], reason: str
) -> None:
    decision = decide(error, **facts)
    assert decision.action is Action.RECONNECT
    assert decision.reason.startswith(reason)
    assert decision.failed_login is not facts.get("logged_in", True)
    assert not decision.frame_too_big
    assert not decision.token_refused
    assert not decision.restart_backoff


def test_a_frame_too_big_is_counted_and_the_connection_restarted() -> None:
    decision = decide(closed(None, 1009), max_frame_bytes=MB)
    assert decision == Decision(
        Action.RECONNECT,
        "HA sent a frame too big (over 1 MB, HA_MAX_FRAME_MB); it was skipped and the "
        "connection is restarted",
        frame_too_big=True,
    )
    # HA closing with 1009 is HA's complaint about us, not a frame we skipped.
    assert not decide(closed(1009)).frame_too_big


@pytest.mark.parametrize(
    ("gated", "logged_in", "action"),
    [
        (True, False, Action.WAIT_FOR_TOKEN),
        (False, False, Action.RAISE),  # `ha-ingestor import`: no gate, the command reports it
    ],
)
def test_a_refused_token_waits_for_the_gate_or_is_raised(
    gated: bool, logged_in: bool, action: Action
) -> None:
    decision = decide(
        protocol.AuthInvalid("Invalid access token or password"), gated=gated, logged_in=logged_in
    )
    assert decision == Decision(
        action,
        "auth_invalid: Invalid access token or password",
        failed_login=True,
        token_refused=True,
    )


def test_a_refusal_while_stopping_is_still_remembered() -> None:
    """The gate must record it, or the next start tries the refused token again at once."""
    decision = decide(protocol.AuthInvalid("Invalid access token"), stopping=True)
    assert decision.action is Action.WAIT_FOR_TOKEN


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (None, ""),
        (closed(1000), "connection closed (code 1000)"),
        (TimeoutError("timed out"), "TimeoutError: timed out"),
    ],
)
def test_anything_that_ends_a_connection_while_stopping_stops(
    error: BaseException | None, reason: str
) -> None:
    decision = decide(error, stopping=True)
    assert decision.action is Action.STOP
    assert decision.reason == reason


def test_ha_closing_the_connection_normally_is_retried_and_said() -> None:
    decision = decide(None)
    assert decision == Decision(Action.RECONNECT, "HA closed the connection")


@pytest.mark.parametrize("error", [RuntimeError("a bug"), KeyError("state"), ValueError("x")])
def test_an_error_that_is_not_the_connection_is_raised(error: Exception) -> None:
    for stopping in (False, True):
        assert decide(error, stopping=stopping) == Decision(Action.RAISE)


@pytest.mark.parametrize(
    ("lasted_s", "restart"),
    [(0.0, False), (STABLE_AFTER_S, False), (STABLE_AFTER_S + 0.1, True), (3600.0, True)],
)
def test_a_connection_that_stayed_up_restarts_the_backoff(lasted_s: float, restart: bool) -> None:
    assert decide(closed(None), lasted_s=lasted_s).restart_backoff is restart
    assert decide(None, lasted_s=lasted_s).restart_backoff is restart
