"""The listener process: `build_listener` composes it, `ListenerService.run` runs it.

Lifecycle: every component is built first, in dependency order, none started. `run` starts
each one and registers its stop right after it, in an AsyncExitStack: the state reporter,
health, the publisher (it drains a spool left by a previous run first), the watermark keeper,
the quiet-sensor heartbeat (when STATE_HEARTBEAT_INTERVAL is set), the signal handlers; then
it connects to HA. On SIGTERM/SIGINT the client unsubscribes, and the stack stops everything
in reverse order of start: memory is flushed to the broker or the spool before the watermark
is saved, and the DATA_DIR lock is released last. Exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from config.redis_keys import RedisKeys
from config.settings import Settings, SettingsError, load_settings
from core.backoff import exponential_backoff
from core.ha_event import parse_ha_time
from core.home_name import provisional_name
from core.renames import REGISTRY_UPDATED, FoundBy
from core.state_heartbeat import HeartbeatPolicy, QuietClock
from core.task_message import Source, TaskMessage
from listener.data_dir_lock import DataDirLock
from listener.ha import protocol
from listener.ha.auth_gate import AuthGate
from listener.ha.client import ControlHandler, HAClient, HAConnection
from listener.ha.frame_trace import FrameTrace
from listener.ha.registries import (
    EVENTS_SINCE_2024_4,
    UPDATE_EVENTS,
    Call,
    RegistryRefresher,
    RegistryStore,
)
from listener.ha.renames import RenameTracker
from listener.handoff.publisher import Publisher, celery_publisher
from listener.handoff.spool import Spool
from listener.handoff.state_heartbeat import StateHeartbeat
from listener.handoff.storage_watch import BrokerMemoryGate
from listener.health.server import HealthServer
from listener.health.state_reporter import StateReporter
from listener.health.stats import ListenerStats
from listener.health.view import HealthView
from listener.history.backfill import OVERLAP_S, gap_start, state_event
from listener.history.gap_filler import BackfillCursor, BackfillFailed, BackfillLimits, GapFiller
from listener.state_files import CURSOR_FILE, STATE_FILE, HomeNameFile, WatermarkFile

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_CONFIG = 2

REMEMBER_EVERY_S = 2.0
"""How often the durable watermark is written to disk while running."""


def _frame_trace(settings: Settings) -> FrameTrace | None:
    """HA_TRACE_FRAMES's trace, or None: then frames cost nothing extra."""
    if settings.ha_trace_frames is None:
        return None
    log.warning(
        "tracing every frame to and from HA into %s (secrets masked, event data included): "
        "unset HA_TRACE_FRAMES when done debugging; `ha-ingestor trace summary %s` reads it",
        settings.ha_trace_frames,
        settings.ha_trace_frames,
    )
    try:
        return FrameTrace(
            settings.ha_trace_frames,
            max_bytes=int(settings.ha_trace_max_mb * 1024 * 1024),
            backups=settings.ha_trace_backups,
            secrets=settings.secrets(),
        )
    except OSError as exc:
        raise SettingsError(
            f"HA_TRACE_FRAMES: cannot write the frame trace {settings.ha_trace_frames} ({exc}): "
            "choose a writable path, or unset it"
        ) from exc


