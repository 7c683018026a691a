"""Home Assistant's WebSocket API, sans I/O: the messages we send and how to read what HA sends.

The asyncio client (`listener.ha.client`) moves bytes; this module decides what they mean, so
the protocol rules are tested without a socket.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from core import json_codec


class ProtocolError(Exception):
    """HA sent something we cannot follow; the connection is restarted."""


class MalformedFrame(ProtocolError):
    """A frame that is not a JSON object or array of objects; counted by `reason` and skipped."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class AuthInvalid(ProtocolError):
    """HA refused the token. Fatal: retrying would get this address banned by HA."""


class CommandFailed(ProtocolError):
    """HA answered a command with success=false."""

    def __init__(self, command: str, code: str, message: str) -> None:
        super().__init__(f"{command} failed: {code}: {message}")
        self.code = code


class Routed(NamedTuple):
    """One message of a frame: where it goes, or why it is skipped.

    `subscription` is the id of the `subscribe_events` command an event names (-1 when it names
    none) and None for a reply to a command; `problem` is the reason a message is skipped
    (counted by that reason) or None when it is usable.
    """

    subscription: int | None
    event: dict[str, Any] | None
    message: dict[str, Any]
    problem: str | None = None


def parse_frame(frame: str | bytes) -> list[dict[str, Any]]:
    """One WebSocket frame → its messages (HA coalesces several into a JSON array).

    Frames are read as bytes and parsed once, by orjson like everything after them in the
    listener (core.json_codec, which also says what the standard library reads instead).
    Nesting deeper than the interpreter's recursion limit (100 kB of `[`) is a malformed frame
    too: RecursionError must never reach the read loop.
    """
    try:
        data = json_codec.loads(frame)
    except ValueError as exc:  # UnicodeDecodeError included
        raise MalformedFrame("not_json", f"frame is not JSON: {exc}") from None
    except RecursionError:
        raise MalformedFrame("too_deep", "frame is nested too deeply to be from HA") from None
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list) and all(isinstance(item, dict) for item in data):
        return data
    raise MalformedFrame(
        "not_objects", f"frame is a JSON {type(data).__name__}, not an object or array of them"
    )


def first_message(frame: str | bytes) -> dict[str, Any]:
    """The first message of a frame in the auth phase; an empty array is a protocol error."""
    messages = parse_frame(frame)
    if not messages:
        raise ProtocolError("HA sent an empty frame where an auth message belongs")
    return messages[0]


def auth_message(token: str) -> dict[str, Any]:
    return {"type": "auth", "access_token": token}


@dataclass
class Session:
    """Message ids and pending commands of one authenticated connection.

    HA requires ids to increase strictly on a connection; a new connection starts again at 1.
    """

    _last_id: int = 0

    def peek_next_id(self) -> int:
        """The id the next command will carry (a subscription is named by its command's id)."""
        return self._last_id + 1

    def command(self, type_: str, **fields: Any) -> dict[str, Any]:
        """A command message with the next id."""
        self._last_id += 1
        return {"id": self._last_id, "type": type_, **fields}


def check_auth_reply(message: dict[str, Any]) -> str:
    """Return HA's version after auth_ok; raise AuthInvalid or ProtocolError otherwise."""
    kind = message.get("type")
    if kind == "auth_ok":
        return str(message.get("ha_version", "unknown"))
    if kind == "auth_invalid":
        raise AuthInvalid(str(message.get("message", "invalid access token")))
    raise ProtocolError(f"expected auth_ok or auth_invalid, got {kind!r}")


def result_of(message: dict[str, Any], command: str) -> Any:
    """The result of a command reply, or CommandFailed with HA's error code."""
    if message.get("type") != "result":
        raise ProtocolError(f"{command}: expected a result, got {message.get('type')!r}")
    if message.get("success") is True:
        return message.get("result")
    error = message.get("error")
    if not isinstance(error, dict):
        error = {}
    raise CommandFailed(command, str(error.get("code", "?")), str(error.get("message", "")))


def classify(messages: list[dict[str, Any]]) -> Iterator[Routed]:
    """Each message of a frame, in order, as a `Routed`: an event, a reply, or a skipped one.

    Only shapes HA never sends are skipped, each with its reason: a `type` that is not a
    string, a reply whose `id` is not an integer, an event that is not an object or whose
    `event_type` is not a string. The routing then only ever hashes ints and strings.
    """
    for message in messages:
        kind = message.get("type")
        if not isinstance(kind, str):
            yield Routed(None, None, message, "bad_type")
            continue
        msg_id = message.get("id")
        number = msg_id if isinstance(msg_id, int) and not isinstance(msg_id, bool) else None
        if kind != "event":
            yield Routed(None, None, message, None if number is not None else "bad_id")
            continue
        event = message.get("event")
        if not isinstance(event, dict):
            yield Routed(-1, None, message, "event_not_object")
        elif not isinstance(event.get("event_type"), str):
            yield Routed(-1, None, message, "bad_event_type")
        else:
            yield Routed(-1 if number is None else number, event, message)
