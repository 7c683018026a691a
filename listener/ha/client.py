"""The asyncio side of the HA connection: connect, authenticate, subscribe, read, heartbeat.

Reading never waits on publishing: every frame is parsed and handed to `on_event`, which only
puts the event into the publisher's bounded queue; control events (registry changes) go to
handlers that only start tasks, since a command's reply is read by this same reader. Frames of
shapes HA never sends are counted by reason and skipped. Reconnects use capped exponential
backoff with jitter, reset after a connection stayed up; after `auth_invalid` the AuthGate
holds logins back (a new token on SIGHUP, or an hour: HA bans addresses after failed logins).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from core.backoff import BackoffFactory, exponential_backoff
from listener.ha import protocol
from listener.ha.auth_gate import RETRY_AFTER_S, AuthGate
from listener.ha.connection import HAConnection, protocol_dumps
from listener.ha.frame_trace import FrameTrace, traced_connection
from listener.health.stats import ListenerStats

__all__ = ["HAClient", "HAConnection", "protocol_dumps"]

log = logging.getLogger(__name__)

EventHandler = Callable[[dict[str, Any]], Awaitable[None]]
ControlHandler = Callable[[dict[str, Any]], None]
"""Called by the reader for a control event (a registry change): it must return at once, and
start a task for anything that waits on HA, whose reply only this same reader can read."""
ConnectedHook = Callable[["HAConnection"], Awaitable[None]]

STABLE_AFTER_S = 30.0
"""A connection that lasted this long resets the reconnect backoff."""

MAX_FRAME_BYTES = 64 * 1024 * 1024
"""HA's get_states on a large install is tens of MB; anything above this is not HA."""


