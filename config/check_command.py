"""`ha-ingestor check`: is everything ha-ingestor needs there, reachable and allowed?

Verifies, in order: the configuration (settings and the rules file), Home Assistant (a real
WebSocket login with the token), the broker, Redis, InfluxDB (including the right to write:
an empty write, which InfluxDB authorises but stores nothing for) and the data directory.
For each failure it prints what is wrong and how to fix it. Secrets never appear: URLs are
shown with their passwords masked, tokens not at all.

Exit codes: 0 everything works, 1 something does not, 2 the settings are invalid.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO
from urllib.parse import urlencode, urlsplit, urlunsplit

from config.redaction import redact_url, scrub

if TYPE_CHECKING:
    from config.settings import Settings

TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Outcome:
    """One verified thing: what was checked, what was found, and the fix when it failed."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options: everything comes from the environment, as for the other commands."""


def run(_: argparse.Namespace) -> int:
    from config.settings import SettingsError, load_settings

    out = sys.stdout
    out.write("ha-ingestor check\n")
    try:
        settings = load_settings()
    except SettingsError as exc:
        _print(out, Outcome("configuration", False, str(exc), "set the variables named above"))
        return 2
    outcomes = run_checks(settings)
    secrets = settings.secrets()
    for outcome in outcomes:
        _print(out, outcome, secrets)
    failed = sum(not o.ok for o in outcomes)
    out.write(
        "\nEverything works.\n"
        if not failed
        else f"\n{failed} problem{'s' if failed > 1 else ''} found: fix them and run "
        "`ha-ingestor check` again.\n"
    )
    return 1 if failed else 0


def run_checks(settings: Settings) -> list[Outcome]:
    """Every check, each turning its own failures into an Outcome (none raises)."""
    checks: list[Callable[[Settings], Outcome]] = [
        check_configuration,
        check_home_assistant,
        check_broker,
        check_redis,
        check_influxdb,
        check_data_dir,
    ]
    outcomes = []
    for check in checks:
        try:
            outcomes.append(check(settings))
        except Exception as exc:  # noqa: BLE001 - a check's own bug must not hide the others
            name = check.__name__.removeprefix("check_").replace("_", " ")
            outcomes.append(
                Outcome(name, False, f"the check itself failed: {type(exc).__name__}: {exc}")
            )
    return outcomes


def _print(out: TextIO, outcome: Outcome, secrets: list[str] | None = None) -> None:
    def clean(text: str) -> str:
        return scrub(text, secrets or [])

    mark = "OK  " if outcome.ok else "FAIL"
    out.write(f"  {mark}  {outcome.name:<15} {clean(outcome.detail)}\n")
    if outcome.fix:
        out.write(f"        {'':<15} fix: {clean(outcome.fix)}\n")


# --- the checks ---------------------------------------------------------------------------------


def check_configuration(settings: Settings) -> Outcome:
    from config.rules_file import load_rules
    from core.rules import RulesError

    try:
        load_rules(settings.ha_ingestor_config)
    except RulesError as exc:
        return Outcome("configuration", False, str(exc), "correct the rules file")
    rules = str(settings.ha_ingestor_config) if settings.ha_ingestor_config else "defaults"
    influx = (
        f"InfluxDB v1 {redact_url(settings.influxdb_url)} database {settings.influxdb_database}"
        if settings.influxdb_api_version == 1
        else f"InfluxDB v2 {redact_url(settings.influxdb_url)} org {settings.influxdb_org} "
        f"bucket {settings.influxdb_bucket}"
    )
    return Outcome(
        "configuration",
        True,
        f"broker {redact_url(settings.celery_broker_url.get_secret_value())}, {influx}, "
        f"rules: {rules}",
    )


