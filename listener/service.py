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
from typing import Any

import redis

from config.celery_app import create_app
from config.messages import Source, TaskMessage
from config.redis_keys import RedisKeys
from config.settings import Settings
from listener import protocol
from listener.ha_client import HAClient, HAConnection
from listener.health import listener_health
from listener.health_server import HealthServer
from listener.publisher import Publisher, celery_publisher
from listener.spool import Spool
from listener.state_reporter import StateReporter
from listener.stats import ListenerStats

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


class Listener:
    """One listener: reads HA, hands every event to the publisher with the §3.1 envelope."""

    def __init__(self, settings: Settings, stats: ListenerStats | None = None) -> None:
        self.settings = settings
        self.stats = stats or ListenerStats()
        self._seq = itertools.count(1)
        self._snapshot_done = False
        app = create_app(settings)
        self.spool = Spool(settings.data_dir / "spool" / "events.sqlite3")
        self.publisher = Publisher(
            celery_publisher(app, settings.celery_queue),
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
            on_connected=self.on_connected,
            heartbeat_interval=settings.ha_heartbeat_interval,
            heartbeat_timeout=settings.ha_heartbeat_timeout,
        )

    async def on_event(self, event: dict[str, Any], source: Source = "live") -> None:
        """Hand an event to the publisher; waits only when memory and the spool are both full."""
        stats = self.stats
        if source == "live":
            stats.events_received += 1
            stats.events_by_type[str(event.get("event_type"))] += 1
            stats.last_event_at = time.time()
        message = TaskMessage(event, time.time(), source, next(self._seq)).to_json()
        # Memory and spool both full (the spool's disk is full): stop reading until there is
        # room; HA may drop us, and the backfill after reconnecting fills the gap.
        while not self.publisher.submit(message):  # noqa: ASYNC110 - the room is made by a thread
            await asyncio.sleep(0.05)

    async def on_connected(self, connection: HAConnection) -> None:
        """After subscribing: on first start, enqueue the current states as a snapshot."""
        if self._snapshot_done:
            return
        states = await connection.call("get_states", reply_timeout=60.0)
        for state in states or []:
            if isinstance(state, dict):
                await self.on_event(state_event(state), source="snapshot")
        self.stats.snapshot_states += len(states or [])
        self._snapshot_done = True
        log.info("snapshot: enqueued the %d current states", len(states or []))

    def health(self) -> dict[str, Any]:
        return listener_health(self.stats, time.time())

    async def run(self) -> int:
        """Run until a signal or a fatal error; returns the process exit code."""
        settings = self.settings
        keys = RedisKeys(settings.redis_prefix)
        reporter = StateReporter(
            redis.Redis.from_url(settings.state_redis_url(), socket_timeout=5), keys, self.stats
        )
        health = HealthServer(settings.health_host, settings.health_port, self.stats, self.health)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, lambda: asyncio.ensure_future(self.client.stop()))
        self.publisher.start()
        reporter.start()
        health.start()
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
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            await asyncio.to_thread(self.publisher.stop)
            health.stop()
            reporter.stop()
            reporter.log_summary()
            self.spool.close()
        log.info("listener stopped")
        return code
