"""Generates docs/configuration.md from the code, so the reference cannot drift from it.

Environment variables come from the `Settings` model (names, defaults, constraints and each
field's description), the ones a user sets first on top, then every one under its group
(config/setting_groups.py); YAML options from `core.rules` (the option names, their defaults and
valid values), with their meanings written here next to the HA option each one mirrors. A unit
test fails when docs/configuration.md differs from `render()` or when an option has no meaning.

Like `config/main_command.py`, this is a composition root: it names `core.rules`, imported only when
the reference is rendered (the listener never imports this module).

    ha-ingestor docs-reference            print the reference
    ha-ingestor docs-reference --write    rewrite docs/configuration.md
    ha-ingestor docs-reference --check    exit 1 when docs/configuration.md is out of date
"""

from __future__ import annotations

import argparse
import enum
import sys
import textwrap
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import annotated_types
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from config.setting_groups import SettingGroup, group_of, set_first
from config.settings import Settings, environment_names

_DESCRIPTION: Final = "Generate docs/configuration.md from the settings model and the rules."
DOC_PATH: Final = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"

YAML_MEANINGS: Final[Mapping[str, str]] = {
    "include": "Record only these entities (HA's entity filter semantics, including how "
    "`include` and `exclude` combine).",
    "exclude": "Do not record these entities.",
    "tags": "Static tags added to every point; they win over a clashing tag.",
    "tags_attributes": "Attributes written as tags instead of fields.",
    "ignore_attributes": "Attributes never written (for every entity; entries in "
    "`component_config*` add to it).",
    "default_measurement": "Measurement of a point whose entity has no "
    "`unit_of_measurement` (with `measurement_attr: unit_of_measurement`). Unset: the full "
    "`entity_id`.",
    "override_measurement": "One measurement for every point, whatever the entity.",
    "measurement_attr": "What names the measurement: the unit (`°C`, `W`, …), "
    "`<domain>__<device_class>`, or the `entity_id`.",
    "component_config": "Per-entity settings, keyed by `entity_id`.",
    "component_config_domain": "Per-domain settings, keyed by domain (`sensor`).",
    "component_config_glob": "Per-glob settings, keyed by an entity glob (`sensor.*_power`); "
    "when several match, the later one wins.",
    "precision": "Timestamp precision of the points written.",
    "ignore_states": "States that produce no point (ha-ingestor's extension; HA's own list is "
    "fixed to these three).",
}
"""Meaning of every top-level YAML option of core.rules (a test checks the keys match)."""

HA_CONNECTION_OPTIONS: Final[Mapping[str, str]] = {
    "api_version": "`INFLUXDB_API_VERSION`",
    "host": "`INFLUXDB_URL` (`http(s)://host:port/path`)",
    "port": "`INFLUXDB_URL`",
    "path": "`INFLUXDB_URL`",
    "ssl": "`INFLUXDB_URL` with `https://`",
    "verify_ssl": "nothing: certificates are always verified (trust a private CA with "
    "`SSL_CERT_FILE`)",
    "ssl_ca_cert": "`SSL_CERT_FILE`, the standard OpenSSL variable naming a CA bundle",
    "username": "`INFLUXDB_USERNAME`",
    "password": "`INFLUXDB_PASSWORD`",
    "database": "`INFLUXDB_DATABASE`",
    "token": "`INFLUXDB_TOKEN`",
    "organization": "`INFLUXDB_ORG`",
    "bucket": "`INFLUXDB_BUCKET`",
    "max_retries": "nothing: writes are retried until they succeed (`WRITE_RETRY_MAX_DELAY`, "
    "`MAX_EVENT_AGE`)",
}
"""HA's connection options, accepted and ignored in the YAML, and where each one goes instead."""

