"""All settings, from environment variables (12-factor), validated once at process start.

One frozen object is loaded at each entry point (listener CLI, Celery app) and passed down.
Every bad value produces one line naming the variable and what would be valid.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from config.broker_kind import BrokerKind, broker_kind, check_redis_url
from config.redaction import redact_url


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

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)

    # --- Home Assistant -------------------------------------------------------------------
    ha_url: str | None = Field(
        default=None,
        description="Home Assistant base URL (http(s)://host:8123) or its WebSocket URL "
        "(ws(s)://host:8123/api/websocket). Unset: `make run` starts the built-in simulator.",
    )
    ha_token: SecretStr | None = Field(
        default=None, description="Long-lived access token (HA profile → Security)."
    )
    ha_token_file: Path | None = Field(
        default=None, description="File holding the token (Docker/Kubernetes secrets)."
    )
    ha_event_types: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("state_changed",),
        description="Comma-separated HA event types to subscribe to.",
    )
    ha_heartbeat_interval: float = Field(
        default=20.0, gt=0, description="Seconds between WebSocket pings to HA."
    )
    ha_heartbeat_timeout: float = Field(
        default=10.0, gt=0, description="Seconds without a pong before the connection is dead."
    )
    ha_reconnect_initial_delay: float = Field(
        default=1.0, gt=0, description="First reconnect delay, in seconds (doubles each time)."
    )
    ha_reconnect_max_delay: float = Field(
        default=60.0, gt=0, description="Cap of the reconnect backoff, in seconds."
    )
    ha_recorder_commit_interval: float = Field(
        default=5.0,
        ge=0,
        description="HA recorder's commit_interval: the gap is read again after it, since the "
        "newest changes reach HA's history only then.",
    )

    # --- broker and state store ------------------------------------------------------------
    celery_broker_url: SecretStr = Field(
        default=SecretStr("redis://127.0.0.1:6379/0"),
        description="Celery broker: redis://… (Redis 7.0 or newer) or amqp://… (RabbitMQ).",
    )
    redis_url: SecretStr | None = Field(
        default=None,
        description="Redis for state, counters and dead letters. Defaults to the broker when "
        "the broker is Redis.",
    )
    redis_prefix: str = Field(default="ha_ingestor:", description="Prefix of every Redis key.")
    redis_socket_timeout: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="Seconds a worker's or beat's call to the state Redis may take before it "
        "fails (a half-open connection would otherwise block for ~15 min); the batch hold "
        "limit allows for it.",
    )
    broker_memory_warn_percent: int = Field(
        default=80,
        ge=1,
        le=100,
        description="Broker Redis memory (used_memory of maxmemory) from which health is "
        "degraded with reason `broker_memory`.",
    )
    broker_memory_spool_percent: int = Field(
        default=90,
        ge=1,
        le=100,
        description="Broker Redis memory from which the listener treats the broker as full and "
        "keeps new events in its disk spool until memory falls below it again.",
    )
    celery_queue: str = Field(default="ha_events", description="Queue of the ingest tasks.")
    celery_visibility_timeout: float = Field(
        default=3600.0,
        gt=0,
        description="The longest a live worker may keep messages unacknowledged: a batch "
        "retried against an unavailable InfluxDB goes back to the broker within half of it. "
        "With WORKER_BULK_TAKE=false it is also how long Redis waits before giving a killed "
        "worker's messages to another (kombu's visibility timeout cannot tell a busy worker "
        "from a dead one); with the bulk take WORKER_LIVENESS_TIMEOUT decides that instead.",
    )

    # --- InfluxDB ------------------------------------------------------------------------
    influxdb_api_version: int = Field(
        default=1, description="1: InfluxDB 1.x /write; 2: the v2 write API (2.x, 3.x, 1.8+)."
    )
    influxdb_url: str = Field(default="http://127.0.0.1:8086", description="InfluxDB base URL.")
    influxdb_token: SecretStr | None = Field(default=None, description="v2 API token.")
    influxdb_org: str | None = Field(default=None, description="v2 organisation.")
    influxdb_bucket: str = Field(default="home_assistant", description="v2 bucket.")
    influxdb_database: str = Field(default="home_assistant", description="v1 database.")
    influxdb_username: str | None = Field(default=None, description="v1 user.")
    influxdb_password: SecretStr | None = Field(default=None, description="v1 password.")
    influxdb_retention_policy: str | None = Field(default=None, description="v1 retention policy.")
    influxdb_timeout: float = Field(default=10.0, gt=0, description="Seconds per write request.")

    # --- workers -----------------------------------------------------------------------------
    batch_size: int = Field(
        default=1000, ge=1, le=50_000, description="Events per InfluxDB write under load."
    )
    batch_interval: float = Field(
        default=0.5,
        gt=0,
        le=10,
        description="Seconds a partial batch waits before it is written (idle latency).",
    )
    write_retry_max_delay: float = Field(
        default=30.0, gt=0, description="Cap of the write retry backoff, in seconds."
    )
    max_event_age: float = Field(
        default=86_400.0,
        gt=0,
        description="Seconds an event may wait for an unavailable InfluxDB before it is "
        "dead-lettered (reason too_old_during_outage); those are replayed automatically once "
        "writes succeed again.",
    )
    dead_letters_max: int | None = Field(
        default=None,
        ge=100,
        description="Dead letters kept at most; beyond it the oldest are DELETED (counted, health "
        "reason `dropping`). Unset (the default): every letter is kept. Events waiting out an "
        "InfluxDB outage are never capped.",
    )
    enrichment_enabled: bool = Field(
        default=True,
        description="Add area and device tags from HA's registries (kept in Redis by the "
        "listener).",
    )
    enrichment_cache_ttl: float = Field(
        default=60.0, gt=0, description="Seconds a worker keeps the registries before re-reading."
    )

    # --- listener ----------------------------------------------------------------------------
    health_host: str = Field(default="127.0.0.1", description="Address of the health server.")
    health_port: int = Field(
        default=8001, ge=0, le=65535, description="Port of /health, /metrics and the status page."
    )
    data_dir: Path = Field(default=Path(".data"), description="Local state: spool, beat schedule.")
    spool_max_mb: int = Field(
        default=1024, ge=1, description="Size limit of the local spool (DATA_DIR/spool), in MB."
    )
    publish_queue_size: int = Field(
        default=20_000, ge=100, description="Events held in memory between reading and publishing."
    )

    # --- listener: durable hand-off and paged backfill (issue 13) ---------------------------
    listener_broker_timeout: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="Seconds a publish to a Redis broker may wait before its batch goes to the "
        "spool instead.",
    )
    ha_max_frame_mb: int = Field(
        default=64,
        ge=1,
        description="Largest WebSocket frame taken from HA, in MB (a larger one restarts the "
        "connection).",
    )
    ha_trace_frames: Path | None = Field(
        default=None,
        description="Debugging: write every WebSocket frame to and from HA to this file as JSON "
        "lines, secrets masked (`ha-ingestor trace summary PATH` reads it). Unset: off.",
    )
    ha_trace_max_mb: float = Field(
        default=50.0, gt=0, description="Size of one frame trace file before it is rotated, in MB."
    )
    ha_trace_backups: int = Field(
        default=3, ge=0, le=100, description="Rotated frame trace files kept (PATH.1 … PATH.N)."
    )
    backfill_window: float = Field(
        default=900.0,
        gt=0,
        description="Seconds of HA history asked for in one backfill request (its window).",
    )
    backfill_entities_per_request: int = Field(
        default=200,
        ge=1,
        description="Entities asked for in one backfill request: a large home's window is "
        "split into requests of this many.",
    )
    backfill_reply_timeout: float = Field(
        default=60.0, gt=0, description="Seconds HA may take to answer one backfill request."
    )
    backfill_retries: int = Field(
        default=5,
        ge=0,
        description="Retries of a backfill request that failed or timed out, with backoff, "
        "before the backfill waits for the next connection (its cursor kept).",
    )
    import_max_queue: int = Field(
        default=50_000,
        ge=100,
        description="`ha-ingestor import` publishes only while fewer than this many messages "
        "wait in the ingest queue (read from the broker), so an import of a year never fills "
        "Redis: about 1 kB of broker memory each.",
    )

    # --- workers: bulk take from Redis (issue 12) ---------------------------------------
    worker_bulk_take: bool = Field(
        default=True,
        description="Workers take up to BATCH_SIZE messages per round trip and acknowledge "
        "each batch at once (workers/consumers/bulk_consumer.py; Redis or RabbitMQ). false: "
        "Celery's stock consumer and transport, one message at a time, over 10x the CPU per "
        "event; on Redis a killed worker's messages then come back only after "
        "CELERY_VISIBILITY_TIMEOUT (1 h by default), and one being taken at the kill can be "
        "lost (kombu records it as unacknowledged only after Redis handed it over).",
    )
    worker_liveness_timeout: float = Field(
        default=20.0,
        ge=2,
        le=3600,
        description="With the bulk take on Redis: seconds after which the messages a silent "
        "worker took go back to the queue (its liveness key, renewed every quarter of this by "
        "a thread of its own, so a busy worker is never taken for dead). Not "
        "CELERY_VISIBILITY_TIMEOUT: that bounds how long a live worker holds a batch.",
    )

    # --- monitoring: beat, health thresholds, Flower ----------------------------------------
    beat_interval: float = Field(
        default=5.0, gt=0, le=300, description="Seconds between beat's rate and health runs."
    )
    health_event_gap: float = Field(
        default=600.0,
        gt=0,
        description="Seconds without events while subscribed before the status is degraded "
        "(only when HA usually sends at least a few events in that time).",
    )
    health_listener_stale: float = Field(
        default=15.0,
        gt=0,
        description="Seconds without a listener heartbeat in Redis before it counts as down.",
    )
    health_reconnects_per_hour: int = Field(
        default=5, ge=1, description="Reconnects to HA within an hour that make it degraded."
    )
    health_queue_backlog: int = Field(
        default=10_000, ge=1, description="Waiting messages that make the status degraded."
    )
    health_queue_max_age: float = Field(
        default=300.0,
        gt=0,
        description="Seconds the oldest waiting event may wait (degraded beyond); with nothing "
        "written for that long while events wait, unhealthy.",
    )
    health_window: float = Field(
        default=300.0,
        ge=60,
        description="Seconds over which write errors and dead letters are counted (whole "
        "minutes, the current one included).",
    )
    flower_address: str = Field(
        default="127.0.0.1", description="Address Flower binds (`ha-ingestor flower`)."
    )
    flower_port: int = Field(default=5555, ge=0, le=65535, description="Flower's port.")
    flower_basic_auth: SecretStr | None = Field(
        default=None,
        description="user:password[,user2:password2] for Flower; required when FLOWER_ADDRESS "
        "is not a loopback address.",
    )

    # --- rules ---------------------------------------------------------------------------
    ha_ingestor_config: Path | None = Field(
        default=None,
        description="YAML with filters, tags and overrides named as in HA's InfluxDB integration.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Log level."
    )

    @field_validator("ha_event_types", mode="before")
    @classmethod
    def _split_event_types(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = tuple(part.strip() for part in value.split(",") if part.strip())
        if not value:
            raise ValueError("give at least one event type, e.g. state_changed")
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

    @field_validator("influxdb_api_version")
    @classmethod
    def _check_api_version(cls, value: int) -> int:
        if value not in (1, 2):
            raise ValueError("must be 1 (InfluxDB 1.x /write) or 2 (the v2 write API)")
        return value

    @field_validator("influxdb_url")
    @classmethod
    def _check_influx_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must look like http://127.0.0.1:8086")
        return value.rstrip("/")

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
        if self.influxdb_api_version == 2 and not self.influxdb_org:
            problems.append("INFLUXDB_ORG: required with INFLUXDB_API_VERSION=2")
        if self.ha_heartbeat_timeout >= self.celery_visibility_timeout:
            problems.append("HA_HEARTBEAT_TIMEOUT: must be far below CELERY_VISIBILITY_TIMEOUT")
        if self.ha_ingestor_config is not None and not self.ha_ingestor_config.is_file():
            problems.append(f"HA_INGESTOR_CONFIG: {self.ha_ingestor_config} is not a file")
        if problems:
            raise ValueError("; ".join(problems))
        return self

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
        return [v for v in values if v]

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


def _password(url: str) -> str | None:
    return urlsplit(url).password


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment, or raise SettingsError listing every problem."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "settings"
            message = str(error["msg"]).removeprefix("Value error, ")
            lines.append(f"  {field.upper()}: {message}" if error["loc"] else f"  {message}")
        raise SettingsError(
            "ha-ingestor cannot start, fix these settings (environment variables):\n"
            + "\n".join(lines)
        ) from None


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, loaded once at the first call (the process's entry point)."""
    return load_settings()
