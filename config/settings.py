"""All settings, from environment variables (12-factor), validated once at process start.

One frozen object is loaded at each entry point (listener CLI, Celery app) and passed down.
Every bad value produces one line naming the variable and what would be valid, and every rule
between two settings is checked at start the same way.

The model is flat, so every variable name users set keeps working; the fields are listed group
by group (config/setting_groups.py), each carrying its group in its metadata, and the
configuration reference is generated from them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from config.broker_kind import BrokerKind, broker_kind, check_redis_url
from config.redaction import redact_url
from config.setting_groups import SettingGroup, in_group
from core.home_name import home_name_problem

LISTENER_REPORT_INTERVAL_S: Final = 2.0
"""How often the listener writes its state (its heartbeat) to Redis; fixed, not a setting."""
LISTENER_STALE_REPORTS: Final = 3
"""Reports in a row a listener may miss before it counts as down (a slow Redis call delays one
report; a threshold below the interval itself would never clear)."""
LISTENER_STALE_MIN_S: Final = LISTENER_STALE_REPORTS * LISTENER_REPORT_INTERVAL_S


class SettingsError(ValueError):
    """The environment does not describe a runnable configuration; the text says what to fix."""


def ha_websocket_url(url: str) -> str:
    """Turn HA's base URL (http://host:8123) into its WebSocket API URL."""
    parts = urlsplit(url.strip())
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}[parts.scheme]
    path = parts.path.rstrip("/")
    if not path.endswith("/api/websocket"):
        path = f"{path}/api/websocket"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


