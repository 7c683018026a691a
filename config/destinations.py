"""Where points go: one or several destinations, each with its connection and its own rules.

Without a `destinations:` list in the rules file (HA_INGESTOR_CONFIG) there is one destination,
named `default`, built from the INFLUXDB_* variables and the file's top-level options, exactly as
before destinations existed. With the list, each entry is a destination:

    include: {domains: [sensor, binary_sensor]}      # top level: what every destination inherits
    destinations:
      - name: default                                # no url: INFLUXDB_* as before
      - name: archive
        kind: victoriametrics
        url: http://127.0.0.1:8428
        include: {entity_globs: ["sensor.*_energy"]}  # its own: replaces the inherited include

An entry holds its connection (CONNECTION_KEYS) and, beside it, any of HA's `influxdb:` options
(core/rules.py OPTIONS); an option it sets replaces the top-level one, options it leaves out are
inherited. Secrets are given inline or, better, as `password_file` / `token_file`: HA's
`!secret` is not resolved here, so it is refused with that fix rather than taken as the
secret's name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from config.rules_file import TaggedValue, read_config_file
from core.rules import IGNORED_OPTIONS, OPTIONS, Rules, RulesError

if TYPE_CHECKING:
    from config.settings import Settings

Kind = Literal["influxdb", "influxdb3", "victoriametrics"]

DEFAULT_NAME: Final = "default"
"""The destination of the INFLUXDB_* variables; its Redis keys are those of before."""
_SETTING: Final = re.compile(
    r"\bINFLUXDB_(URL|KIND|API_VERSION|DATABASE|USERNAME|PASSWORD|RETENTION_POLICY|TOKEN|ORG|"
    r"BUCKET|TIMEOUT)\b"
)
"""The INFLUXDB_* variables a destination entry has a key for (its lower-case name)."""
NAME_PATTERN: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
CONNECTION_KEYS: Final = frozenset(
    {
        "name",
        "kind",
        "url",
        "api_version",
        "database",
        "bucket",
        "org",
        "organization",
        "username",
        "password",
        "password_file",
        "token",
        "token_file",
        "retention_policy",
        "timeout",
    }
)
_SECRETS: Final = ("password", "token")
_HA_CONNECTION: Final = ("host", "port", "ssl", "path")
"""HA's way to say where InfluxDB is: one `url` says it here."""
_HA_UNSUPPORTED: Final = {
    "verify_ssl": "TLS is always verified, against the system's CA store: add your CA there",
    "ssl_ca_cert": "TLS is verified against the system's CA store: add this CA there",
    "max_retries": "ha-ingestor retries by itself until the store answers (nothing is dropped)",
}
"""HA's connection options a destination cannot honour: refused, so none is believed applied."""


class DestinationsError(ValueError):
    """The destinations cannot be used; the message lists every problem with its fix."""


@dataclass(frozen=True)
class Destination:
    """One store the workers write to, with the rules that choose and shape its points."""

    name: str
    kind: Kind
    url: str
    rules: Rules = field(compare=False)
    api_version: int = 1
    database: str = "home_assistant"
    bucket: str = "home_assistant"
    org: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    retention_policy: str | None = None
    timeout: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings, rules: Rules | None = None) -> Destination:
        """The INFLUXDB_* variables as a destination (validated with the settings), with the
        rules given (the defaults when none)."""
        return cls(
            name=DEFAULT_NAME,
            kind=settings.influxdb_kind,
            url=settings.influxdb_url,
            rules=rules if rules is not None else Rules(),
            api_version=settings.influxdb_api_version,
            database=settings.influxdb_database,
            bucket=settings.influxdb_bucket,
            org=settings.influxdb_org,
            username=settings.influxdb_username,
            password=settings.influxdb_password,
            token=settings.influxdb_token,
            retention_policy=settings.influxdb_retention_policy,
            timeout=settings.influxdb_timeout,
        )

    @property
    def is_default(self) -> bool:
        return self.name == DEFAULT_NAME

    def describe(self) -> str:
        """Where it writes, as a person names it, with no secret: `archive: VictoriaMetrics
        http://vm:8428`."""
        from config.redaction import redact_url

        url = redact_url(self.url)
        if self.kind == "victoriametrics":
            where = f"VictoriaMetrics {url}"
        elif self.kind == "influxdb3":
            where = f"InfluxDB 3 {url} database {self.database}"
        elif self.api_version == 2:
            where = f"InfluxDB v2 {url} org {self.org} bucket {self.bucket}"
        else:
            where = f"InfluxDB v1 {url} database {self.database}"
        return f"{self.name}: {where}"

    def in_own_words(self, text: str) -> str:
        """A sink's message with each INFLUXDB_* variable it names put as this destination's
        key in the file (`token` of destination 'archive'): the sinks word their fixes for
        the variables, which only the `default` destination is set by."""
        if self.is_default:
            return text
        return _SETTING.sub(lambda m: f"`{m[1].lower()}` of destination {self.name!r}", text)

    def secrets(self) -> list[str]:
        """Its secret values, for the log filter and the tests that look for leaks."""
        from urllib.parse import urlsplit

        values = [s.get_secret_value() for s in (self.password, self.token) if s is not None]
        values.append(urlsplit(self.url).password or "")
        return [v for v in values if v]


