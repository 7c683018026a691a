"""The listener process: wires the HA client, the publisher, the spool and the health server.

Lifecycle: start the publisher (it drains a spool left by a previous run first), serve health,
connect to HA; on SIGTERM/SIGINT unsubscribe, flush memory to the broker or the spool, exit 0.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import signal
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from config.redis_keys import RedisKeys
from config.settings import Settings, SettingsError, load_settings
from core.backoff import exponential_backoff
from core.ha_event import parse_ha_time
from core.task_message import Source, TaskMessage
from listener.data_dir_lock import DataDirLock
from listener.ha import protocol
from listener.ha.auth_gate import AuthGate
from listener.ha.client import HAClient, HAConnection
from listener.ha.frame_trace import FrameTrace
from listener.ha.registries import UPDATE_EVENTS, Call, RegistryRefresher, RegistryStore
from listener.handoff.publisher import Publisher, celery_publisher
from listener.handoff.spool import Spool
from listener.handoff.storage_watch import BrokerMemoryGate
from listener.health.server import HealthServer
from listener.health.state_reporter import StateReporter
from listener.health.stats import ListenerStats
from listener.health.view import HealthView
from listener.history.backfill import OVERLAP_S, gap_start, state_event
from listener.history.gap_filler import BackfillCursor, BackfillFailed, BackfillLimits, GapFiller
from listener.state_files import CURSOR_FILE, STATE_FILE, WatermarkFile

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_AUTH_INVALID = 3
EXIT_CONFIG = 2


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
    """One listener: reads HA, hands every event to the publisher with the §3.1 envelope."""

    def __init__(self, settings: Settings, stats: ListenerStats | None = None) -> None:
        self.settings = settings
        self.stats = stats or ListenerStats()
        self._seq = itertools.count(1)
        self._snapshot_done = False
        self._last_event_time: Any = None
        # First of all: a second listener on this DATA_DIR stops here (DataDirBusy).
        self._lock = DataDirLock(settings.data_dir)
        self._memory = WatermarkFile(settings.data_dir / STATE_FILE)
        # Where the next gap starts: the last event received before the connection was lost
        # (this process still holds what it received), or, at start, the newest event a
        # previous run durably handed off (None on the very first start).
        self._gap_from: Any = self._memory.handed_off_through()
        self._backfill_tasks: set[asyncio.Task[None]] = set()
        self._cursor = BackfillCursor(settings.data_dir / CURSOR_FILE)
        self._filler = GapFiller(
            self._cursor,
            self._enqueue_backfilled,
            lambda ticket: self.publisher.watermark.is_durable(ticket),
            BackfillLimits(
                window_s=settings.backfill_window,
                entities_per_request=settings.backfill_entities_per_request,
                reply_timeout=settings.backfill_reply_timeout,
                retries=settings.backfill_retries,
            ),
        )
        keys = RedisKeys(settings.redis_prefix)
        self._redis = redis.Redis.from_url(settings.state_redis_url(), socket_timeout=5)
        self._health_view = HealthView(settings, self.stats)
        self.registries = RegistryStore(self._redis, keys)
        self.refresher = RegistryRefresher(
            self.registries, self._current_call, on_refreshed=self._count_refresh
        )
        self.spool = Spool(
            settings.data_dir / "spool" / "events.sqlite3",
            max_bytes=settings.spool_max_mb * 1024 * 1024,
        )
        self.publisher = Publisher(
            celery_publisher(settings),
            self.spool,
            self.stats,
            capacity=settings.publish_queue_size,
            memory_gate=BrokerMemoryGate(
                settings.celery_broker_url.get_secret_value(),
                settings.broker_kind,
                settings.broker_memory_spool_percent,
            ),
            spool_max_bytes=settings.spool_max_mb * 1024 * 1024,
        )
        token = settings.ha_token_value()
        if settings.ha_url is None or not token:
            raise ValueError("HA_URL and HA_TOKEN are required to run the listener")
        self.frame_trace = _frame_trace(settings)
        self.client = HAClient(
            settings.ha_url,
            token,
            settings.ha_event_types,
            self.on_event,
            self.stats,
            control_events=dict.fromkeys(UPDATE_EVENTS, self.refresher.changed),
            on_connected=self.on_connected,
            on_disconnected=self.on_disconnected,
            heartbeat_interval=settings.ha_heartbeat_interval,
            heartbeat_timeout=settings.ha_heartbeat_timeout,
            backoff=lambda: exponential_backoff(
                initial=settings.ha_reconnect_initial_delay, cap=settings.ha_reconnect_max_delay
            ),
            auth_gate=AuthGate(settings.data_dir),
            max_frame_bytes=settings.ha_max_frame_mb * 1024 * 1024,
            frame_trace=self.frame_trace,
        )

    async def on_event(self, event: dict[str, Any], source: Source = "live") -> None:
        """Hand an event to the publisher; waits only when memory and the spool are both full."""
        stats = self.stats
        if source == "live":
            stats.events_received += 1
            stats.events_by_type[str(event.get("event_type"))] += 1
            stats.count_entity(event)
            stats.last_event_at = time.time()
            mark = self._last_event_time = event.get("time_fired")
        else:
            mark = None
        message = TaskMessage(event, time.time(), source, next(self._seq)).to_json()
        # Memory and spool both full (the spool's disk is full): stop reading until there is
        # room; HA may drop us, and the backfill after reconnecting fills the gap.
        while not self.publisher.submit(message, mark):  # noqa: ASYNC110 - the room is made by a thread
            await asyncio.sleep(0.05)
        # Also set here: the publisher thread sets it between steps, and a hung publish
        # would leave /health showing an empty memory that is filling up.
        stats.memory_queue_depth = self.publisher.backlog

    def _current_call(self) -> Call | None:
        connection = self.client.connection
        return None if connection is None else connection.call

    def _count_refresh(self) -> None:
        self.stats.registry_refreshes += 1

    async def on_connected(self, connection: HAConnection) -> None:
        """After subscribing: registries, then the snapshot (first start) and the gap backfill.

        Subscribing comes first, so nothing falls between the history read and live events.
        The backfill runs as a task: it may take minutes, and heartbeats and a lost connection
        must not wait for it.
        """
        await self.registries.refresh(connection.call)
        states = await connection.call("get_states", reply_timeout=60.0) or []
        states = [s for s in states if isinstance(s, dict)]
        if not self._snapshot_done:
            for state in states:
                await self.on_event(state_event(state), source="snapshot")
            self.stats.snapshot_states += len(states)
            self._snapshot_done = True
            log.info("snapshot: enqueued the %d current states", len(states))
        start = self._gap_start()
        if start is None:
            return
        entity_ids = sorted({str(s.get("entity_id")) for s in states})
        if not await self._history_available(connection):
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
        for task in list(self._backfill_tasks):
            task.cancel()  # its cursor stays: the next connection starts from there
        if self._last_event_time is not None:
            self._gap_from = self._last_event_time

    async def _history_available(self, connection: HAConnection) -> bool:
        try:
            config = await connection.call("get_config")
        except protocol.CommandFailed:
            config = {}
        components = config.get("components", []) if isinstance(config, dict) else []
        available = "recorder" in components
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

    async def _remember(self) -> None:
        """Keep the durable watermark on disk, so a restarted listener knows its gap.

        Only what is in the broker or the spool counts: events still in memory die with a
        SIGKILLed process, and the restart's backfill must reach back to them.
        """
        watermark = self.publisher.watermark
        while True:
            await asyncio.sleep(2.0)
            await asyncio.to_thread(self._memory.save, watermark.value)

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

    def health(self) -> dict[str, Any]:
        return self._health_view.report()

    async def run(self) -> int:
        """Run until a signal or a fatal error; returns the process exit code."""
        settings = self.settings
        keys = RedisKeys(settings.redis_prefix)
        reporter = StateReporter(self._redis, keys, self.stats)
        health = HealthServer(settings.health_host, settings.health_port, self.health)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, lambda: asyncio.ensure_future(self.client.stop()))
        loop.add_signal_handler(signal.SIGHUP, self._reload_token)
        self.publisher.start()
        reporter.start()
        health.start()
        remember = asyncio.create_task(self._remember(), name="remember")
        log.info(
            "health on http://%s:%d/health, metrics on /metrics",
            settings.health_host,
            health.port,
        )
        code = EXIT_OK
        try:
            await self.client.run()
        except protocol.AuthInvalid as exc:
            log.error(  # noqa: TRY400 - the traceback would add nothing for the user
                "Home Assistant rejected the token (auth_invalid: %s): create a new long-lived "
                "access token in your HA profile (Security tab) and set HA_TOKEN. Not retrying: "
                "HA bans addresses after repeated failed logins.",
                exc,
            )
            code = EXIT_AUTH_INVALID
        finally:
            remember.cancel()
            self.refresher.cancel()
            for task in list(self._backfill_tasks):
                task.cancel()
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)
            await asyncio.to_thread(self.publisher.stop)
            # After the flush: what memory held is in the broker or the spool now.
            self._memory.save(self.publisher.watermark.value)
            health.stop()
            reporter.stop()
            reporter.log_summary()
            self.spool.close()
            if self.frame_trace is not None:
                self.frame_trace.close()
            self._lock.release()
        log.info("listener stopped")
        return code
