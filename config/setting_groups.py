"""The concerns the settings are grouped by, and how a field says which one it belongs to.

The settings stay ONE flat model, so every variable name users already set keeps working; each
field carries its group (and whether a user sets it first) in its metadata, and the class lists
the fields group by group. The configuration reference is generated from this, group by group.
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic.fields import FieldInfo


class SettingGroup(enum.Enum):
    """One concern, in the order the reference lists them: (key, title, what it covers)."""

    HOME_ASSISTANT = (
        "home_assistant",
        "Home Assistant",
        "Where HA is, how the listener logs in, and how it keeps the WebSocket connection.",
    )
    BROKER = (
        "broker",
        "Broker and state Redis",
        "Where events wait for the workers (the Celery broker), where state, counters and dead "
        "letters live (Redis), and how full the broker may get.",
    )
    DESTINATIONS = (
        "destinations",
        "Destinations: InfluxDB",
        "Where the workers write the points: InfluxDB 1.x through `/write`, or the v2 write API.",
    )
    RULES = (
        "rules",
        "Recording rules",
        "What is recorded, and how: filters, tags and measurements, named as in HA's own "
        "InfluxDB integration (the YAML file is described below).",
    )
    HANDOFF = (
        "handoff",
        "Listener hand-off: publisher, spool, backfill",
        "How the listener hands events to the broker, keeps them on disk while it cannot, and "
        "fills the gap after a reconnect from HA's history.",
    )
    WORKERS = (
        "workers",
        "Workers",
        "How the workers batch, retry, dead-letter and enrich what they write.",
    )
    HEALTH = (
        "health",
        "Health and monitoring",
        "The listener's health server, beat's health thresholds, and Flower.",
    )
    IMPORT = (
        "import",
        "Import",
        "`ha-ingestor import`, which brings in what HA recorded before ha-ingestor ran.",
    )
    TRACING = (
        "tracing",
        "Logs and frame tracing",
        "What the processes log, and the WebSocket frame trace for debugging the link to HA.",
    )

    def __init__(self, key: str, title: str, purpose: str) -> None:
        self.key = key
        self.title = title
        self.purpose = purpose


def in_group(group: SettingGroup, *, first: bool = False) -> dict[str, Any]:
    """A field's metadata (`json_schema_extra`): its group, and whether users set it first."""
    return {"group": group.key, "first": first}


def group_of(name: str, field: FieldInfo) -> SettingGroup:
    """The group a settings field declared; a field without one is a mistake to fix."""
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    key = extra.get("group")
    for group in SettingGroup:
        if group.key == key:
            return group
    raise ValueError(
        f"Settings.{name} has no group: give its Field json_schema_extra=in_group(SettingGroup.…) "
        f"(one of {', '.join(g.name for g in SettingGroup)})"
    )


def set_first(field: FieldInfo) -> bool:
    """Whether a user sets this one first (the reference and the README list those on top)."""
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    return extra.get("first") is True
