"""The listener's own view of its health: a pure function of its figures."""

from __future__ import annotations

from typing import Any

from listener.stats import ListenerStats


def listener_health(stats: ListenerStats, now: float) -> dict[str, Any]:
    """Status and reasons from what the listener knows (beat adds the pipeline's view)."""
    reasons: list[str] = []
    status = "healthy"
    if stats.connection_state == "auth_invalid":
        status = "unhealthy"
        reasons.append("Home Assistant rejected the token: set a valid HA_TOKEN")
    elif stats.connection_state != "subscribed":
        status = "unhealthy"
        detail = f" ({stats.last_error})" if stats.last_error else ""
        reasons.append(f"not subscribed to Home Assistant: {stats.connection_state}{detail}")
    if not stats.broker_up:
        status = "degraded" if status == "healthy" else status
        reasons.append(
            f"broker unreachable: {stats.spool_depth} events kept in the local spool until it "
            "is back"
        )
    elif stats.spool_depth:
        status = "degraded" if status == "healthy" else status
        reasons.append(f"draining the spool: {stats.spool_depth} events left")
    figures = stats.as_dict()
    return {
        "status": status,
        "reasons": reasons,
        "uptime_s": round(now - stats.started_at, 3),
        "connection": {
            "state": stats.connection_state,
            "ha_version": stats.ha_version,
            "attempts": stats.connect_attempts,
            "successful": stats.connects_ok,
            "failed": stats.connects_failed,
            "reconnects": stats.reconnects,
            "last_error": stats.last_error,
        },
        "subscription": {
            "is_subscribed": stats.connection_state == "subscribed",
            "active_subscriptions": len(stats.subscriptions),
            "total_events_received": stats.events_received,
            "events_by_type": figures["events_by_type"],
            "last_event_time": stats.last_event_at,
        },
        "listener": {
            "events_enqueued": stats.events_enqueued,
            "events_spooled": stats.events_spooled,
            "spool_depth": stats.spool_depth,
            "memory_queue_depth": stats.memory_queue_depth,
            "malformed_frames": stats.malformed_frames,
        },
    }
