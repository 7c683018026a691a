"""The listener process: wires the HA client, the publisher, the spool and the health server.

Lifecycle: start the publisher (it drains a spool left by a previous run first), serve health,
connect to HA; on SIGTERM/SIGINT unsubscribe, flush memory to the broker or the spool, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

from config.redis_keys import RedisKeys
from config.settings import Settings
from core.backoff import exponential_backoff
from core.ha_event import parse_ha_time
from core.task_message import Source, TaskMessage
from listener import protocol
from listener.backfill import gap_start, history_request, states_from_history
from listener.ha_client import HAClient, HAConnection
from listener.health_server import HealthServer
from listener.health_view import HealthView
from listener.listener_stats import ListenerStats
from listener.publisher import Publisher, celery_publisher
from listener.registries import UPDATE_EVENTS, RegistryStore
from listener.spool import Spool
from listener.state_reporter import StateReporter

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_AUTH_INVALID = 3
EXIT_CONFIG = 2


def state_event(state: dict[str, Any]) -> dict[str, Any]:
    """A state_changed event for a state read from HA (snapshot or history)."""
    return {
        "event_type": "state_changed",
        "data": {"entity_id": state.get("entity_id"), "old_state": None, "new_state": state},
        "origin": "LOCAL",
        "time_fired": state.get("last_updated"),
        "context": state.get("context"),
    }


class ListenerMemory:
    """What a listener must remember across restarts: the time of the last event it saw."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def last_event_time(self) -> Any:
        try:
            return json.loads(self._path.read_text(encoding="utf-8")).get("last_event_time")
        except (OSError, ValueError, AttributeError):
            return None

    def save(self, last_event_time: Any) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self._path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"last_event_time": last_event_time}), encoding="utf-8")
        temporary.replace(self._path)


class Listener:
    """One listener: reads HA, hands every event to the publisher with the §3.1 envelope."""

    def __init__(self, settings: Settings, stats: ListenerStats | None = None) -> None:
        self.settings = settings
        self.stats = stats or ListenerStats()
        self._seq = itertools.count(1)
        self._snapshot_done = False
        self._last_event_time: Any = None
        self._memory = ListenerMemory(settings.data_dir / "listener-state.json")
        # Where the next gap starts: the last event seen before the connection was lost, or,
        # at start, the last event a previous run saw (None on the very first start).
        self._gap_from: Any = self._memory.last_event_time()
        self._backfill_tasks: set[asyncio.Task[None]] = set()
        keys = RedisKeys(settings.redis_prefix)
        self._redis = redis.Redis.from_url(settings.state_redis_url(), socket_timeout=5)
        self._health_view = HealthView(settings, self.stats)
        self.registries = RegistryStore(self._redis, keys)
        self.spool = Spool(
            settings.data_dir / "spool" / "events.sqlite3",
            max_bytes=settings.spool_max_mb * 1024 * 1024,
        )
        self.publisher = Publisher(
            celery_publisher(settings),
            self.spool,
            self.stats,
            capacity=settings.publish_queue_size,
        )
        token = settings.ha_token_value()
        if settings.ha_url is None or not token:
            raise ValueError("HA_URL and HA_TOKEN are required to run the listener")
        self.client = HAClient(
            settings.ha_url,
            token,
            settings.ha_event_types,
            self.on_event,
            self.stats,
            control_events=dict.fromkeys(UPDATE_EVENTS, self.on_registry_updated),
            on_connected=self.on_connected,
            on_disconnected=self.on_disconnected,
            heartbeat_interval=settings.ha_heartbeat_interval,
            heartbeat_timeout=settings.ha_heartbeat_timeout,
            backoff=lambda: exponential_backoff(
                initial=settings.ha_reconnect_initial_delay, cap=settings.ha_reconnect_max_delay
            ),
        )

    async def on_event(self, event: dict[str, Any], source: Source = "live") -> None:
        """Hand an event to the publisher; waits only when memory and the spool are both full."""
        stats = self.stats
        if source == "live":
            stats.events_received += 1
            stats.events_by_type[str(event.get("event_type"))] += 1
            stats.count_entity(event)
            stats.last_event_at = time.time()
            self._last_event_time = event.get("time_fired")
        message = TaskMessage(event, time.time(), source, next(self._seq)).to_json()
        # Memory and spool both full (the spool's disk is full): stop reading until there is
        # room; HA may drop us, and the backfill after reconnecting fills the gap.
        while not self.publisher.submit(message):  # noqa: ASYNC110 - the room is made by a thread
            await asyncio.sleep(0.05)

    async def on_registry_updated(self, event: dict[str, Any]) -> None:
        """HA changed a registry: fetch it again for the workers' enrichment."""
        connection = self.client.connection
        name = UPDATE_EVENTS.get(str(event.get("event_type")))
        if connection is not None and name is not None:
            await self.registries.refresh(connection.call, [name])

    async def on_connected(self, connection: HAConnection) -> None:
        """After subscribing: registries, then the snapshot (first start) and the gap backfill.

        Subscribing comes first, so nothing falls between the history read and live events.
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
        last_seen = parse_ha_time(self._gap_from)
        if last_seen is None:
            return
        entity_ids = sorted({str(s.get("entity_id")) for s in states})
        if not await self._history_available(connection):
            return
        await self._backfill(connection, last_seen, entity_ids)
        # HA's recorder commits every few seconds: changes from just before the reconnect may
        # not be readable yet, so ask again once a commit interval has passed.
        task = asyncio.create_task(
            self._backfill_later(connection, last_seen, entity_ids), name="backfill-again"
        )
        self._backfill_tasks.add(task)
        task.add_done_callback(self._backfill_tasks.discard)

    def on_disconnected(self) -> None:
        """The gap starts at the last event this connection delivered."""
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

    async def _backfill(
        self, connection: HAConnection, last_seen: datetime, entity_ids: list[str]
    ) -> None:
        start = gap_start(last_seen)
        try:
            result = await connection.call(
                "history/history_during_period",
                reply_timeout=120.0,
                **history_request(start, entity_ids),
            )
        except protocol.CommandFailed as exc:
            log.warning("could not read HA's history to fill the gap: %s", exc)
            return
        count = 0
        for state in states_from_history(result or {}):
            await self.on_event(state_event(state), source="backfill")
            count += 1
        self.stats.backfilled_states += count
        log.info("backfill: enqueued %d state changes since %s", count, start.isoformat())

    async def _backfill_later(
        self, connection: HAConnection, last_seen: datetime, entity_ids: list[str]
    ) -> None:
        await asyncio.sleep(self.settings.ha_recorder_commit_interval + 1.0)
        if self.client.connection is connection:
            with contextlib.suppress(Exception):
                await self._backfill(connection, last_seen, entity_ids)

    async def _remember(self) -> None:
        """Keep the last event time on disk, so a restarted listener knows its gap."""
        while True:
            await asyncio.sleep(2.0)
            if self._last_event_time is not None:
                await asyncio.to_thread(self._memory.save, self._last_event_time)

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
            for task in list(self._backfill_tasks):
                task.cancel()
            if self._last_event_time is not None:
                self._memory.save(self._last_event_time)
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            await asyncio.to_thread(self.publisher.stop)
            health.stop()
            reporter.stop()
            reporter.log_summary()
            self.spool.close()
        log.info("listener stopped")
        return code
