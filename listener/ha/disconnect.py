"""What to do after a connection to HA ended: one pure decision, the only one the loop asks.

The reconnect loop (`HAClient.run`) hands `classify_disconnect` whatever ended the session —
the exception, or None when the session returned — plus the few facts that change the
answer, and follows the `Decision`; the delays come from the injected backoff generator.
As websockets' `process_exception`: what is retried, what waits and what is raised is decided
here, in a table the unit tests walk row by row.

| what ended the connection                      | action         | counted as            |
|------------------------------------------------|----------------|-----------------------|
| `auth_invalid` (with an auth gate)             | WAIT_FOR_TOKEN | a failed login        |
| `auth_invalid` (no gate: a one-off command)    | RAISE          | a failed login        |
| anything, while the client stops               | STOP           |                       |
| we closed with 1009: HA sent a frame too big   | RECONNECT      | a malformed frame     |
| a close, a refused or failed connection, a     | RECONNECT      | a failed login when   |
| timeout, a protocol error (heartbeat, replies) |                | it ended before auth  |
| HA closed the connection normally              | RECONNECT      |                       |
| any other exception (a bug, not the network)   | RAISE          |                       |

A connection that stayed up `STABLE_AFTER_S` restarts the backoff from its first delay.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import websockets

from listener.ha import protocol

STABLE_AFTER_S = 30.0
"""A connection that lasted this long resets the reconnect backoff."""

RETRIED = (OSError, TimeoutError, websockets.WebSocketException, protocol.ProtocolError)
"""What a lost, refused or confused connection raises: retried after a delay."""

FRAME_TOO_BIG = 1009
"""The close code websockets sends when a frame passes `max_size`."""


class Action(enum.Enum):
    """What the reconnect loop does next."""

    RECONNECT = "reconnect"
    """Connect again after the backoff's next delay."""
    WAIT_FOR_TOKEN = "wait_for_token"
    """HA refused the token: the auth gate remembers it, and the next login waits for the gate
    (a changed token at once, SIGHUP, or an hour: HA bans addresses after failed logins)."""
    STOP = "stop"
    """The client is stopping: leave the loop."""
    RAISE = "raise"
    """Not ours to retry: the error goes to the caller of `run`."""


@dataclass(frozen=True)
class Decision:
    """The loop's next step and what to count, for one ended connection."""

    action: Action
    reason: str = ""
    """What went wrong, for the log and /health's last_error; "" when nothing did."""
    restart_backoff: bool = False
    """The connection had been stable: the next delay is the backoff's first again."""
    failed_login: bool = False
    """It ended before HA accepted the token (counted in connects_failed)."""
    frame_too_big: bool = False
    """HA sent a frame above the limit: counted as a malformed frame, the frame is lost."""
    token_refused: bool = False
    """HA answered auth_invalid: the connection state becomes `auth_invalid`."""


def classify_disconnect(
    error: BaseException | None,
    *,
    logged_in: bool,
    lasted_s: float,
    stopping: bool,
    gated: bool,
    max_frame_bytes: int,
) -> Decision:
    """The decision for a connection that ended with `error` (None: the session returned).

    `logged_in`: HA had accepted the token on it; `lasted_s`: how long since it was opened;
    `stopping`: `stop` was called; `gated`: an auth gate can hold logins back.
    """
    restart = lasted_s > STABLE_AFTER_S
    if isinstance(error, protocol.AuthInvalid):
        return Decision(
            Action.WAIT_FOR_TOKEN if gated else Action.RAISE,
            f"auth_invalid: {error}",
            failed_login=True,
            token_refused=True,
        )
    if error is not None and not isinstance(error, RETRIED):
        return Decision(Action.RAISE)
    if error is None:
        reason = "" if stopping else "HA closed the connection"
        return Decision(Action.STOP if stopping else Action.RECONNECT, reason, restart)
    return Decision(
        Action.STOP if stopping else Action.RECONNECT,
        describe(error, max_frame_bytes),
        restart,
        failed_login=not logged_in,
        frame_too_big=_closed_with(error, FRAME_TOO_BIG),
    )


def describe(error: BaseException, max_frame_bytes: int) -> str:
    """What went wrong, said so a user knows where to look."""
    if isinstance(error, websockets.ConnectionClosed):
        if _closed_with(error, FRAME_TOO_BIG):
            return (
                f"HA sent a frame too big (over {max_frame_bytes / 2**20:g} MB, HA_MAX_FRAME_MB); "
                "it was skipped and the connection is restarted"
            )
        code = error.rcvd.code if error.rcvd else 1006
        return f"connection closed (code {code})"
    if isinstance(error, websockets.InvalidStatus):
        return f"HA refused the connection (HTTP {error.response.status_code}); is it starting?"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused: is Home Assistant running and HA_URL right?"
    return f"{type(error).__name__}: {error}"


def _closed_with(error: BaseException, code: int) -> bool:
    """We closed the connection with `code` (websockets closes with 1009 for a big frame)."""
    return (
        isinstance(error, websockets.ConnectionClosed)
        and error.sent is not None
        and error.sent.code == code
    )