class Settings(BaseSettings):
    """Every knob of ha-ingestor. Environment variable names are the field names, upper-cased."""

    model_config = SettingsConfigDict(
        frozen=True, extra="ignore", case_sensitive=False, populate_by_name=True
    )

    # --- Home Assistant -------------------------------------------------------------------
    ha_url: str | None = Field(
        default=None,
        description="Home Assistant base URL (http(s)://host:8123) or its WebSocket URL "
        "(ws(s)://host:8123/api/websocket). Unset: `make run` starts the built-in simulator.",
        json_schema_extra=in_group(SettingGroup.HOME_ASSISTANT, first=True),
    )
    ha_instance: str | None = Field(
        default=None,
        description="This home's name, which keeps several homes apart on one broker, one "
        "Redis and one pool of workers (their registries in Redis; the `instance` tag with "
        "INSTANCE_TAG): lower-case letters, digits, - and _, e.g. holiday_home. Unset: made "
        'from HA\'s location name ("Simulated Home" → simulated_home) at the first '
        "connection and remembered in DATA_DIR, so a later change in HA keeps the name. One "
        "listener per home, each with its own HA_URL, token, HA_INSTANCE and DATA_DIR.",
        json_schema_extra=in_group(SettingGroup.HOME_ASSISTANT),
    )
    ha_token: SecretStr | None = Field(
        default=None,
        description="Long-lived access token (HA profile → Security).",
        json_schema_extra=in_group(SettingGroup.HOME_ASSISTANT, first=True),
    )
    ha_token_file: Path | None = Field(
        default=None,
        description="File holding the token (Docker/Kubernetes secrets).",
        json_schema_extra=in_group(SettingGroup.HOME_ASSISTANT, first=True),
    )
    ha_event_types: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("state_changed",),
        description="Comma-separated HA event types to subscribe to.",
        json_schema_extra=in_group(SettingGroup.HOME_ASSISTANT),
    )
    ha_heartbeat_interval: float = Field(
        default=20.0,
        gt=0,
        description="Seconds between WebSocket pings to HA.",
        json_schema_extra=in_group(SettingGroup.HOME_ASSISTANT),
    )
    ha_heartbeat_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds without a pong before the connection is dead.",
        json_schema_extra=in_group(SettingGroup.HOME_ASSISTANT),
    )
    ha_reconnect_initial_delay: float = Field(
        default=1.0,
        gt=0,
        description="First reconnect delay, in seconds (doubles each time); at most "
        "HA_RECONNECT_MAX_DELAY.",
        json_schema_extra=in_group(SettingGroup.HOME_ASSISTANT),
    )
    ha_reconnect_max_delay: float = Field(
        default=60.0,
        gt=0,
        description="Cap of the reconnect backoff, in seconds.",
        json_schema_extra=in_group(SettingGroup.HOME_ASSISTANT),
    )
    ha_recorder_commit_interval: float = Field(
        default=5.0,
        ge=0,
        description="HA recorder's commit_interval: the gap is read again after it, since the "
        "newest changes reach HA's history only then.",
        json_schema_extra=in_group(SettingGroup.HOME_ASSISTANT),
    )
    ha_max_frame_mb: int = Field(
        default=64,
        ge=1,
        description="Largest WebSocket frame taken from HA, in MB (a larger one restarts the "
        "connection).",
        json_schema_extra=in_group(SettingGroup.HOME_ASSISTANT),
    )

    # --- broker and state store ------------------------------------------------------------
    celery_broker_url: SecretStr = Field(
        default=SecretStr("redis://127.0.0.1:6379/0"),
        description="Celery broker: redis://… (Redis 7.0 or newer) or amqp://… (RabbitMQ).",
        json_schema_extra=in_group(SettingGroup.BROKER, first=True),
    )
    redis_url: SecretStr | None = Field(
        default=None,
        description="Redis for state, counters and dead letters. Defaults to the broker when "
        "the broker is Redis.",
        json_schema_extra=in_group(SettingGroup.BROKER, first=True),
    )
    redis_prefix: str = Field(
        default="ha_ingestor:",
        description="Prefix of every Redis key.",
        json_schema_extra=in_group(SettingGroup.BROKER),
    )
    redis_socket_timeout: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="Seconds a worker's or beat's call to the state Redis may take before it "
        "fails (a half-open connection would otherwise block for ~15 min); the batch hold "
        "limit allows for it.",
        json_schema_extra=in_group(SettingGroup.BROKER),
    )
    broker_memory_warn_percent: int = Field(
        default=80,
        ge=1,
        le=100,
        description="Broker Redis memory (used_memory of maxmemory) from which health is "
        "degraded with reason `broker_memory`; below BROKER_MEMORY_SPOOL_PERCENT.",
        json_schema_extra=in_group(SettingGroup.BROKER),
    )
    broker_memory_spool_percent: int = Field(
        default=90,
        ge=1,
        le=100,
        description="Broker Redis memory from which the listener treats the broker as full and "
        "keeps new events in its disk spool until memory falls below it again.",
        json_schema_extra=in_group(SettingGroup.BROKER),
    )
    celery_queue: str = Field(
        default="ha_events",
        description="Queue of the ingest tasks.",
        json_schema_extra=in_group(SettingGroup.BROKER),
    )

    # --- destinations: InfluxDB ------------------------------------------------------------
    influxdb_url: str = Field(
        default="http://127.0.0.1:8086",
        description="InfluxDB base URL.",
        json_schema_extra=in_group(SettingGroup.DESTINATIONS, first=True),
    )
    influxdb_kind: Literal["influxdb", "influxdb3", "victoriametrics"] = Field(
        default="influxdb",
        description="What INFLUXDB_URL is: `influxdb` (1.x; 2.x or 1.8+ with "
        "INFLUXDB_API_VERSION=2); `influxdb3` (InfluxDB 3 Core/Enterprise: /api/v3/write_lp "
        "to INFLUXDB_DATABASE with INFLUXDB_TOKEN); `victoriametrics` (text states kept as "
        "labels, docs/deployment.md; INFLUXDB_USERNAME/PASSWORD or INFLUXDB_TOKEN if it wants "
        "auth).",
        json_schema_extra=in_group(SettingGroup.DESTINATIONS, first=True),
    )
    influxdb_api_version: int = Field(
        default=1,
        description="1: InfluxDB 1.x /write; 2: the v2 write API (2.x, 3.x, 1.8+).",
        json_schema_extra=in_group(SettingGroup.DESTINATIONS, first=True),
    )
    influxdb_database: str = Field(
        default="home_assistant",
        description="v1 database; the database with INFLUXDB_KIND=influxdb3.",
        json_schema_extra=in_group(SettingGroup.DESTINATIONS, first=True),
    )
    influxdb_username: str | None = Field(
        default=None,
        description="v1 user.",
        json_schema_extra=in_group(SettingGroup.DESTINATIONS, first=True),
    )
    influxdb_password: SecretStr | None = Field(
        default=None,
        description="v1 password.",
        json_schema_extra=in_group(SettingGroup.DESTINATIONS, first=True),
    )
    influxdb_retention_policy: str | None = Field(
        default=None,
        description="v1 retention policy.",
        json_schema_extra=in_group(SettingGroup.DESTINATIONS, first=True),
    )
    influxdb_token: SecretStr | None = Field(
        default=None,
        description="v2 API token; the Bearer token with INFLUXDB_KIND=influxdb3.",
        json_schema_extra=in_group(SettingGroup.DESTINATIONS, first=True),
    )
    influxdb_org: str | None = Field(
        default=None,
        description="v2 organisation.",
        json_schema_extra=in_group(SettingGroup.DESTINATIONS, first=True),
    )
    influxdb_bucket: str = Field(
        default="home_assistant",
        description="v2 bucket.",
        json_schema_extra=in_group(SettingGroup.DESTINATIONS, first=True),
    )
    influxdb_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds per write request.",
        json_schema_extra=in_group(SettingGroup.DESTINATIONS),
    )
    victoria_text_values_max: int = Field(
        default=50,
        ge=1,
        description="With INFLUXDB_KIND=victoriametrics: distinct texts kept per entity and "
        "field per VICTORIA_TEXT_WINDOW (each is a series); the rest are counted as "
        "`text_left_out`.",
        json_schema_extra=in_group(SettingGroup.DESTINATIONS),
    )
    victoria_text_window: float = Field(
        default=86_400.0,
        gt=0,
        description="Seconds of event time over which VICTORIA_TEXT_VALUES_MAX applies.",
        json_schema_extra=in_group(SettingGroup.DESTINATIONS),
    )

    # --- recording rules -------------------------------------------------------------------
    ha_ingestor_config: Path | None = Field(
        default=None,
        description="YAML with filters, tags and overrides named as in HA's InfluxDB integration.",
        json_schema_extra=in_group(SettingGroup.RULES, first=True),
    )
    state_heartbeat_interval: float | None = Field(
        default=None,
        ge=1.0,
        description="Seconds without a new point after which the listener sends the last state "
        "of a chosen entity again (STATE_HEARTBEAT_DOMAINS, STATE_HEARTBEAT_ENTITY_GLOBS): the "
        "same point at the heartbeat's time, with the tag `heartbeat=true`, so a quiet sensor "
        'stays in "last value" panels. Never for `unavailable` or `unknown`. Unset: no '
        "heartbeat, as in HA's integration.",
        json_schema_extra=in_group(SettingGroup.RULES),
    )
    state_heartbeat_domains: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Comma-separated domains whose entities get the state heartbeat "
        "(e.g. climate,input_number).",
        json_schema_extra=in_group(SettingGroup.RULES),
    )
    state_heartbeat_entity_globs: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Comma-separated entity id globs that get the state heartbeat "
        "(e.g. sensor.*_temperature,sensor.boiler_setpoint; `*` for every entity).",
        json_schema_extra=in_group(SettingGroup.RULES),
    )
    track_renames: bool = Field(
        default=False,
        description="Follow entities across renames: every point gets the tag "
        "`entity_registry_id` (the entity registry entry's `id`, which a rename keeps; "
        "entities HA has no registry entry for get none), and each rename the listener sees, "
        "live or at a reconnect, becomes a point of the measurement `ha_entity_renames` "
        "(docs/renames.md; `ha-ingestor renames` lists them). Off: HA's schema exactly.",
        json_schema_extra=in_group(SettingGroup.RULES),
    )

    instance_tag: bool = Field(
        default=False,
        description="Tag every point (live, snapshot, backfilled, heartbeat, imported, "
        "statistics, renames) with `instance`, the name of the home it came from (the "
        "listener's HA_INSTANCE, carried in each message): for several homes in one "
        "database. Set on the workers; it wins over a tag attribute or static tag of that "
        "name. Off: HA's schema exactly (a message from an older listener has no home and "
        "gets no tag).",
        json_schema_extra=in_group(SettingGroup.RULES),
    )

    # --- listener hand-off: publisher, spool, backfill --------------------------------------
    listener_broker_timeout: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="Seconds a publish to a Redis broker may wait before its batch goes to the "
        "spool instead.",
        json_schema_extra=in_group(SettingGroup.HANDOFF),
    )
    publish_queue_size: int = Field(
        default=20_000,
        ge=100,
        description="Events held in memory between reading and publishing.",
        json_schema_extra=in_group(SettingGroup.HANDOFF),
    )
    data_dir: Path = Field(
        default=Path(".data"),
        description="Local state of one home's listener: spool, handoff watermark, backfill "
        "and import cursors, the auth gate and the remembered home name (HA_INSTANCE); one "
        "listener per DATA_DIR (a second one is refused), so each home needs its own. Also "
        "beat's schedule.",
        json_schema_extra=in_group(SettingGroup.HANDOFF),
    )
    spool_max_mb: int = Field(
        default=1024,
        ge=1,
        description="Size limit of the local spool (DATA_DIR/spool), in MB.",
        json_schema_extra=in_group(SettingGroup.HANDOFF),
    )
    backfill_window: float = Field(
        default=900.0,
        gt=0,
        description="Seconds of HA history asked for in one backfill request (its window).",
        json_schema_extra=in_group(SettingGroup.HANDOFF),
    )
    backfill_entities_per_request: int = Field(
        default=200,
        ge=1,
        description="Entities asked for in one backfill request: a large home's window is "
        "split into requests of this many.",
        json_schema_extra=in_group(SettingGroup.HANDOFF),
    )
    backfill_reply_timeout: float = Field(
        default=60.0,
        gt=0,
        description="Seconds HA may take to answer one backfill request.",
        json_schema_extra=in_group(SettingGroup.HANDOFF),
    )
    backfill_retries: int = Field(
        default=5,
        ge=0,
        description="Retries of a backfill request that failed or timed out, with backoff, "
        "before the backfill waits for the next connection (its cursor kept).",
        json_schema_extra=in_group(SettingGroup.HANDOFF),
    )

    # --- workers -----------------------------------------------------------------------------
    batch_size: int = Field(
        default=1000,
        ge=1,
        le=50_000,
        description="Events per InfluxDB write under load.",
        json_schema_extra=in_group(SettingGroup.WORKERS),
    )
    batch_interval: float = Field(
        default=0.5,
        gt=0,
        le=10,
        description="Seconds a partial batch waits before it is written (idle latency).",
        json_schema_extra=in_group(SettingGroup.WORKERS),
    )
    write_retry_max_delay: float = Field(
        default=30.0,
        gt=0,
        description="Cap of the write retry backoff, in seconds.",
        json_schema_extra=in_group(SettingGroup.WORKERS),
    )
    max_event_age: float = Field(
        default=86_400.0,
        gt=0,
        description="Seconds an event may wait for an unavailable InfluxDB before it is "
        "dead-lettered (reason too_old_during_outage); those are replayed automatically once "
        "writes succeed again.",
        json_schema_extra=in_group(SettingGroup.WORKERS),
    )
    dead_letters_max: int | None = Field(
        default=None,
        ge=100,
        description="Dead letters kept at most; beyond it the oldest are DELETED (counted, health "
        "reason `dropping`). Unset (the default): every letter is kept. Events waiting out an "
        "InfluxDB outage are never capped.",
        json_schema_extra=in_group(SettingGroup.WORKERS),
    )
    type_shadow_fields: bool = Field(
        default=True,
        description="Where InfluxDB already holds a field with another type (written first by "
        "another writer: an integer `value`, a numeric `state`), write the value to a shadow "
        "field instead of dead-lettering the point: `<field>_str` for text (HA's name), "
        "`<field>_float` for a number; counted as `type_shadowed`. A point is still "
        "dead-lettered when its shadow clashes too. false: such points are dead-lettered "
        "(reason rejected_by_influxdb), as before. HA's integration drops them (and their "
        "batch).",
        json_schema_extra=in_group(SettingGroup.WORKERS),
    )
    enrichment_enabled: bool = Field(
        default=True,
        description="Add area and device tags from HA's registries (kept in Redis by the "
        "listener).",
        json_schema_extra=in_group(SettingGroup.WORKERS),
    )
    enrichment_cache_ttl: float = Field(
        default=60.0,
        gt=0,
        description="Seconds a worker keeps the registries before re-reading.",
        json_schema_extra=in_group(SettingGroup.WORKERS),
    )
    enrichment_floor: bool = Field(
        default=False,
        description="Add a `floor` tag: the name of the floor (HA 2024.4+) the entity's area is "
        "on, the area the `area` tag names (the entity's own, else its device's). Off by "
        "default: HA's schema has no such tag. An HA before 2024.4 gives no `floor` tag.",
        json_schema_extra=in_group(SettingGroup.WORKERS),
    )
    enrichment_labels: Literal["off", "entity", "inherited"] = Field(
        default="off",
        description="Add a `labels` tag (HA 2024.4+): the label names, sorted, joined and "
        "wrapped in commas (`,Energy,Heating,`), so `labels =~ /,Heating,/` selects one label "
        "exactly (a comma inside a name becomes a space). `entity`: the entity's own labels, "
        "as HA's entity table shows them; `inherited`: also its device's and its area's, the "
        "entities an action targeting the label reaches. `off` (the default): HA's schema.",
        json_schema_extra=in_group(SettingGroup.WORKERS),
    )
    worker_bulk_take: bool = Field(
        default=True,
        description="Workers take up to BATCH_SIZE messages per round trip and acknowledge "
        "each batch at once (workers/consumers/bulk_consumer.py; Redis or RabbitMQ). false: "
        "Celery's stock consumer and transport, one message at a time, over 10x the CPU per "
        "event; on Redis a killed worker's messages then come back only after "
        "WORKER_HOLD_TIMEOUT (1 h by default), and one being taken at the kill can be "
        "lost (kombu records it as unacknowledged only after Redis handed it over).",
        json_schema_extra=in_group(SettingGroup.WORKERS),
    )
    worker_liveness_timeout: float = Field(
        default=20.0,
        ge=2,
        le=3600,
        description="With the bulk take on Redis: seconds after which the messages a silent "
        "worker took go back to the queue (its liveness key, renewed every quarter of this by "
        "a thread of its own, so a busy worker is never taken for dead). Not "
        "WORKER_HOLD_TIMEOUT: that bounds how long a live worker holds a batch.",
        json_schema_extra=in_group(SettingGroup.WORKERS),
    )
    worker_hold_timeout: float = Field(
        default=3600.0,
        gt=0,
        validation_alias=AliasChoices("worker_hold_timeout", "celery_visibility_timeout"),
        description="The longest a live worker keeps messages unacknowledged: a batch retried "
        "against an unavailable InfluxDB goes back to the broker within half of it. On Redis it "
        "is also kombu's visibility timeout, which only Celery's stock transport uses "
        "(WORKER_BULK_TAKE=false): that transport cannot tell a busy worker from a dead one, so "
        "a killed worker's messages then come back only after this; with the bulk take "
        "WORKER_LIVENESS_TIMEOUT decides when a silent worker counts as dead.",
        json_schema_extra=in_group(SettingGroup.WORKERS),
    )

    # --- health and monitoring: the health server, beat's thresholds, Flower ----------------
    health_host: str = Field(
        default="127.0.0.1",
        description="Address of the health server.",
        json_schema_extra=in_group(SettingGroup.HEALTH),
    )
    health_port: int = Field(
        default=8001,
        ge=0,
        le=65535,
        description="Port of /health, /metrics and the status page.",
        json_schema_extra=in_group(SettingGroup.HEALTH, first=True),
    )
    beat_interval: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="Seconds between beat's rate and health runs.",
        json_schema_extra=in_group(SettingGroup.HEALTH),
    )
    health_event_gap: float = Field(
        default=600.0,
        gt=0,
        description="Seconds without events while subscribed before the status is degraded "
        "(only when HA usually sends at least a few events in that time).",
        json_schema_extra=in_group(SettingGroup.HEALTH),
    )
    health_listener_stale: float = Field(
        default=15.0,
        ge=LISTENER_STALE_MIN_S,
        description="Seconds without a listener heartbeat in Redis before it counts as down; at "
        f"least {LISTENER_STALE_REPORTS} times the listener's "
        f"{LISTENER_REPORT_INTERVAL_S:g} s report interval.",
        json_schema_extra=in_group(SettingGroup.HEALTH),
    )
    health_reconnects_per_hour: int = Field(
        default=5,
        ge=1,
        description="Reconnects to HA within an hour that make it degraded.",
        json_schema_extra=in_group(SettingGroup.HEALTH),
    )
    health_queue_backlog: int = Field(
        default=10_000,
        ge=1,
        description="Waiting messages that make the status degraded.",
        json_schema_extra=in_group(SettingGroup.HEALTH),
    )
    health_queue_max_age: float = Field(
        default=300.0,
        gt=0,
        description="Seconds the oldest waiting event may wait (degraded beyond); with nothing "
        "written for that long while events wait, unhealthy.",
        json_schema_extra=in_group(SettingGroup.HEALTH),
    )
    health_window: float = Field(
        default=300.0,
        ge=60,
        description="Seconds over which write errors and dead letters are counted (whole "
        "minutes, the current one included).",
        json_schema_extra=in_group(SettingGroup.HEALTH),
    )
    flower_address: str = Field(
        default="127.0.0.1",
        description="Address Flower binds (`ha-ingestor flower`).",
        json_schema_extra=in_group(SettingGroup.HEALTH),
    )
    flower_port: int = Field(
        default=5555,
        ge=0,
        le=65535,
        description="Flower's port.",
        json_schema_extra=in_group(SettingGroup.HEALTH),
    )
    flower_basic_auth: SecretStr | None = Field(
        default=None,
        description="user:password[,user2:password2] for Flower; required when FLOWER_ADDRESS "
        "is not a loopback address.",
        json_schema_extra=in_group(SettingGroup.HEALTH),
    )

    # --- import --------------------------------------------------------------------------------
    import_max_queue: int = Field(
        default=50_000,
        ge=100,
        description="`ha-ingestor import` publishes only while fewer than this many messages "
        "wait in the ingest queue (read from the broker), so an import of a year never fills "
        "Redis: about 1 kB of broker memory each.",
        json_schema_extra=in_group(SettingGroup.IMPORT),
    )

    # --- logs and frame tracing ----------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Log level.", json_schema_extra=in_group(SettingGroup.TRACING)
    )
    ha_trace_frames: Path | None = Field(
        default=None,
        description="Debugging: write every WebSocket frame to and from HA to this file as JSON "
        "lines, secrets masked (`ha-ingestor trace summary PATH` reads it). Unset: off.",
        json_schema_extra=in_group(SettingGroup.TRACING),
    )
    ha_trace_max_mb: float = Field(
        default=50.0,
        gt=0,
        description="Size of one frame trace file before it is rotated, in MB.",
        json_schema_extra=in_group(SettingGroup.TRACING),
    )
    ha_trace_backups: int = Field(
        default=3,
        ge=0,
        le=100,
        description="Rotated frame trace files kept (PATH.1 … PATH.N).",
        json_schema_extra=in_group(SettingGroup.TRACING),
    )

    @field_validator("ha_event_types", mode="before")
    @classmethod
    def _split_event_types(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = tuple(part.strip() for part in value.split(",") if part.strip())
        if not value:
            raise ValueError("give at least one event type, e.g. state_changed")
        return value

    @field_validator("state_heartbeat_domains", "state_heartbeat_entity_globs", mode="before")
    @classmethod
    def _split_heartbeat_choices(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("ha_url")
    @classmethod
    def _check_ha_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
            raise ValueError(
                "must look like http://homeassistant.local:8123 or ws://host:8123/api/websocket"
            )
        return ha_websocket_url(value)

    @field_validator("ha_instance")
    @classmethod
    def _check_ha_instance(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        problem = home_name_problem(value.strip())
        if problem is not None:
            raise ValueError(problem)
        return value.strip()

    @field_validator("celery_broker_url")
    @classmethod
    def _check_broker(cls, value: SecretStr) -> SecretStr:
        broker_kind(value.get_secret_value())
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_redis_url(value.get_secret_value())
        return value

    @field_validator("health_listener_stale", mode="before")
    @classmethod
    def _check_listener_stale(cls, value: Any) -> Any:
        """Before the field's own `ge`, so the line says where the minimum comes from."""
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            return value  # not a number: the type check says so
        if seconds < LISTENER_STALE_MIN_S:
            raise ValueError(
                f"must be at least {LISTENER_STALE_MIN_S:g} s ({LISTENER_STALE_REPORTS} times the "
                f"listener's {LISTENER_REPORT_INTERVAL_S:g} s report interval)"
            )
        return value

    @field_validator("influxdb_api_version")
    @classmethod
    def _check_api_version(cls, value: int) -> int:
        if value not in (1, 2):
            raise ValueError("must be 1 (InfluxDB 1.x /write) or 2 (the v2 write API)")
        return value

    @field_validator("influxdb_url")
    @classmethod
    def _check_influx_url(cls, value: str) -> str:
        return store_url(value)

    @model_validator(mode="after")
    def _cross_field_rules(self) -> Settings:
        problems: list[str] = []
        if self.ha_token is not None and self.ha_token_file is not None:
            problems.append("HA_TOKEN and HA_TOKEN_FILE: set only one of them")
        if self.ha_token_file is not None and not self.ha_token_file.is_file():
            problems.append(f"HA_TOKEN_FILE: {self.ha_token_file} is not a readable file")
        if self.redis_url is None and self.broker_kind is not BrokerKind.REDIS:
            problems.append(
                "REDIS_URL: required when the broker is not Redis (state and dead letters "
                "live in Redis), e.g. REDIS_URL=redis://127.0.0.1:6379/0"
            )
        if self.influxdb_api_version == 2 and self.influxdb_token is None:
            problems.append("INFLUXDB_TOKEN: required with INFLUXDB_API_VERSION=2")
        if self.influxdb_kind == "influxdb3" and self.influxdb_token is None:
            problems.append(
                "INFLUXDB_TOKEN: required with INFLUXDB_KIND=influxdb3 (influxdb3 create token)"
            )
        if self.influxdb_api_version == 2 and not self.influxdb_org:
            problems.append("INFLUXDB_ORG: required with INFLUXDB_API_VERSION=2")
        if self.ha_heartbeat_timeout >= self.worker_hold_timeout:
            problems.append("HA_HEARTBEAT_TIMEOUT: must be far below WORKER_HOLD_TIMEOUT")
        if self.ha_ingestor_config is not None and not self.ha_ingestor_config.is_file():
            problems.append(f"HA_INGESTOR_CONFIG: {self.ha_ingestor_config} is not a file")
        if not self.enrichment_enabled and (
            self.enrichment_floor or self.enrichment_labels != "off"
        ):
            problems.append(
                "ENRICHMENT_FLOOR and ENRICHMENT_LABELS need ENRICHMENT_ENABLED=true (they come "
                "from the same registries); turn them off or enrichment on"
            )
        problems += self._threshold_problems()
        problems += self._state_heartbeat_problems()
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _threshold_problems(self) -> list[str]:
        """Pairs where one setting must stay below the other: a warning before its action, a
        backoff's start below its cap. One line each, naming both and what would be valid.

        (HEALTH_QUEUE_MAX_AGE and MAX_EVENT_AGE are no such pair: the first is about workers
        falling behind, the second only applies while InfluxDB is unavailable.)"""
        problems = []
        warn, spool = self.broker_memory_warn_percent, self.broker_memory_spool_percent
        if warn >= spool:
            problems.append(
                f"BROKER_MEMORY_WARN_PERCENT ({warn}) must be below BROKER_MEMORY_SPOOL_PERCENT "
                f"({spool}): health warns before the listener spools "
                + _defaults("broker_memory_warn_percent", "broker_memory_spool_percent")
            )
        first, cap = self.ha_reconnect_initial_delay, self.ha_reconnect_max_delay
        if first > cap:
            problems.append(
                f"HA_RECONNECT_INITIAL_DELAY ({first:g} s) must not exceed HA_RECONNECT_MAX_DELAY "
                f"({cap:g} s), the cap of the backoff it starts "
                + _defaults("ha_reconnect_initial_delay", "ha_reconnect_max_delay")
            )
        return problems

    def _state_heartbeat_problems(self) -> list[str]:
        """An interval needs entities to choose, and a choice needs an interval."""
        chosen = bool(self.state_heartbeat_domains or self.state_heartbeat_entity_globs)
        if self.state_heartbeat_interval is not None and not chosen:
            return [
                "STATE_HEARTBEAT_INTERVAL: set STATE_HEARTBEAT_DOMAINS or "
                "STATE_HEARTBEAT_ENTITY_GLOBS too (e.g. STATE_HEARTBEAT_DOMAINS=climate), or "
                "unset it"
            ]
        if self.state_heartbeat_interval is None and chosen:
            return [
                "STATE_HEARTBEAT_DOMAINS / STATE_HEARTBEAT_ENTITY_GLOBS: set "
                "STATE_HEARTBEAT_INTERVAL too (seconds, e.g. 900), or unset them"
            ]
        return []

    # --- derived values ------------------------------------------------------------------

    def ha_token_value(self) -> str | None:
        """The HA token, read from HA_TOKEN_FILE when that is how it was given."""
        if self.ha_token is not None:
            return self.ha_token.get_secret_value()
        if self.ha_token_file is not None:
            return self.ha_token_file.read_text(encoding="utf-8").strip()
        return None

    @functools.cached_property
    def broker_kind(self) -> BrokerKind:
        """The broker CELERY_BROKER_URL names (validated when the settings were built)."""
        return broker_kind(self.celery_broker_url.get_secret_value())

    def state_redis_url(self) -> str:
        """Redis for state: REDIS_URL, else the broker (validated to be Redis then)."""
        if self.redis_url is not None:
            return self.redis_url.get_secret_value()
        return self.celery_broker_url.get_secret_value()

    def secrets(self) -> list[str]:
        """Every secret value, so tests and log filters can make sure none leaks."""
        values = [self.ha_token_value(), _password(self.celery_broker_url.get_secret_value())]
        for secret in (self.influxdb_token, self.influxdb_password, self.redis_url):
            if secret is not None:
                raw = secret.get_secret_value()
                values.append(_password(raw) if "://" in raw else raw)
        if self.flower_basic_auth is not None:
            for pair in self.flower_basic_auth.get_secret_value().split(","):
                values.append(pair.partition(":")[2])
        values += self.destination_secrets
        return [v for v in values if v]

    @functools.cached_property
    def destination_secrets(self) -> list[str]:
        """The secrets of the destinations listed in HA_INGESTOR_CONFIG (read once)."""
        from config.destinations import load_destinations
        from core.rules import RulesError

        try:
            return load_destinations(self).secrets()
        except (RulesError, ValueError):
            return []  # the file is refused wherever it is used, with the reason

    def describe(self) -> dict[str, str]:
        """The settings with secrets redacted, for logs and `check`."""
        out: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                raw = value.get_secret_value()
                value = redact_url(raw) if "://" in raw else "********"
            out[name.upper()] = "" if value is None else str(value)
        return out


def store_url(value: str) -> str:
    """A time-series store's base URL, without its trailing slash; ValueError unless http(s)
    with a host (INFLUXDB_URL, and each destination's `url`)."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must look like http://127.0.0.1:8086")
    return value.rstrip("/")


def _password(url: str) -> str | None:
    return urlsplit(url).password


def _defaults(*names: str) -> str:
    """`(the defaults are 80 and 90)`: a valid pair, read from the model."""
    values = [f"{Settings.model_fields[name].default:g}" for name in names]
    return f"(the defaults are {' and '.join(values)})"


def environment_names(name: str, field: FieldInfo) -> tuple[str, ...]:
    """The variables a field is read from, upper-cased: its aliases when it has them (the
    current name first), else its name."""
    alias = field.validation_alias if field.validation_alias is not None else field.alias
    if isinstance(alias, AliasChoices):
        names = tuple(choice for choice in alias.choices if isinstance(choice, str))
    elif isinstance(alias, str):
        names = (alias,)
    else:
        names = (name,)
    return tuple(n.upper() for n in names)


def setting_variables(model: type[Settings] | None = None) -> frozenset[str]:
    """Every environment variable the settings read, and the `_FILE` variant of each (how
    secrets are given to containers), so a test can clear them all."""
    fields = (model or Settings).model_fields
    names = [n for name, field in fields.items() for n in environment_names(name, field)]
    return frozenset(_with_file_variants(names))


def _with_file_variants(names: list[str]) -> Iterator[str]:
    for name in names:
        yield name
        yield name if name.endswith("_FILE") else f"{name}_FILE"


_env_file: Path | None = None
"""A dotenv file read below the environment, when the entry point chose one (read_env_file)."""


def read_env_file(path: Path | None) -> None:
    """From now on, build settings from the environment and, below it, this dotenv file.

    Only a command's entry point calls this, before any settings are loaded: it is how a
    command run beside `make run` reaches that stack (config/dev_stack_file.py). A variable
    set in the environment always wins over the file.
    """
    global _env_file
    _env_file = path
    get_settings.cache_clear()


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment, or raise SettingsError listing every problem."""
    try:
        # pydantic-settings' own argument, which the dataclass transform mypy sees omits.
        return Settings(_env_file=_env_file, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "settings"
            message = str(error["msg"]).removeprefix("Value error, ")
            if error["loc"]:
                lines.append(f"  {field.upper()}: {message}")
            else:
                lines += [f"  {line}" for line in message.splitlines()]
        raise SettingsError(
            "ha-ingestor cannot start, fix these settings (environment variables):\n"
            + "\n".join(lines)
        ) from None


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, loaded once at the first call (the process's entry point)."""
    return load_settings()