class Listener:
    """What the listener does with HA: every event to the publisher with the §3.1 envelope;
    after each connection the registries, the first start's snapshot and the gap backfill."""

    def __init__(
        self,
        settings: Settings,
        stats: ListenerStats,
        publisher: Publisher[Any, Any],
        registries: RegistryStore,
        watermark_file: WatermarkFile,
        cursor: BackfillCursor,
    ) -> None:
        self.settings = settings
        self._home_file = home_file = HomeNameFile(settings.data_dir)
        self.instance: str | None = settings.ha_instance or home_file.remembered()
        """This home's name, in every message (HA_INSTANCE, else the name kept in DATA_DIR);
        on the very first start without HA_INSTANCE, made from HA's location name at login."""
        stats.instance = self.instance or provisional_name(socket.gethostname(), os.getpid())
        if self.instance is None:
            log.info(
                "this home has no name yet (HA_INSTANCE unset, none kept in DATA_DIR): its state "
                "is reported as %r until the first login names it from HA's location name",
                stats.instance,
            )
        registries.for_home(self.instance)
        self._ha_config: dict[str, Any] = {}
        """HA's `get_config` of this connection (read at login: its name and components)."""
        self.heartbeat: StateHeartbeat | None = None
        """The quiet-sensor heartbeat (STATE_HEARTBEAT_INTERVAL), fed from here when set."""
        self.stats = stats
        self.publisher = publisher
        self.registries = registries
        self._watermark_file = watermark_file
        self._cursor = cursor
        self._filler = GapFiller(
            cursor, self._enqueue_backfilled, publisher.watermark.is_durable, _limits(settings)
        )
        self._seq = itertools.count(1)
        self._snapshot_done = False
        self._last_event_time: Any = None
        # Where the next gap starts: the last event received before the connection was lost
        # (this process still holds what it received), or, at start, the newest event a
        # previous run durably handed off (None on the very first start).
        self._gap_from: Any = watermark_file.handed_off_through()
        self._backfill_tasks: set[asyncio.Task[None]] = set()
        self._connection: HAConnection | None = None
        self.renames: RenameTracker | None = None
        """With TRACK_RENAMES: a rename HA announced is handed on before any later event."""

    async def on_event(
        self, event: dict[str, Any], source: Source = "live", *, from_ha: bool = True
    ) -> None:
        """Hand an event to the publisher; waits only when memory and the spool are both full.

        `from_ha=False`: an event the listener made (a rename), not counted as received."""
        stats = self.stats
        if from_ha and self.renames is not None and self.renames.busy:
            await self.renames.settled()
        if source == "live" and from_ha:
            stats.events_received += 1
            stats.events_by_type[str(event.get("event_type"))] += 1
            stats.count_entity(event)
            stats.last_event_at = time.time()
            mark = self._last_event_time = event.get("time_fired")
        else:
            mark = None
        message = TaskMessage(
            event, time.time(), source, next(self._seq), instance=self.instance
        ).to_json()
        # Memory and spool both full (the spool's disk is full): stop reading until there is
        # room; HA may drop us, and the backfill after reconnecting fills the gap.
        while not self.publisher.submit(message, mark):  # noqa: ASYNC110 - the room is made by a thread
            await asyncio.sleep(0.05)
        # Also set here: the publisher thread sets it between steps, and a hung publish
        # would leave /health showing an empty memory that is filling up.
        stats.memory_queue_depth = self.publisher.backlog
        if source == "live" and self.heartbeat is not None:
            self.heartbeat.saw(event)  # after the hand-off: nothing here can cost the event

    async def on_rename(self, event: dict[str, Any], found_by: FoundBy) -> None:
        """A rename's message: `live` when HA announced it, `snapshot` when a registry fetch
        showed it (core/renames.py)."""
        self.stats.renames_seen += 1
        await self.on_event(event, "live" if found_by == "event" else "snapshot", from_ha=False)

    def current_call(self) -> Call | None:
        """The live connection's `call`, for registry refreshes; None while disconnected."""
        connection = self._connection
        return None if connection is None else connection.call

    def count_refresh(self) -> None:
        self.stats.registry_refreshes += 1

    async def on_authenticated(self, connection: HAConnection) -> None:
        """After login, before subscribing: HA's config, and so this home's name, is known
        before the first event; the registries are stored under that home's keys."""
        try:
            config = await connection.call("get_config")
        except protocol.CommandFailed:
            config = {}
        self._ha_config = config if isinstance(config, dict) else {}
        name = await asyncio.to_thread(
            self._home_file.resolve, self.settings.ha_instance, self._ha_config.get("location_name")
        )
        if name != self.instance:
            log.info("home %r: its registries are stored under its own Redis keys", name)
        self.instance = self.stats.instance = name
        self.registries.for_home(name)

    async def on_connected(self, connection: HAConnection) -> None:
        """After subscribing: registries, then the snapshot (first start) and the gap backfill.

        Subscribing comes first, so nothing falls between the history read and live events.
        The backfill runs as a task: it may take minutes, and heartbeats and a lost connection
        must not wait for it.
        """
        self._connection = connection
        await self.registries.refresh(connection.call)
        states = await connection.call("get_states", reply_timeout=60.0) or []
        states = [s for s in states if isinstance(s, dict)]
        if not self._snapshot_done:
            for state in states:
                await self.on_event(state_event(state), source="snapshot")
            self.stats.snapshot_states += len(states)
            self._snapshot_done = True
            log.info("snapshot: enqueued the %d current states", len(states))
        if self.heartbeat is not None:
            self.heartbeat.connected(states)
        start = self._gap_start()
        if start is None:
            return
        entity_ids = sorted({str(s.get("entity_id")) for s in states})
        if not self._history_available():
            return
        task = asyncio.create_task(
            self._backfill(connection, start, entity_ids), name="gap-backfill"
        )
        self._backfill_tasks.add(task)
        task.add_done_callback(self._backfill_tasks.discard)

    def _gap_start(self) -> datetime | None:
        """The earliest of the last event seen and an unfinished backfill's cursor."""
        candidates = [parse_ha_time(self._gap_from)]
        pending = self._cursor.load()
        if pending is not None:
            candidates.append(pending[0])
        known = [moment for moment in candidates if moment is not None]
        return gap_start(min(known)) if known else None

    def on_disconnected(self) -> None:
        """The gap starts at the last event this connection delivered."""
        self._connection = None
        if self.heartbeat is not None:
            self.heartbeat.disconnected()
        self.cancel_backfills()
        if self._last_event_time is not None:
            self._gap_from = self._last_event_time

    def _history_available(self) -> bool:
        components = self._ha_config.get("components", [])
        available = isinstance(components, list) and "recorder" in components
        self.stats.history_available = available
        if not available:
            log.warning(
                "HA's recorder is off: events missed while disconnected cannot be filled in. "
                "Enable `recorder:` in HA's configuration (it is on in default installs)."
            )
        return available

    async def _enqueue_backfilled(self, state: dict[str, Any]) -> int:
        await self.on_event(state_event(state), source="backfill")
        self.stats.backfilled_states += 1
        return self.publisher.watermark.submitted_count - 1

    async def _backfill(
        self, connection: HAConnection, start: datetime, entity_ids: list[str]
    ) -> None:
        """Fill [start, now] window by window; then, a commit interval later, its newest end.

        HA's recorder commits every few seconds: changes from just before the reconnect may
        not be readable yet, so the last stretch is asked again (overlap is harmless).
        """
        end = datetime.now(UTC) + timedelta(seconds=OVERLAP_S)
        commit_s = self.settings.ha_recorder_commit_interval
        try:
            count = await self._filler.fill(connection.call, start, end, entity_ids, track=True)
            log.info("backfill: enqueued %d state changes since %s", count, start.isoformat())
            await asyncio.sleep(commit_s + 1.0)
            again = max(start, end - timedelta(seconds=commit_s + 2 * OVERLAP_S + 1.0))
            count = await self._filler.fill(connection.call, again, end, entity_ids, track=False)
            log.info("backfill: enqueued %d state changes since %s", count, again.isoformat())
        except BackfillFailed as exc:
            log.warning(
                "could not read HA's history to fill the gap: %s; the next connection starts "
                "again from the saved cursor",
                exc,
            )
        except ConnectionError:
            log.info("the connection was lost during the backfill; the next one resumes it")

    def cancel_backfills(self) -> None:
        for task in list(self._backfill_tasks):
            task.cancel()  # its cursor stays: the next connection starts from there

    @contextlib.asynccontextmanager
    async def remembering(self) -> AsyncIterator[None]:
        """Keep the durable watermark on disk while inside, so a restart knows its gap.

        Only what is in the broker or the spool counts: events still in memory die with a
        SIGKILLed process, and the restart's backfill must reach back to them. On the way out
        a save in progress finishes first: `save_watermark` after the flush never races it.
        """
        stop = asyncio.Event()
        keeper = asyncio.create_task(self._remember(stop), name="remember")
        try:
            yield
        finally:
            stop.set()
            await keeper

    async def _remember(self, stop: asyncio.Event) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REMEMBER_EVERY_S):
                    await stop.wait()
            if stop.is_set():
                return
            try:
                await asyncio.to_thread(self.save_watermark)
            except OSError as exc:
                log.warning(
                    "could not save the handoff watermark in DATA_DIR (%s): free some space or "
                    "fix its permissions; until then a restart backfills from an older mark",
                    exc,
                )

    def save_watermark(self) -> None:
        """Write where the durable handoff got to (a no-op when it did not move)."""
        self._watermark_file.save(self.publisher.watermark.value)


