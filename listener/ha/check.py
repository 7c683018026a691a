"""`ha-ingestor check`'s Home Assistant check: a real WebSocket login with the configured token,
through the listener's own protocol code, so what passes here is what the listener will do."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import websockets
from websockets.sync.client import connect

from config.check_outcome import CHECK_TIMEOUT_S, Outcome
from core import json_codec
from listener.ha import protocol

if TYPE_CHECKING:
    from config.settings import Settings

NAME = "Home Assistant"


def check_home_assistant(settings: Settings) -> Outcome:
    """A real login on HA's WebSocket API with the configured token."""
    url = settings.ha_url
    token = settings.ha_token_value()
    if url is None or not token:
        return Outcome(
            NAME,
            False,
            "HA_URL or HA_TOKEN is not set",
            "set HA_URL (e.g. http://homeassistant.local:8123) and HA_TOKEN (a long-lived "
            "access token from your HA profile, Security tab) or HA_TOKEN_FILE",
        )
    where = _host_port(url)
    try:
        return _login(url, token, where)
    except (OSError, websockets.WebSocketException, protocol.ProtocolError) as exc:
        return _failed_login(exc, url, where)


def _login(url: str, token: str, where: str) -> Outcome:
    """The login itself, each wait bounded by CHECK_TIMEOUT_S; what fails on the way raises."""
    timeout = CHECK_TIMEOUT_S
    with connect(url, open_timeout=timeout, close_timeout=2, max_size=2**24) as ws:
        hello = protocol.parse_frame(ws.recv(timeout=timeout))[0]
        if hello.get("type") != "auth_required":
            return Outcome(
                NAME,
                False,
                f"{url} answered {hello.get('type')!r} instead of auth_required",
                "point HA_URL at Home Assistant itself (http://host:8123)",
            )
        ws.send(json_codec.dumps(protocol.auth_message(token)).decode())
        version = protocol.check_auth_reply(protocol.parse_frame(ws.recv(timeout=timeout))[0])
    return Outcome(NAME, True, f"logged in to Home Assistant {version} at {where}")


def _failed_login(exc: Exception, url: str, where: str) -> Outcome:
    """What a failed login says about the setup, and how to fix it (most specific first)."""
    if isinstance(exc, protocol.AuthInvalid):
        problem = f"HA at {where} rejected the token (auth_invalid: {exc})"
        fix = (
            "create a new long-lived access token in your HA profile (Security tab) and set "
            "HA_TOKEN; HA bans an address after repeated failed logins, so fix it before "
            "starting the listener"
        )
    elif isinstance(exc, websockets.InvalidStatus):
        problem = f"{url} is not HA's WebSocket API (HTTP {exc.response.status_code})"
        fix = (
            "set HA_URL to HA's address, e.g. http://homeassistant.local:8123 (behind a proxy, "
            "make it forward WebSocket upgrades on /api/websocket)"
        )
    elif isinstance(exc, ConnectionRefusedError):
        problem = f"nothing listens on {where}"
        fix = "start Home Assistant or correct the host and port in HA_URL"
    elif isinstance(exc, socket.gaierror):
        problem = f"cannot resolve the host of {where}"
        fix = "correct the host name in HA_URL (or use its IP address)"
    elif isinstance(exc, TimeoutError):
        problem = f"no answer from {where} within {CHECK_TIMEOUT_S:g} s"
        fix = "check that HA runs and that no firewall drops the connection"
    else:
        problem = f"cannot talk to HA at {where}: {type(exc).__name__}: {exc}"
        fix = "check HA_URL (http:// or https://, host and port) and that HA runs"
    return Outcome(NAME, False, problem, fix)


def _host_port(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