DESTINATION_KEYS: Final[Mapping[str, str]] = {
    "name": "What names the destination in `/health`, `/metrics`, the logs and the commands' "
    "`--destination`: lower-case letters, digits, `-` and `_`, at most 40. `default` without "
    "`url` is the `INFLUXDB_*` destination.",
    "kind": "`influxdb` (1.x, or 2.x with `api_version: 2`), `influxdb3`, or "
    "`victoriametrics` (texts written as labels: "
    "[its mapping](deployment.md#victoriametrics-as-the-store)).",
    "url": "Where it is: `http(s)://host:port`, with a path when it has one (HA's `host`, "
    "`port`, `ssl` and `path` are refused here: give one url).",
    "api_version": "`1` (the `/write` endpoint) or `2` (the v2 write API: needs `token` and "
    "`org`).",
    "database": "Database written to (v1 and InfluxDB 3).",
    "bucket": "Bucket written to (v2).",
    "org": "Organisation (v2).",
    "organization": "HA's name for `org`.",
    "username": "User for v1 basic authentication (or VictoriaMetrics' `-httpAuth.username`).",
    "password": "Its password; better `password_file`.",
    "password_file": "A file holding the password, readable by ha-ingestor only (read at "
    "start, surrounding whitespace dropped).",
    "token": "Token (v2 and InfluxDB 3, or a bearer token for VictoriaMetrics behind vmauth); "
    "better `token_file`.",
    "token_file": "A file holding the token.",
    "retention_policy": "Retention policy written to (v1).",
    "timeout": "Seconds a write may take before it counts as failed.",
}
"""Meaning of every key of a `destinations:` entry (a test checks they are config.destinations'
CONNECTION_KEYS)."""

_HEADER = """\
# Configuration reference

<!-- Generated by `ha-ingestor docs-reference --write` from config/settings.py and
     core/rules.py. Do not edit by hand: a test fails when this file and the code differ. -->

ha-ingestor takes its settings from environment variables (12-factor) and, optionally, its
recording rules from a YAML file named by `HA_INGESTOR_CONFIG`. Every process (listener,
worker, beat, flower) reads the same variables; each checks them at start and reports every
bad value with what would be valid. `ha-ingestor check` tests them against the real servers.
"""

_ENV_INTRO = """\
## Environment variables

Names are case-insensitive. Secrets (marked *secret*) never appear in logs, `/health`,
`/metrics` or error messages; a URL's password is shown as `**`. Settings that must stay
apart (a warning below its action, a backoff's start below its cap) are checked against each
other at start too.

While `make run` runs, it keeps the settings it started with (its URLs and ports) in
`DATA_DIR/dev-stack.env`: `ha-ingestor status`, `check`, `dlq` and `import` run in that
checkout with no `CELERY_BROKER_URL` or `REDIS_URL` set read them, below the environment, and
say on stderr which stack they talk to.
"""

_FIRST_INTRO = """\
### Start here

The settings a user sets first: where Home Assistant, the broker and InfluxDB are, and how to
log in to each. Every setting is then listed by concern, these included.
"""

_YAML_INTRO = """\
## YAML rules file (`HA_INGESTOR_CONFIG`)

The options of Home Assistant's InfluxDB integration, with the same names and meanings, so
existing dashboards keep working. A file holding HA's whole `influxdb:` block (the key
included) works as is; HA's `!secret`, `!include` and `!env_var` tags are read as plain
strings. Unknown options are refused at start with the closest valid name.

```yaml
include:
  domains: [sensor, binary_sensor, climate]
exclude:
  entity_globs: ["sensor.*_linkquality"]
tags:
  instance: home
tags_attributes: [friendly_name]
component_config_glob:
  "sensor.*_power":
    override_measurement: power
```
"""

_HA_OPTIONS_INTRO = """\
### HA's connection options

Accepted in the YAML so a pasted block loads, and ignored: the connection comes from the
environment (or from a destination's own keys, below).
"""

_DESTINATIONS_INTRO = """\
### Several destinations (`destinations:`)

Without this list the workers write to one destination, named `default`, set by the
`INFLUXDB_*` variables. With it they write every event to each destination listed, each on
its own: one that is down keeps its events in a backlog of its own while the others go on
([deployment](deployment.md#several-destinations)).

Each entry is a destination: its connection (the keys below) and, beside it, any of the options
above. An option an entry sets replaces the top-level one as a whole (an entry's `include` is
not merged with the top-level `include`); the options it leaves out are the top-level ones.
An entry `- name: default` without `url` is the `INFLUXDB_*` destination, with its old Redis
keys. Give secrets as `password_file` / `token_file`: HA's `!secret` and `!env_var` are
refused in an entry (they would be the secret's name). Every problem of every entry is reported
at start, naming the entry, and never with a secret's value.

```yaml
include:
  domains: [sensor, binary_sensor]    # every destination inherits this
destinations:
  - name: default                     # INFLUXDB_*: the existing dashboards' database
  - name: archive
    kind: influxdb
    url: https://influx2.lan:8086
    api_version: 2
    org: home
    bucket: long_term
    token_file: /run/secrets/influx2_token
    include:                          # replaces the top-level include for this one
      entity_globs: ["sensor.*_energy"]
```
"""