def _limits(settings: Settings) -> BackfillLimits:
    return BackfillLimits(
        window_s=settings.backfill_window,
        entities_per_request=settings.backfill_entities_per_request,
        reply_timeout=settings.backfill_reply_timeout,
        retries=settings.backfill_retries,
    )


@dataclass(frozen=True)
class ListenerService:
    """A built listener, nothing started yet; `run` starts the parts and stops them."""

    settings: Settings
    listener: Listener
    client: HAClient
    refresher: RegistryRefresher
    publisher: Publisher[Any, Any]
    reporter: StateReporter
    health: HealthServer
    opened: contextlib.ExitStack
    """What holds a resource since it was built (lock, spool, trace, Redis): closed last."""

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the process exit code.

        Each part's stop is registered right after it starts, so the stack stops them in
        reverse order of start, also when one of them fails.
        """
        async with contextlib.AsyncExitStack() as stack:
            stack.enter_context(self.opened)
            self.reporter.start()
            stack.callback(self._stop_reporter)
            self.health.start()
            stack.callback(self.health.stop)
            self.publisher.start()
            stack.push_async_callback(self._stop_publisher)
            await stack.enter_async_context(self.listener.remembering())
            if self.listener.heartbeat is not None:
                await stack.enter_async_context(self.listener.heartbeat.running())
            self._handle_signals(stack)
            stack.callback(self.refresher.cancel)
            stack.callback(self.listener.cancel_backfills)
            log.info(
                "health on http://%s:%d/health, metrics on /metrics",
                self.settings.health_host,
                self.health.port,
            )
            await self.client.run()
        log.info("listener stopped")
        return EXIT_OK

    def _handle_signals(self, stack: contextlib.AsyncExitStack) -> None:
        """SIGTERM/SIGINT stop the client; SIGHUP reads the token again."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, lambda: asyncio.ensure_future(self.client.stop()))
            stack.callback(loop.remove_signal_handler, signum)
        loop.add_signal_handler(signal.SIGHUP, self._reload_token)
        stack.callback(loop.remove_signal_handler, signal.SIGHUP)

    async def _stop_publisher(self) -> None:
        """Flush memory to the broker or the spool; then what it held counts as handed off."""
        await asyncio.to_thread(self.publisher.stop)
        self.listener.save_watermark()

    def _stop_reporter(self) -> None:
        self.reporter.stop()
        self.reporter.log_summary()

    def _reload_token(self) -> None:
        """SIGHUP: read HA_TOKEN_FILE (or HA_TOKEN) again and log in with it at once."""
        try:
            token = load_settings().ha_token_value()
        except (SettingsError, OSError) as exc:
            log.error("SIGHUP: could not read the token again (%s); keeping the old one", exc)  # noqa: TRY400
            return
        if not token:
            log.error("SIGHUP: HA_TOKEN and HA_TOKEN_FILE give no token; keeping the old one")
            return
        log.info("SIGHUP: token read again; logging in with it")
        self.client.replace_token(token)