class DestinationEntry(BaseModel):
    """The connection part of one `destinations:` entry, validated."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    kind: Kind = "influxdb"
    url: str
    api_version: Literal[1, 2] = 1
    database: str = "home_assistant"
    bucket: str = "home_assistant"
    org: str | None = Field(default=None, alias="organization")
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    token: SecretStr | None = None
    token_file: Path | None = None
    retention_policy: str | None = None
    timeout: float = Field(default=10.0, gt=0)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        from config.settings import store_url

        return store_url(value)


@dataclass(frozen=True)
class Destinations:
    """Every destination, in the order the file lists them (the default alone without one)."""

    all: tuple[Destination, ...]

    @classmethod
    def single(cls, settings: Settings, rules: Rules | None = None) -> Destinations:
        """The INFLUXDB_* destination alone, as without a `destinations:` list."""
        return cls((Destination.from_settings(settings, rules),))

    @property
    def several(self) -> bool:
        """Whether writes fan out: each destination then progresses on its own (backlogs)."""
        return len(self.all) > 1

    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.all)

    def get(self, name: str) -> Destination:
        for destination in self.all:
            if destination.name == name:
                return destination
        raise DestinationsError(
            f"no destination named {name!r}: the configured ones are {', '.join(self.names())}"
        )

    def pick(self, name: str | None) -> Destination:
        """The one a command's --destination names; without a name, `default` if there is
        one, else the first listed."""
        if name is not None:
            return self.get(name)
        return next((d for d in self.all if d.is_default), self.all[0])

    def secrets(self) -> list[str]:
        return [s for d in self.all for s in d.secrets()]


def load_destinations(settings: Settings) -> Destinations:
    """The destinations of the settings and their rules file; RulesError (with every problem,
    each naming its destination) when they cannot be used."""
    data = read_config_file(settings.ha_ingestor_config)
    return destinations_from(data, settings, source=str(settings.ha_ingestor_config))


def destinations_from(data: Any, settings: Settings, *, source: str = "") -> Destinations:
    """Destinations from the parsed rules file (None: no file)."""
    where = f"HA_INGESTOR_CONFIG ({source})" if source else "HA_INGESTOR_CONFIG"
    if not isinstance(data, Mapping) or "destinations" not in data:
        try:
            rules = Rules.from_mapping(data)
        except RulesError as exc:
            raise RulesError(f"{where}: {exc}") from None
        return Destinations.single(settings, rules)
    base = {k: v for k, v in data.items() if k != "destinations"}
    entries = data["destinations"]
    if not isinstance(entries, list) or not entries:
        raise RulesError(
            f"{where}: `destinations:` must be a list of destinations, each with at least a "
            "name, e.g. `- name: default` (INFLUXDB_*) and `- {name: archive, kind: "
            "victoriametrics, url: http://127.0.0.1:8428}`"
        )
    problems: list[str] = []
    built: list[Destination] = []
    for position, entry in enumerate(entries, start=1):
        try:
            built.append(_destination(entry, base, settings))
        except (RulesError, DestinationsError) as exc:
            label = entry.get("name") if isinstance(entry, Mapping) else None
            problems.append(f"destination {position} ({label or 'unnamed'}): {exc}")
    names = [d.name for d in built]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"destination name {name!r} is used twice: give each a name of its own")
    if problems:
        raise RulesError(f"{where}:\n  " + "\n  ".join(problems))
    return Destinations(tuple(built))


def _destination(entry: Any, base: Mapping[str, Any], settings: Settings) -> Destination:
    if not isinstance(entry, Mapping):
        raise DestinationsError(
            f"each destination is a mapping (name, kind, url, …), got {type(entry).__name__}"
        )
    name = entry.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise DestinationsError(
            f"name {name!r}: give a short name of lower-case letters, digits, - and _ (it names "
            "the destination in /health, /metrics and `ha-ingestor dlq --destination`)"
        )
    if pieces := [k for k in _HA_CONNECTION if k in entry]:
        raise DestinationsError(
            f"{', '.join(pieces)}: give the whole address as `url: http://host:8086` (https "
            "for ssl, the path after the port) instead of HA's separate host/port/ssl/path"
        )
    if unsupported := [k for k in _HA_UNSUPPORTED if k in entry]:
        raise DestinationsError(
            "; ".join(
                f"{k}: not an option here, {_HA_UNSUPPORTED[k]}; remove it" for k in unsupported
            )
        )
    _refuse_unknown(entry)
    connection = {k: v for k, v in entry.items() if k in CONNECTION_KEYS}
    options = {k: v for k, v in entry.items() if k not in CONNECTION_KEYS}
    rules = Rules.from_mapping({**base, **options})
    if name == DEFAULT_NAME and "url" not in connection:
        if len(connection) > 1:
            raise DestinationsError(
                "the `default` destination without a url is INFLUXDB_*: set its connection "
                f"there, or give it a url here too (found {', '.join(sorted(connection))})"
            )
        return Destination.from_settings(settings, rules)
    return _connected(connection, rules)


def _refuse_unknown(entry: Mapping[str, Any]) -> None:
    """A misspelt connection key (`tokn`) is named with its likely fix, rather than answered
    with HA's options alone (a destination takes both kinds of key)."""
    import difflib

    known = sorted(CONNECTION_KEYS | set(OPTIONS))
    unknown = [str(k) for k in entry if k not in CONNECTION_KEYS and k not in OPTIONS
               and k not in IGNORED_OPTIONS]  # fmt: skip
    if not unknown:
        return
    problems = []
    for key in unknown:
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean {close[0]}?" if close else f"valid keys are {', '.join(known)}"
        problems.append(f"{key}: not a destination key; {hint}")
    raise DestinationsError("; ".join(problems))