def destination_rows() -> list[tuple[str, str, str]]:
    """(key, default, meaning) for every key of a `destinations:` entry."""
    from config.destinations import CONNECTION_KEYS, DestinationEntry

    if set(DESTINATION_KEYS) != CONNECTION_KEYS:
        raise ValueError(
            f"destination keys {sorted(CONNECTION_KEYS ^ set(DESTINATION_KEYS))} differ between "
            "config/destinations.py CONNECTION_KEYS and devtools/docs_reference.py "
            "DESTINATION_KEYS: say what each one does"
        )
    fields = DestinationEntry.model_fields
    rows = []
    for key, meaning in DESTINATION_KEYS.items():
        field = fields.get("org" if key == "organization" else key)
        default = _default_text(field) if field is not None else "*unset*"
        rows.append((f"`{key}`", default, _cell(meaning)))
    return rows


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def _is_optional(annotation: Any) -> bool:
    return type(None) in typing.get_args(annotation) and _is_union(annotation)


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _base_type(annotation: Any) -> Any:
    if _is_union(annotation):
        rest = [a for a in typing.get_args(annotation) if a is not type(None)]
        return rest[0] if len(rest) == 1 else annotation
    return annotation


def _type_text(annotation: Any) -> str:
    base = _base_type(annotation)
    origin = typing.get_origin(base)
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{v}`" for v in typing.get_args(base))
    if origin in (tuple, list, frozenset, set):
        return "comma-separated list"
    if isinstance(base, type) and issubclass(base, enum.Enum):
        return "one of " + ", ".join(f"`{m.value}`" for m in base)
    names = {
        bool: "`true` or `false`",
        int: "integer",
        float: "number",
        str: "text",
        Path: "path",
        SecretStr: "*secret*",
    }
    return names.get(base, getattr(base, "__name__", str(base)))


def _bounds_text(metadata: Iterable[Any]) -> str:
    parts = []
    for item in metadata:
        if isinstance(item, annotated_types.Gt):
            parts.append(f"> {_value_text(item.gt)}")
        elif isinstance(item, annotated_types.Ge):
            parts.append(f"≥ {_value_text(item.ge)}")
        elif isinstance(item, annotated_types.Lt):
            parts.append(f"< {_value_text(item.lt)}")
        elif isinstance(item, annotated_types.Le):
            parts.append(f"≤ {_value_text(item.le)}")
    return ", ".join(parts)


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value)


def _default_text(field: FieldInfo) -> str:
    if field.default is PydanticUndefined:
        if field.default_factory is None:
            return "*required*"
        value = field.default_factory()  # type: ignore[call-arg]
    else:
        value = field.default
    if value is None:
        return "*unset*"
    if isinstance(value, SecretStr):
        value = value.get_secret_value()  # a default is public: it is in the source
    if isinstance(value, tuple | list | frozenset | set):
        value = ",".join(_value_text(v) for v in value)
    text = _value_text(value)
    return f"`{text}`" if text else '`""`'


def environment_variable(name: str, field: FieldInfo) -> str:
    """The variable a field is documented under: its current name (older aliases still work)."""
    return environment_names(name, field)[0]


def _variable_text(name: str, field: FieldInfo) -> str:
    current, *older = environment_names(name, field)
    return f"`{current}`" + (f" (or {_code_list(older)})" if older else "")


Row = tuple[str, str, str, str]


def environment_row(name: str, field: FieldInfo) -> Row:
    """(variable, default, valid values, meaning) of one setting."""
    if not field.description:
        raise ValueError(
            f"Settings.{name} has no description: give its Field a description=..., "
            "the configuration reference is generated from it"
        )
    valid = _type_text(field.annotation)
    bounds = _bounds_text(field.metadata)
    if bounds:
        valid = f"{valid}, {bounds}"
    return (_variable_text(name, field), _default_text(field), valid, _cell(field.description))


def environment_rows(model: type[Settings] = Settings) -> list[Row]:
    """Every setting's row, in declaration order (which is group by group)."""
    return [environment_row(name, field) for name, field in model.model_fields.items()]


def first_rows(model: type[Settings] = Settings) -> list[Row]:
    """The rows of the settings a user sets first (marked so in their metadata)."""
    return [
        environment_row(name, field)
        for name, field in model.model_fields.items()
        if set_first(field)
    ]


def grouped_rows(model: type[Settings] = Settings) -> dict[SettingGroup, list[Row]]:
    """Every setting's row under its group, the groups in their order, none left empty."""
    groups: dict[SettingGroup, list[Row]] = {group: [] for group in SettingGroup}
    for name, field in model.model_fields.items():
        groups[group_of(name, field)].append(environment_row(name, field))
    return {group: rows for group, rows in groups.items() if rows}


def _environment_section(model: type[Settings] = Settings) -> str:
    header = ("Variable", "Default", "Valid values", "Meaning")
    parts = [_ENV_INTRO, _FIRST_INTRO, _table(header, first_rows(model))]
    for group, rows in grouped_rows(model).items():
        purpose = textwrap.fill(group.purpose, width=96)
        parts += [f"### {group.title}\n\n{purpose}\n", _table(header, rows)]
    return "\n".join(parts)


def _yaml_default(option: str, defaults: Any) -> str:
    if option in ("include", "exclude"):
        return "*none* (every entity)" if option == "include" else "*none*"
    value = getattr(defaults, option)
    if value is None:
        return "*unset*"
    if isinstance(value, tuple | frozenset | set):
        items = sorted(str(v[0]) if isinstance(v, tuple) else str(v) for v in value)
        return ", ".join(f'`"{v}"`' if v == "" else f"`{v}`" for v in items) or "*none*"
    return f"`{value}`"


def yaml_rows() -> list[tuple[str, str, str]]:
    """(option, default, meaning) for every top-level option core.rules accepts."""
    from core import rules

    defaults = rules.Rules.from_mapping(None)
    extra = {
        "include": f"Keys: {_code_list(rules.FILTER_KEYS)}.",
        "exclude": f"Keys: {_code_list(rules.FILTER_KEYS)}.",
        "measurement_attr": f"One of {_code_list(rules.MEASUREMENT_ATTRS)}.",
        "precision": f"One of {_code_list(rules.PRECISIONS)}.",
    }
    for option in ("component_config", "component_config_domain", "component_config_glob"):
        extra[option] = f"Each entry may set {_code_list(rules.ENTITY_KEYS)}."
    rows = []
    for option in rules.OPTIONS:
        meaning = YAML_MEANINGS.get(option)
        if meaning is None:
            raise ValueError(
                f"YAML option {option!r} has no meaning in devtools/docs_reference.py "
                "YAML_MEANINGS: add one line saying what it does"
            )
        text = f"{meaning} {extra[option]}" if option in extra else meaning
        rows.append((f"`{option}`", _yaml_default(option, defaults), _cell(text)))
    return rows


def ha_connection_rows() -> list[tuple[str, str]]:
    """(HA option, what to set instead) for the options the YAML accepts and ignores."""
    from core import rules

    missing = sorted(set(rules.IGNORED_OPTIONS) - set(HA_CONNECTION_OPTIONS))
    if missing:
        raise ValueError(
            f"HA options {missing} are ignored by core.rules but not mapped in "
            "devtools/docs_reference.py HA_CONNECTION_OPTIONS: say what to set instead"
        )
    return [(f"`{o}`", HA_CONNECTION_OPTIONS[o]) for o in sorted(rules.IGNORED_OPTIONS)]


def _code_list(items: Iterable[str]) -> str:
    return ", ".join(f"`{item}`" for item in items)


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def render() -> str:
    """The whole of docs/configuration.md."""
    return "\n".join(
        [
            _HEADER,
            _environment_section(),
            _YAML_INTRO,
            _table(("Option", "Default", "Meaning"), yaml_rows()),
            _HA_OPTIONS_INTRO,
            _table(("HA option", "Set instead"), ha_connection_rows()),
            _DESTINATIONS_INTRO,
            _table(("Key", "Default", "Meaning"), destination_rows()),
        ]
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--write", action="store_true", help=f"rewrite {DOC_PATH.name} instead of printing"
    )
    mode.add_argument(
        "--check", action="store_true", help=f"exit 1 when {DOC_PATH.name} is out of date"
    )
    parser.add_argument("--path", type=Path, default=DOC_PATH, help=f"({DOC_PATH})")


def run(args: argparse.Namespace) -> int:
    text = render()
    path: Path = args.path
    if args.write:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
        return 0
    if args.check:
        current = path.read_text(encoding="utf-8") if path.is_file() else ""
        if current != text:
            print(
                f"{path} is out of date: run `ha-ingestor docs-reference --write` and commit it",
                file=sys.stderr,
            )
            return 1
        print(f"{path} is up to date")
        return 0
    sys.stdout.write(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.docs_reference", description=_DESCRIPTION
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