def build_listener(settings: Settings, stats: ListenerStats | None = None) -> ListenerService:
    """Build every part of the listener in dependency order, none started.

    What holds a resource from the moment it is built (the DATA_DIR lock, the spool's
    database, the frame trace, the Redis client) is registered in `opened` at once: closed
    again if a later part cannot be built, else last of all when `run` ends.
    """
    url, token = settings.ha_url, settings.ha_token_value()
    if url is None or not token:
        raise SettingsError(
            "ha-ingestor listener: set HA_URL (e.g. http://homeassistant.local:8123) and "
            "HA_TOKEN (a long-lived access token from your HA profile, Security tab)."
        )
    stats = stats or ListenerStats()
    keys = RedisKeys(settings.redis_prefix)
    with contextlib.ExitStack() as opened:
        # First of all: a second listener on this DATA_DIR stops here (DataDirBusy).
        opened.callback(DataDirLock(settings.data_dir).release)
        spool = Spool(
            settings.data_dir / "spool" / "events.sqlite3",
            max_bytes=settings.spool_max_mb * 1024 * 1024,
        )
        opened.callback(spool.close)
        frame_trace = _frame_trace(settings)
        if frame_trace is not None:
            opened.callback(frame_trace.close)
        state_redis = redis.Redis.from_url(settings.state_redis_url(), socket_timeout=5)
        opened.callback(state_redis.close)
        publisher = _publisher(settings, spool, stats)
        registries = RegistryStore(state_redis, keys)
        listener = Listener(
            settings,
            stats,
            publisher,
            registries,
            WatermarkFile(settings.data_dir / STATE_FILE),
            BackfillCursor(settings.data_dir / CURSOR_FILE),
        )
        listener.heartbeat = _state_heartbeat(settings, listener, stats)
        refresher = RegistryRefresher(
            registries, listener.current_call, on_refreshed=listener.count_refresh
        )
        control: dict[str, ControlHandler] = dict.fromkeys(UPDATE_EVENTS, refresher.changed)
        if settings.track_renames:
            tracker = listener.renames = RenameTracker(listener.on_rename, registries.rename_entity)
            registries.watch_entities(tracker.entities_stored)
            control[REGISTRY_UPDATED] = tracker.then(refresher.changed)
        return ListenerService(
            settings=settings,
            listener=listener,
            client=_ha_client(settings, url, token, stats, listener, control, frame_trace),
            refresher=refresher,
            publisher=publisher,
            reporter=StateReporter(state_redis, keys, stats),
            # Last: it listens on its port from here on, and nothing after it can fail.
            health=HealthServer(
                settings.health_host, settings.health_port, HealthView(settings, stats).report
            ),
            opened=opened.pop_all(),
        )