def _connected(connection: Mapping[str, Any], rules: Rules) -> Destination:
    for key in _SECRETS:
        if isinstance(connection.get(key), TaggedValue):
            raise DestinationsError(
                f"{key}: HA's !secret and !env_var are not read here; put the {key} in a file "
                f"readable only by ha-ingestor and name it with `{key}_file: /path/to/file`"
            )
    try:
        entry = DestinationEntry.model_validate(dict(connection))
    except ValidationError as exc:
        raise DestinationsError(_validation_text(exc)) from None
    password = _secret(entry.password, entry.password_file, "password")
    token = _secret(entry.token, entry.token_file, "token")
    problems = []
    if (entry.kind == "influxdb3" or entry.api_version == 2) and token is None:
        problems.append("token (or token_file): required by the v2 API and by InfluxDB 3")
    if entry.kind == "influxdb" and entry.api_version == 2 and not entry.org:
        problems.append("org: required with api_version 2 (your InfluxDB organisation)")
    if problems:
        raise DestinationsError("; ".join(problems))
    return Destination(
        name=entry.name,
        kind=entry.kind,
        url=entry.url,
        rules=rules,
        api_version=entry.api_version,
        database=entry.database,
        bucket=entry.bucket,
        org=entry.org,
        username=entry.username,
        password=password,
        token=token,
        retention_policy=entry.retention_policy,
        timeout=entry.timeout,
    )


def _secret(value: SecretStr | None, path: Path | None, key: str) -> SecretStr | None:
    if value is not None and path is not None:
        raise DestinationsError(f"{key} and {key}_file: set only one of them")
    if path is None:
        return value
    try:
        return SecretStr(path.read_text(encoding="utf-8").strip())
    except OSError as exc:
        raise DestinationsError(
            f"{key}_file: cannot read {path} ({exc.strerror}); make it readable by ha-ingestor"
        ) from None


def _validation_text(exc: ValidationError) -> str:
    """One `key: problem` per error, never the value (it may be a secret)."""
    parts = []
    for error in exc.errors():
        key = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "not a destination option"
        parts.append(f"{key}: {message}")
    return "; ".join(parts)