class HAClient:
    """Keeps one subscription to HA alive for as long as the listener runs."""

    def __init__(
        self,
        url: str,
        token: str,
        event_types: tuple[str, ...],
        on_event: EventHandler,
        stats: ListenerStats,
        *,
        control_events: Mapping[str, ControlHandler] | None = None,
        on_connected: ConnectedHook | None = None,
        on_disconnected: Callable[[], None] | None = None,
        heartbeat_interval: float = 20.0,
        heartbeat_timeout: float = 10.0,
        backoff: BackoffFactory = lambda: exponential_backoff(initial=1.0, cap=60.0),
        open_timeout: float = 10.0,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        auth_gate: AuthGate | None = None,
        frame_trace: FrameTrace | None = None,
    ) -> None:
        self._url = url
        self._connection_class = traced_connection(frame_trace) if frame_trace else ClientConnection
        self._token = token
        self._auth_gate = auth_gate
        self._event_types = event_types
        self._on_event = on_event
        self._control_events = dict(control_events or {})
        self._routes: dict[int, ControlHandler | None] = {}
        """Subscription id → its control handler, or None for the data subscriptions."""
        self._stats = stats
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self._heartbeat_interval = heartbeat_interval
        self._heartbeat_timeout = heartbeat_timeout
        self._backoff = backoff
        self._open_timeout = open_timeout
        self._max_frame_bytes = max_frame_bytes
        self._stopping = asyncio.Event()
        self._connection: HAConnection | None = None

    @property
    def connection(self) -> HAConnection | None:
        """The live connection, if any (registry refreshes use it)."""
        return self._connection

    def replace_token(self, token: str) -> None:
        """A new token (SIGHUP): the next login uses it, at once if a refusal was waiting."""
        self._token = token
        if self._auth_gate is not None:
            self._auth_gate.poke()

    async def stop(self) -> None:
        """Unsubscribe and close; `run` returns soon after."""
        self._stopping.set()
        connection = self._connection
        if connection is None:
            return
        with contextlib.suppress(Exception):
            for subscription in list(self._stats.subscriptions.values()):
                await connection.call(
                    "unsubscribe_events", reply_timeout=2.0, subscription=subscription
                )
        with contextlib.suppress(Exception):
            await connection.ws.close()

    async def run(self) -> None:
        """Connect and reconnect until stopped.

        `auth_invalid` stops the retries, not the process: with an AuthGate the next login
        waits for a new token (SIGHUP) or an hour; without one, AuthInvalid is raised.
        """
        delays: Iterator[float] = self._backoff()
        while not self._stopping.is_set():
            if self._auth_gate is not None:
                await self._wait_for_auth_gate(self._auth_gate)
                if self._stopping.is_set():
                    break
            started = time.monotonic()
            self._stats.connect_attempts += 1
            self._stats.connection_state = "connecting"
            log.info("connecting to Home Assistant at %s", self._url)
            try:
                await self._session()
            except protocol.AuthInvalid as exc:
                self._stats.connection_state = "auth_invalid"
                self._stats.connects_failed += 1
                self._stats.last_error = f"auth_invalid: {exc}"
                if self._auth_gate is None:
                    raise
                self._auth_gate.refused()
                log.error(  # noqa: TRY400 - the traceback would add nothing for the user
                    "Home Assistant rejected the token (auth_invalid: %s): create a new "
                    "long-lived access token in your HA profile (Security tab), put it in "
                    "HA_TOKEN_FILE (or HA_TOKEN) and send the listener SIGHUP. Until then it "
                    "tries at most once an hour: HA bans addresses after failed logins.",
                    exc,
                )
                continue
            except (
                OSError,
                TimeoutError,
                websockets.WebSocketException,
                protocol.ProtocolError,
            ) as exc:
                reason = _describe(exc, self._max_frame_bytes)
                if "too big" in reason:
                    self._stats.malformed_frames += 1
                self._stats.last_error = reason
                if self._stats.connection_state in ("connecting", "authenticating"):
                    self._stats.connects_failed += 1
                log.warning("disconnected from Home Assistant: %s", reason)
            finally:
                self._connection = None
                self._stats.subscriptions.clear()
                self._routes.clear()
                if self._on_disconnected is not None:
                    self._on_disconnected()
            if self._stopping.is_set():
                break
            self._stats.connection_state = "backing_off"
            if time.monotonic() - started > STABLE_AFTER_S:
                delays = self._backoff()
            delay = next(delays)
            log.info("reconnecting in %.1f s", delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            self._stats.reconnects += 1
        self._stats.connection_state = "stopped"

    async def _session(self) -> None:
        async with websockets.connect(
            self._url,
            open_timeout=self._open_timeout,
            ping_interval=None,  # HA-level ping below: it proves HA's loop answers, not just TCP
            close_timeout=2.0,
            max_size=self._max_frame_bytes,
            max_queue=64,
            compression=None,
            create_connection=self._connection_class,
        ) as ws:
            self._stats.connection_state = "authenticating"
            hello = await asyncio.wait_for(ws.recv(), self._open_timeout)
            first = protocol.first_message(hello)
            if first.get("type") != "auth_required":
                raise protocol.ProtocolError(f"expected auth_required, got {first.get('type')!r}")
            await ws.send(protocol_dumps(protocol.auth_message(self._token)))
            reply = protocol.first_message(await asyncio.wait_for(ws.recv(), self._open_timeout))
            self._stats.ha_version = protocol.check_auth_reply(reply)
            if self._auth_gate is not None:
                self._auth_gate.accepted()
                self._stats.auth_retry_at = None
            self._stats.connects_ok += 1
            self._stats.connection_state = "authenticated"
            log.info("authenticated with Home Assistant %s", self._stats.ha_version)
            connection = self._connection = HAConnection(ws)
            reader = asyncio.create_task(self._read(connection), name="ha-reader")
            heartbeat: asyncio.Task[None] | None = None
            try:
                await self._subscribe(connection)
                heartbeat = asyncio.create_task(self._heartbeat(connection), name="ha-heartbeat")
                if self._on_connected is not None:
                    await self._on_connected(connection)
                done, _ = await asyncio.wait(
                    {reader, heartbeat}, return_when=asyncio.FIRST_COMPLETED
                )
                for finished in done:
                    finished.result()
            finally:
                for task in (reader, heartbeat):
                    if task is not None:
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await task

    async def _wait_for_auth_gate(self, gate: AuthGate) -> None:
        """While a refused token's hour runs: stay up, unhealthy, and say when we try again."""
        retry_at = gate.retry_at()
        if retry_at is not None and retry_at > time.time():
            self._stats.connection_state = "auth_invalid"
            self._stats.auth_retry_at = retry_at
            log.warning(
                "HA refused the token %.0f min ago: next login try in %.0f min, or at once on "
                "SIGHUP after replacing HA_TOKEN_FILE (or HA_TOKEN)",
                (time.time() - retry_at + RETRY_AFTER_S) / 60,
                (retry_at - time.time()) / 60,
            )
        await gate.wait(self._stopping)
        self._stats.auth_retry_at = None

    async def _subscribe(self, connection: HAConnection) -> None:
        with contextlib.suppress(protocol.CommandFailed):  # HA before 2022.x lacks the feature
            await connection.call("supported_features", features={"coalesce_messages": 1})
        self._routes.clear()
        refused: list[str] = []
        for event_type in self._event_types:
            try:
                await self._subscribe_one(connection, event_type, None)
            except protocol.CommandFailed as exc:
                refused.append(event_type)  # the others are still worth recording
                log.error(  # noqa: TRY400 - the reason is the whole story
                    "HA refused the subscription to %s (%s): check that type in "
                    "HA_EVENT_TYPES; a non-admin user's token may subscribe to state_changed "
                    "but not to every type",
                    event_type,
                    exc,
                )
        if refused and len(refused) == len(self._event_types):
            raise protocol.ProtocolError(
                f"HA refused every subscription ({', '.join(refused)}): check HA_EVENT_TYPES"
            )
        for event_type, handler in self._control_events.items():
            if event_type in self._event_types:
                continue
            try:
                await self._subscribe_one(connection, event_type, handler)
            except protocol.CommandFailed as exc:
                log.warning(
                    "could not subscribe to %s (%s); registries may go stale", event_type, exc
                )
        self._stats.connection_state = "subscribed"
        log.info(
            "subscribed to %s (subscription ids %s)",
            ", ".join(t for t in self._event_types if t not in refused),
            ", ".join(str(i) for i in self._stats.subscriptions.values()),
        )

    async def _subscribe_one(
        self, connection: HAConnection, event_type: str, handler: ControlHandler | None
    ) -> None:
        # Routed before the command is sent: HA may put the first events in the same frame
        # as the result, and the reader must already know where they go.
        subscription = connection.session.peek_next_id()
        self._routes[subscription] = handler
        self._stats.subscriptions[event_type] = subscription
        try:
            await connection.call("subscribe_events", event_type=event_type)
        except protocol.CommandFailed:
            del self._routes[subscription]
            del self._stats.subscriptions[event_type]
            raise

    async def _read(self, connection: HAConnection) -> None:
        """Read every frame as it comes; events go to their handler, replies to their callers.

        When the connection ends, commands still waiting for a reply fail at once, so a
        post-connect step (registries, snapshot, backfill) never waits out its timeout.
        """
        try:
            await self._read_frames(connection)
        finally:
            for future in connection.pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("the connection to HA was lost"))

    async def _read_frames(self, connection: HAConnection) -> None:
        """Parse and route each frame; nothing awaited here waits on HA (see ControlHandler).

        A frame or message of a shape HA never sends is counted by reason and skipped; so is an
        event whose handling fails on its contents: no frame can end the process.
        """
        stats = self._stats
        clock = time.monotonic
        recv = connection.ws.recv
        while True:
            try:
                frame = await recv(decode=False)  # bytes: orjson reads them, no str in between
            except websockets.ConnectionClosedOK:
                return
            began = clock()
            connection.frames_received += 1
            try:
                messages = protocol.parse_frame(frame)
            except protocol.MalformedFrame as exc:
                stats.skip(exc.reason)
                log.warning("skipped a malformed frame from HA (%s)", exc)
                continue
            for routed in protocol.classify(messages):
                if routed.problem is not None:
                    stats.skip(routed.problem)
                    log.warning("skipped a message from HA: %s", routed.problem)
                elif routed.subscription is None:
                    if not connection.resolve(routed.message):
                        log.debug("ignored a message for no pending command")
                elif routed.event is not None:
                    await self._dispatch(routed.subscription, routed.event)
            stall = clock() - began
            if stall > stats.read_stall_max_s:
                stats.read_stall_max_s = stall

    async def _dispatch(self, subscription: int, event: dict[str, Any]) -> None:
        if subscription not in self._routes:
            return  # a subscription just ended: HA may still send a few of its events
        control = self._routes[subscription]
        try:
            if control is None:
                await self._on_event(event)
                control = self._control_events.get(event["event_type"])
            if control is not None:
                control(event)
        except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
            # The event's contents broke its handling (a shape protocol.classify lets pass).
            self._stats.skip("unusable_event")
            log.warning("skipped an event HA sent that could not be handled (%r)", exc)

    async def _heartbeat(self, connection: HAConnection) -> None:
        """Ping HA; a missing pong means a dead connection even when TCP looks alive.

        Under a heavy stream the pong queues behind events: frames arriving while we wait
        prove HA is alive, so only silence for the whole timeout counts as dead.
        """
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            frames_before = connection.frames_received
            try:
                await connection.call("ping", reply_timeout=self._heartbeat_timeout)
            except TimeoutError:
                if connection.frames_received == frames_before:
                    raise protocol.ProtocolError(
                        f"no pong within {self._heartbeat_timeout:g} s: the connection is dead"
                    ) from None
                log.debug("pong late, but HA keeps sending: the connection is alive")


def _describe(exc: BaseException, max_frame_bytes: int = MAX_FRAME_BYTES) -> str:
    if isinstance(exc, websockets.ConnectionClosed):
        if exc.sent is not None and exc.sent.code == 1009:
            return (
                f"HA sent a frame too big (over {max_frame_bytes / 2**20:g} MB, HA_MAX_FRAME_MB); "
                "it was skipped and the connection is restarted"
            )
        code = exc.rcvd.code if exc.rcvd else 1006
        return f"connection closed (code {code})"
    if isinstance(exc, websockets.InvalidStatus):
        return f"HA refused the connection (HTTP {exc.response.status_code}); is it starting?"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused: is Home Assistant running and HA_URL right?"
    return f"{type(exc).__name__}: {exc}"
