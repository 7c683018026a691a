"""Home Assistant's WebSocket API, sans I/O: the messages we send and how to read what HA sends.

The asyncio client (`listener.ha_client`) moves bytes; this module decides what they mean, so
the protocol rules are tested without a socket.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


class ProtocolError(Exception):
    """HA sent something we cannot follow; the connection is restarted."""


class MalformedFrame(ProtocolError):
    """A frame that is not a JSON object or array of objects; counted and skipped."""


class AuthInvalid(ProtocolError):
    """HA refused the token. Fatal: retrying would get this address banned by HA."""


class CommandFailed(ProtocolError):
    """HA answered a command with success=false."""

    def __init__(self, command: str, code: str, message: str) -> None:
        super().__init__(f"{command} failed: {code}: {message}")
        self.code = code


def parse_frame(frame: str | bytes) -> list[dict[str, Any]]:
    """One WebSocket frame → its messages (HA coalesces several into a JSON array)."""
    try:
        data = json.loads(frame)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedFrame(f"frame is not JSON: {exc}") from None
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list) and all(isinstance(item, dict) for item in data):
        return data
    raise MalformedFrame(f"frame is a JSON {type(data).__name__}, not an object or array of them")


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
    error = message.get("error") or {}
    raise CommandFailed(command, str(error.get("code", "?")), str(error.get("message", "")))


def classify(
    messages: list[dict[str, Any]],
) -> Iterator[tuple[int | None, dict[str, Any] | None, dict[str, Any]]]:
    """Each message of a frame, in order, as `(subscription id, event, message)`.

    An event message names its subscription by the id of the `subscribe_events` command that
    made it (-1 when it names none); its event is None when it carries no event object. Any
    other message is the reply to a command: its subscription id is None.
    """
    for message in messages:
        if message.get("type") != "event":
            yield None, None, message
            continue
        subscription = message.get("id")
        event = message.get("event")
        yield (
            subscription if isinstance(subscription, int) else -1,
            event if isinstance(event, dict) else None,
            message,
        )