def check_home_assistant(settings: Settings) -> Outcome:
    """A real login on HA's WebSocket API with the configured token."""
    import websockets
    from websockets.sync.client import connect

    from listener import protocol

    name = "Home Assistant"
    url = settings.ha_url
    token = settings.ha_token_value()
    if url is None or not token:
        return Outcome(
            name,
            False,
            "HA_URL or HA_TOKEN is not set",
            "set HA_URL (e.g. http://homeassistant.local:8123) and HA_TOKEN (a long-lived "
            "access token from your HA profile, Security tab) or HA_TOKEN_FILE",
        )
    where = _host_port(url)
    try:
        with connect(url, open_timeout=TIMEOUT_S, close_timeout=2, max_size=2**24) as ws:
            hello = protocol.parse_frame(ws.recv(timeout=TIMEOUT_S))[0]
            if hello.get("type") != "auth_required":
                return Outcome(
                    name,
                    False,
                    f"{url} answered {hello.get('type')!r} instead of auth_required",
                    "point HA_URL at Home Assistant itself (http://host:8123)",
                )
            ws.send(json.dumps(protocol.auth_message(token)))
            version = protocol.check_auth_reply(protocol.parse_frame(ws.recv(timeout=TIMEOUT_S))[0])
    except protocol.AuthInvalid as exc:
        return Outcome(
            name,
            False,
            f"HA at {where} rejected the token (auth_invalid: {exc})",
            "create a new long-lived access token in your HA profile (Security tab) and set "
            "HA_TOKEN; HA bans an address after repeated failed logins, so fix it before "
            "starting the listener",
        )
    except websockets.InvalidStatus as exc:
        status = exc.response.status_code
        return Outcome(
            name,
            False,
            f"{url} is not HA's WebSocket API (HTTP {status})",
            "set HA_URL to HA's address, e.g. http://homeassistant.local:8123 (behind a proxy, "
            "make it forward WebSocket upgrades on /api/websocket)",
        )
    except ConnectionRefusedError:
        return Outcome(
            name,
            False,
            f"nothing listens on {where}",
            "start Home Assistant or correct the host and port in HA_URL",
        )
    except socket.gaierror:
        return Outcome(
            name,
            False,
            f"cannot resolve the host of {where}",
            "correct the host name in HA_URL (or use its IP address)",
        )
    except TimeoutError:
        return Outcome(
            name,
            False,
            f"no answer from {where} within {TIMEOUT_S:g} s",
            "check that HA runs and that no firewall drops the connection",
        )
    except (OSError, websockets.WebSocketException, protocol.ProtocolError) as exc:
        return Outcome(
            name,
            False,
            f"cannot talk to HA at {where}: {type(exc).__name__}: {exc}",
            "check HA_URL (http:// or https://, host and port) and that HA runs",
        )
    return Outcome(name, True, f"logged in to Home Assistant {version} at {where}")


def check_broker(settings: Settings) -> Outcome:
    url = settings.celery_broker_url.get_secret_value()
    if urlsplit(url).scheme in ("redis", "rediss", "unix"):
        return _check_redis_url("broker", url, "CELERY_BROKER_URL", settings, queue=True)
    from kombu.connection import Connection

    try:
        with Connection(url, connect_timeout=TIMEOUT_S) as connection:  # type: ignore[no-untyped-call]
            connection.ensure_connection(max_retries=1)
    except Exception as exc:  # noqa: BLE001 - kombu raises many kinds; all mean "unreachable"
        return Outcome(
            "broker",
            False,
            f"cannot connect to {redact_url(url)}: {type(exc).__name__}: {exc}",
            "check the host, port, user, password and vhost in CELERY_BROKER_URL and that the "
            "broker runs",
        )
    return Outcome("broker", True, f"{redact_url(url)} accepts connections")


def check_redis(settings: Settings) -> Outcome:
    variable = "REDIS_URL" if settings.redis_url is not None else "CELERY_BROKER_URL"
    return _check_redis_url("Redis", settings.state_redis_url(), variable, settings)


def _check_redis_url(
    name: str, url: str, variable: str, settings: Settings, *, queue: bool = False
) -> Outcome:
    import redis

    from workers.broker_transport import takes_reliably

    shown = redact_url(url)
    client = redis.Redis.from_url(url, socket_timeout=TIMEOUT_S, socket_connect_timeout=5)
    probe = f"{settings.redis_prefix}check:{uuid.uuid4().hex}"
    try:
        client.ping()
        client.set(probe, "1", ex=10)
        client.delete(probe)
        depth = int(client.llen(settings.celery_queue)) if queue else None
        version = str(client.info("server").get("redis_version", "?"))
    except redis.AuthenticationError as exc:
        if not urlsplit(url).password:
            return Outcome(
                name,
                False,
                f"{shown} requires a password",
                f"add it to {variable}: redis://:PASSWORD@host:6379/0",
            )
        return Outcome(
            name,
            False,
            f"{shown} refused the credentials ({exc})",
            f"put the right password in {variable} (redis://:PASSWORD@host:6379/0)",
        )
    except redis.ResponseError as exc:
        if "NOAUTH" in str(exc):
            return Outcome(
                name,
                False,
                f"{shown} requires a password",
                f"add it to {variable}: redis://:PASSWORD@host:6379/0",
            )
        if "READONLY" in str(exc):
            return Outcome(
                name,
                False,
                f"{shown} is a read-only replica",
                f"point {variable} at the primary",
            )
        return Outcome(name, False, f"{shown}: {exc}", f"check {variable}")
    except redis.ConnectionError as exc:
        return Outcome(
            name,
            False,
            f"cannot connect to {shown} ({exc})",
            f"start Redis or correct the host and port in {variable}",
        )
    except redis.RedisError as exc:
        return Outcome(name, False, f"{shown}: {type(exc).__name__}: {exc}", f"check {variable}")
    finally:
        client.close()
    if queue and not takes_reliably(version):
        return Outcome(
            name,
            False,
            f"{shown} runs Redis {version}: a worker killed while taking a message can lose it "
            "(the workers need BLMOVE, Redis 6.2 or newer)",
            "upgrade the broker's Redis to 6.2 or newer (Debian 12 ships 7.0)",
        )
    waiting = f"; queue {settings.celery_queue}: {depth:,} waiting" if depth is not None else ""
    return Outcome(name, True, f"{shown} (Redis {version}) answers and accepts writes{waiting}")