def _state_heartbeat(
    settings: Settings, listener: Listener, stats: ListenerStats
) -> StateHeartbeat | None:
    """The quiet-sensor heartbeat when STATE_HEARTBEAT_INTERVAL is set; it sends through the
    listener's `on_event`, so its messages take the path (and the guarantee) of every event."""
    if settings.state_heartbeat_interval is None:
        return None
    policy = HeartbeatPolicy(
        settings.state_heartbeat_interval,
        frozenset(settings.state_heartbeat_domains),
        frozenset(settings.state_heartbeat_entity_globs),
    )

    async def submit(event: dict[str, Any]) -> None:
        await listener.on_event(event, source="heartbeat")

    return StateHeartbeat(QuietClock(policy), submit, stats)


def _publisher(settings: Settings, spool: Spool, stats: ListenerStats) -> Publisher[Any, Any]:
    return Publisher(
        celery_publisher(settings),
        spool,
        stats,
        capacity=settings.publish_queue_size,
        memory_gate=BrokerMemoryGate(
            settings.celery_broker_url.get_secret_value(),
            settings.broker_kind,
            settings.broker_memory_spool_percent,
        ),
        spool_max_bytes=settings.spool_max_mb * 1024 * 1024,
    )


def _ha_client(
    settings: Settings,
    url: str,
    token: str,
    stats: ListenerStats,
    listener: Listener,
    control: dict[str, ControlHandler],
    frame_trace: FrameTrace | None,
) -> HAClient:
    return HAClient(
        url,
        token,
        settings.ha_event_types,
        listener.on_event,
        stats,
        control_events=control,
        optional_control_events=EVENTS_SINCE_2024_4,
        on_authenticated=listener.on_authenticated,
        on_connected=listener.on_connected,
        on_disconnected=listener.on_disconnected,
        heartbeat_interval=settings.ha_heartbeat_interval,
        heartbeat_timeout=settings.ha_heartbeat_timeout,
        backoff=lambda: exponential_backoff(
            initial=settings.ha_reconnect_initial_delay, cap=settings.ha_reconnect_max_delay
        ),
        auth_gate=AuthGate(settings.data_dir),
        max_frame_bytes=settings.ha_max_frame_mb * 1024 * 1024,
        frame_trace=frame_trace,
    )
