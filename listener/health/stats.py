"""What the listener knows about itself, for /health, /metrics, the Redis state and the logs.

Each counter is written by one thread only (reader or publisher), so no locks are needed;
`snapshot` turns them into the typed `ListenerState` that /health and Redis get.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from core.ha_event import entity_id_of
from core.listener_state import ListenerState


@dataclass
class ListenerStats:
    """Counters and connection state of one listener process."""

    started_at: float = field(default_factory=time.time)
    connection_state: str = "starting"
    ha_version: str = ""
    connect_attempts: int = 0
    connects_ok: int = 0
    connects_failed: int = 0
    reconnects: int = 0
    last_error: str = ""
    subscriptions: dict[str, int] = field(default_factory=dict)
    events_received: int = 0
    events_by_type: Counter[str] = field(default_factory=Counter)
    events_by_entity: Counter[str] = field(default_factory=Counter)
    """Live events per entity_id ("" for events without one); the state reporter turns the
    increments into per-minute buckets by entity and domain."""
    last_event_at: float | None = None
    malformed_frames: int = 0
    events_enqueued: int = 0
    events_spooled: int = 0
    events_drained: int = 0
    publish_errors: int = 0
    broker_up: bool = True
    spool_depth: int = 0
    memory_queue_depth: int = 0
    snapshot_states: int = 0
    backfilled_states: int = 0
    history_available: bool | None = None
    skipped_messages: Counter[str] = field(default_factory=Counter)
    read_stall_max_s: float = 0.0
    registry_refreshes: int = 0
    publisher_restarts: int = 0
    spool_quarantined: int = 0
    auth_retry_at: float | None = None
    spool_bytes: int = 0
    spool_max_bytes: int | None = None
    spool_disk_free_bytes: int | None = None
    broker_memory_used_bytes: int | None = None
    broker_memory_max_bytes: int | None = None
    broker_full: bool = False
    spool_full: bool = False

    def skip(self, reason: str) -> None:
        """Count a frame or message from HA that cannot be used (also in malformed_frames)."""
        self.skipped_messages[reason] += 1
        self.malformed_frames += 1

    def count_entity(self, event: dict[str, Any]) -> None:
        """Count a live event under its entity: one dict increment on the event loop."""
        self.events_by_entity[entity_id_of(event) or ""] += 1

    def snapshot(self, now: float) -> ListenerState:
        """The state as of `now`, for /health and the Redis state (no secrets are ever here)."""
        return ListenerState(
            started_at=self.started_at,
            reported_at=now,
            connection_state=self.connection_state,
            ha_version=self.ha_version,
            connect_attempts=self.connect_attempts,
            connects_ok=self.connects_ok,
            connects_failed=self.connects_failed,
            reconnects=self.reconnects,
            last_error=self.last_error,
            subscriptions=dict(self.subscriptions),
            events_received=self.events_received,
            events_by_type=dict(self.events_by_type),
            last_event_at=self.last_event_at,
            malformed_frames=self.malformed_frames,
            events_enqueued=self.events_enqueued,
            events_spooled=self.events_spooled,
            events_drained=self.events_drained,
            publish_errors=self.publish_errors,
            broker_up=self.broker_up,
            spool_depth=self.spool_depth,
            memory_queue_depth=self.memory_queue_depth,
            snapshot_states=self.snapshot_states,
            backfilled_states=self.backfilled_states,
            history_available=self.history_available,
            skipped_messages=dict(self.skipped_messages),
            read_stall_max_s=self.read_stall_max_s,
            registry_refreshes=self.registry_refreshes,
            publisher_restarts=self.publisher_restarts,
            spool_quarantined=self.spool_quarantined,
            auth_retry_at=self.auth_retry_at,
            spool_bytes=self.spool_bytes,
            spool_max_bytes=self.spool_max_bytes,
            spool_disk_free_bytes=self.spool_disk_free_bytes,
            broker_memory_used_bytes=self.broker_memory_used_bytes,
            broker_memory_max_bytes=self.broker_memory_max_bytes,
            broker_full=self.broker_full,
            spool_full=self.spool_full,
        )