def check_influxdb(settings: Settings) -> Outcome:
    """Reachable, credentials accepted, and allowed to write (an empty write stores nothing)."""
    import urllib3

    base, user, password = _split_credentials(settings.influxdb_url)
    shown = redact_url(settings.influxdb_url)
    headers: dict[str, str] = {}
    if settings.influxdb_api_version == 2:
        token = settings.influxdb_token.get_secret_value() if settings.influxdb_token else ""
        headers["Authorization"] = f"Token {token}"
        target = f"bucket {settings.influxdb_bucket!r} of org {settings.influxdb_org!r}"
        path = "/api/v2/write"
        fields = {"org": settings.influxdb_org or "", "bucket": settings.influxdb_bucket}
        credentials = "INFLUXDB_TOKEN"
    else:
        user = settings.influxdb_username or user
        if settings.influxdb_password is not None:
            password = settings.influxdb_password.get_secret_value()
        if user:
            headers.update(urllib3.util.make_headers(basic_auth=f"{user}:{password or ''}"))
        target = f"database {settings.influxdb_database!r}"
        path = "/write"
        fields = {"db": settings.influxdb_database}
        if settings.influxdb_retention_policy:
            fields["rp"] = settings.influxdb_retention_policy
        credentials = "INFLUXDB_USERNAME and INFLUXDB_PASSWORD"
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=5, read=TIMEOUT_S), retries=False)
    query = urlencode(fields)
    try:
        reply = http.request("POST", f"{base}{path}?{query}", body=b"", headers=headers)
    except urllib3.exceptions.HTTPError as exc:
        return Outcome(
            "InfluxDB",
            False,
            f"cannot connect to {shown} ({type(exc).__name__})",
            "start InfluxDB or correct INFLUXDB_URL (scheme, host and port)",
        )
    text = _error_text(reply.data)
    status = reply.status
    if status in (200, 204) or (status == 400 and "point" in text.lower()):
        return Outcome("InfluxDB", True, f"{shown} accepts writes to {target}")
    if status == 401:
        fix = f"correct {credentials}"
        return Outcome("InfluxDB", False, f"{shown} rejected the credentials ({text})", fix)
    if status == 403:
        fix = (
            f'grant it: GRANT WRITE ON "{settings.influxdb_database}" TO "{user}"'
            if settings.influxdb_api_version == 1
            else "give the token write permission on the bucket (InfluxDB UI → API Tokens)"
        )
        return Outcome("InfluxDB", False, f"not allowed to write to {target} ({text})", fix)
    if status == 404:
        fix = (
            f'create it: CREATE DATABASE "{settings.influxdb_database}", or correct '
            "INFLUXDB_DATABASE"
            if settings.influxdb_api_version == 1
            else "create the bucket, or correct INFLUXDB_ORG / INFLUXDB_BUCKET; with InfluxDB "
            "1.x set INFLUXDB_API_VERSION=1"
        )
        return Outcome("InfluxDB", False, f"{target} not found at {shown} ({text})", fix)
    return Outcome(
        "InfluxDB",
        False,
        f"{shown} answered {status} ({text})",
        "check INFLUXDB_URL and INFLUXDB_API_VERSION (1 for InfluxDB 1.x, 2 for 2.x/3.x)",
    )


def check_data_dir(settings: Settings) -> Outcome:
    """The spool, the beat schedule and Flower's state live here."""
    directory = settings.data_dir
    probe = directory / f".check-{uuid.uuid4().hex}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe.write_text("ok", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        return Outcome(
            "data directory",
            False,
            f"cannot write in {directory} ({exc.strerror})",
            "set DATA_DIR to a writable directory (the spool keeps events there)",
        )
    return Outcome("data directory", True, f"{directory.resolve()} is writable")


# --- helpers --------------------------------------------------------------------------------------


def _host_port(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


def _split_credentials(url: str) -> tuple[str, str | None, str | None]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    bare = urlunsplit((parts.scheme, host, parts.path, "", "")).rstrip("/")
    return bare, parts.username, parts.password


def _error_text(data: bytes | None) -> str:
    text = (data or b"").decode("utf-8", "replace").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        return text[:300] or "no details"
    if isinstance(parsed, dict):
        return str(parsed.get("error") or parsed.get("message") or text)[:300]
    return text[:300]
