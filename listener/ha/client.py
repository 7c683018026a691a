"""The asyncio side of the HA connection: connect, authenticate, subscribe, read, heartbeat.

Reading never waits on publishing: every frame is parsed and handed to `on_event`, which only
puts the event into the publisher's bounded queue; control events (registry changes) go to
handlers that only start tasks, since a command's reply is read by this same reader. Frames of
shapes HA never sends are counted by reason and skipped. After each connection ends, the
pure `classify_disconnect` (listener/ha/disconnect.py) decides what comes next: a reconnect
after the injected backoff's next delay (reset after a connection stayed up), or, after
`auth_invalid`, the AuthGate holding logins with that token back (a changed token is tried at
once, the same one on SIGHUP or after an hour: HA bans addresses after failed logins).
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
from websockets.protocol import State

from core.backoff import BackoffFactory, exponential_backoff
from listener.ha import protocol
from listener.ha.auth_gate import AuthGate
from listener.ha.connection import HAConnection, protocol_dumps
from listener.ha.disconnect import Action, Decision, classify_disconnect
from listener.ha.frame_trace import FrameTrace, traced_connection
from listener.health.stats import ListenerStats

__all__ = ["HAClient", "HAConnection", "protocol_dumps"]

log = logging.getLogger(__name__)

EventHandler = Callable[[dict[str, Any]], Awaitable[None]]
ControlHandler = Callable[[dict[str, Any]], None]
"""Called by the reader for a control event (a registry change): it must return at once, and
start a task for anything that waits on HA, whose reply only this same reader can read."""
ConnectedHook = Callable[["HAConnection"], Awaitable[None]]

CLOSE_TIMEOUT_S = 2.0
"""How long a closing handshake may take before the TCP connection is dropped."""

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
        optional_control_events: frozenset[str] = frozenset(),
        on_authenticated: ConnectedHook | None = None,
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
        self._optional_control_events = optional_control_events
        """Control events an older HA may refuse: an info line once, not a warning each time."""
        self._refusals_said: set[str] = set()
        self._routes: dict[int, ControlHandler | None] = {}
        """Subscription id → its control handler, or None for the data subscriptions."""
        self._stats = stats
        self._on_authenticated = on_authenticated
        """Called after login, before subscribing: what every event needs is known first."""
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
        """Connect and reconnect until stopped; `classify_disconnect` decides after each end.

        `auth_invalid` stops the retries, not the process: with an AuthGate the next login
        waits for a changed token, SIGHUP or an hour; without one, AuthInvalid is raised.
        """
        delays: Iterator[float] = self._backoff()
        while await self._may_log_in():
            started = time.monotonic()
            error = await self._connect_once()
            decision = classify_disconnect(
                error,
                logged_in=self._stats.connection_state not in ("connecting", "authenticating"),
                lasted_s=time.monotonic() - started,
                stopping=self._stopping.is_set(),
                gated=self._auth_gate is not None,
                max_frame_bytes=self._max_frame_bytes,
            )
            self._note(decision)
            if decision.action is Action.RAISE and error is not None:
                raise error
            if decision.action is Action.STOP:
                break
            if decision.action is Action.WAIT_FOR_TOKEN:
                continue  # the gate decides when the next login is tried
            if decision.restart_backoff:
                delays = self._backoff()
            await self._back_off(next(delays))
        self._stats.connection_state = "stopped"

    async def _may_log_in(self) -> bool:
        """Wait while the auth gate holds this token back; False once stopping."""
        if self._auth_gate is not None and not self._stopping.is_set():
            await self._wait_for_auth_gate(self._auth_gate)
        return not self._stopping.is_set()

    async def _connect_once(self) -> Exception | None:
        """One connection, from connecting to its end; returns what ended it (None: it returned).

        Every exception is handed back for `classify_disconnect` to judge: it raises again
        what is not a connection problem.
        """
        self._stats.connect_attempts += 1
        self._stats.connection_state = "connecting"
        log.info("connecting to Home Assistant at %s", self._url)
        try:
            await self._session()
        except Exception as exc:  # noqa: BLE001 - judged by classify_disconnect, re-raised there
            return exc
        finally:
            self._connection = None
            self._stats.subscriptions.clear()
            self._routes.clear()
            if self._on_disconnected is not None:
                self._on_disconnected()
        return None

    def _note(self, decision: Decision) -> None:
        """Count, show and log what ended the connection; remember a refused token."""
        stats = self._stats
        if decision.failed_login:
            stats.connects_failed += 1
        if decision.frame_too_big:
            stats.malformed_frames += 1
        if decision.reason:
            stats.last_error = decision.reason
        if decision.token_refused:
            stats.connection_state = "auth_invalid"
        if decision.action is Action.WAIT_FOR_TOKEN and self._auth_gate is not None:
            self._auth_gate.refused(self._token)
            log.error(
                "Home Assistant rejected the token (%s): create a new long-lived access token "
                "in your HA profile (Security tab), put it in HA_TOKEN_FILE (or HA_TOKEN) and "
                "send the listener SIGHUP or restart it. Until then this token is tried at most "
                "once an hour: HA bans addresses after failed logins.",
                decision.reason,
            )
        elif decision.reason and not decision.token_refused:
            log.warning("disconnected from Home Assistant: %s", decision.reason)

    async def _back_off(self, delay: float) -> None:
        """Wait one backoff delay (or until stopped) before connecting again."""
        self._stats.connection_state = "backing_off"
        log.info("reconnecting in %.1f s", delay)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._stopping.wait()
        self._stats.reconnects += 1

    async def _session(self) -> None:
        async with websockets.connect(
            self._url,
            open_timeout=self._open_timeout,
            ping_interval=None,  # HA-level ping below: it proves HA's loop answers, not just TCP
            close_timeout=CLOSE_TIMEOUT_S,
            max_size=self._max_frame_bytes,
            max_queue=64,
            compression=None,
            create_connection=self._connection_class,
        ) as ws:
            self._stats.connection_state = "authenticating"
            async with asyncio.timeout(self._open_timeout):
                hello = await ws.recv()
            first = protocol.first_message(hello)
            if first.get("type") != "auth_required":
                raise protocol.ProtocolError(f"expected auth_required, got {first.get('type')!r}")
            await ws.send(protocol_dumps(protocol.auth_message(self._token)))
            async with asyncio.timeout(self._open_timeout):
                reply = protocol.first_message(await ws.recv())
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
                if self._on_authenticated is not None:
                    await self._on_authenticated(connection)
                await self._subscribe(connection)
                heartbeat = asyncio.create_task(self._heartbeat(connection), name="ha-heartbeat")
                if self._on_connected is not None:
                    await self._on_connected(connection)
                await _until_ended(connection, reader, heartbeat)
            finally:
                for task in (reader, heartbeat):
                    if task is not None:
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await task

    async def _wait_for_auth_gate(self, gate: AuthGate) -> None:
        """While this token's refusal holds: stay up, unhealthy, and say when we try again.

        Only the token HA refused waits: another one (fixed `.env`, then a restart) is tried
        at once.
        """
        refusal = gate.refusal(self._token)
        now = time.time()
        if refusal is not None and refusal.holds(now):
            self._stats.connection_state = "auth_invalid"
            self._stats.auth_retry_at = refusal.retry_at
            log.warning(
                "HA refused the token %.0f min ago: next login try in %.0f min, or at once on "
                "SIGHUP after replacing HA_TOKEN_FILE (or HA_TOKEN)",
                (now - refusal.refused_at) / 60,
                (refusal.retry_at - now) / 60,
            )
        elif refusal is not None and not refusal.same_token:
            log.info(
                "HA refused another token %.0f min ago; this one is tried at once",
                (now - refusal.refused_at) / 60,
            )
        await gate.wait(self._token, self._stopping)
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
                self._control_refused(event_type, exc)
        self._stats.connection_state = "subscribed"
        log.info(
            "subscribed to %s (subscription ids %s)",
            ", ".join(t for t in self._event_types if t not in refused),
            ", ".join(str(i) for i in self._stats.subscriptions.values()),
        )

    def _control_refused(self, event_type: str, exc: protocol.CommandFailed) -> None:
        """A warning, except for the optional events: an HA before 2024.4 lets only an admin
        token subscribe to floor and label events, and has neither registry; said once."""
        if event_type not in self._optional_control_events:
            log.warning("could not subscribe to %s (%s); registries may go stale", event_type, exc)
        elif event_type not in self._refusals_said:
            self._refusals_said.add(event_type)
            log.info("HA refused the subscription to %s (%s): an HA before 2024.4", event_type, exc)

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


async def _until_ended(
    connection: HAConnection, reader: asyncio.Task[None], heartbeat: asyncio.Task[None]
) -> None:
    """Wait until the reader or the heartbeat ends; raise what ended the connection.

    The reader knows best. Once the connection is closing (we closed it with 1009 for a frame
    too big, or HA closed it), a ping that got no pong, or failed with the connection, is a
    consequence: the reader's end is awaited (the closing handshake is bounded) and its
    reason raised, so that `classify_disconnect` judges the cause, not a symptom.
    """
    await asyncio.wait({reader, heartbeat}, return_when=asyncio.FIRST_COMPLETED)
    if not reader.done() and connection.ws.state is not State.OPEN:
        await asyncio.wait({reader}, timeout=CLOSE_TIMEOUT_S + 1.0)
    (reader if reader.done() else heartbeat).result()
