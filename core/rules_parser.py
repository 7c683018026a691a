"""Reading HA's `influxdb:` options into Rules: every problem collected, each with its fix.

HA validates these options with voluptuous (`cv.string`, `cv.ensure_list`, `cv.entity_ids`);
this parser accepts what HA accepts and, where HA would only say "invalid", names the option,
what was given and what would be valid ("did you mean …?" for a misspelt option). The option
tables themselves (OPTIONS, FILTER_KEYS, ENTITY_KEYS) live in core/rules.py beside the Rules
they build.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from core.rules import (
    DEFAULT_IGNORE_STATES,
    ENTITY_KEYS,
    FILTER_KEYS,
    IGNORED_OPTIONS,
    MEASUREMENT_ATTRS,
    OPTIONS,
    PRECISIONS,
    EntityConfig,
    EntityFilter,
    Rules,
    RulesError,
    not_one_of,
)

# homeassistant/core.py: VALID_ENTITY_ID
_OBJECT_ID: Final = r"(?!_)[\da-z_]+(?<!_)"
_VALID_ENTITY_ID: Final = re.compile(r"^(?!.+__)" + _OBJECT_ID + r"\." + _OBJECT_ID + r"$")


def parse_rules(data: object) -> Rules:
    """Rules from the parsed YAML of HA's `influxdb:` block; RulesError lists every problem."""
    return _Parser().parse(data)


def _describe(value: object) -> str:
    """A value as a user would recognise it in their YAML."""
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{type(value).__name__} {text}"


class _Parser:
    """Turns the raw mapping into Rules, collecting every problem before raising."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def parse(self, data: object) -> Rules:
        if data is None:
            return Rules()
        if not isinstance(data, Mapping):
            raise RulesError(
                f"the rules must be a mapping of HA's influxdb options, got {_describe(data)}"
            )
        for key in data:
            if key not in OPTIONS and key not in IGNORED_OPTIONS:
                self._unknown(str(key), key, OPTIONS)
        entity_filter = self._entity_filter(data)
        measurement_attr = self._choice(
            data, "measurement_attr", "unit_of_measurement", MEASUREMENT_ATTRS
        )
        precision = self._choice(data, "precision", "ns", tuple(PRECISIONS))
        if data.get("ignore_states") is None:
            ignore_states = list(DEFAULT_IGNORE_STATES)
        else:
            ignore_states = self._strings(data["ignore_states"], "ignore_states")
        tags = self._tags(data.get("tags"))
        tags_attributes = self._strings(data.get("tags_attributes"), "tags_attributes")
        ignore_attributes = self._strings(data.get("ignore_attributes"), "ignore_attributes")
        default_measurement = self._string(data, "default_measurement")
        override_measurement = self._string(data, "override_measurement")
        component_config = self._entity_configs(data, "component_config", entity_ids=True)
        component_config_domain = self._entity_configs(data, "component_config_domain")
        component_config_glob = self._entity_configs(data, "component_config_glob")
        if self.problems:
            raise RulesError(self.problems)
        return Rules(
            entity_filter=entity_filter,
            tags=tags,
            tags_attributes=frozenset(tags_attributes),
            ignore_attributes=frozenset(ignore_attributes),
            default_measurement=default_measurement,
            override_measurement=override_measurement,
            measurement_attr=measurement_attr,
            component_config=component_config,
            component_config_domain=component_config_domain,
            component_config_glob=component_config_glob,
            precision=precision,
            ignore_states=frozenset(ignore_states),
        )

    def _entity_filter(self, data: Mapping[str, Any]) -> EntityFilter:
        """HA's `include` and `exclude`."""
        include = self._filter_part(data, "include")
        exclude = self._filter_part(data, "exclude")
        return EntityFilter(
            include_domains=frozenset(include["domains"]),
            include_entities=frozenset(include["entities"]),
            include_entity_globs=frozenset(include["entity_globs"]),
            exclude_domains=frozenset(exclude["domains"]),
            exclude_entities=frozenset(exclude["entities"]),
            exclude_entity_globs=frozenset(exclude["entity_globs"]),
        )

    def _choice(self, data: Mapping[str, Any], key: str, default: str, valid: Sequence[str]) -> str:
        """An option with a fixed set of values; the default when it is not set."""
        value = self._string(data, key)
        if value is None:
            return default
        if value not in valid:
            self.problems.append(not_one_of(key, value, valid))
        return value

    def _unknown(self, path: str, key: object, valid: Sequence[str]) -> None:
        close = difflib.get_close_matches(str(key), valid, n=1)
        hint = f"did you mean {close[0]}?" if close else f"valid options are {', '.join(valid)}"
        self.problems.append(f"{path}: unknown option; {hint}")

    def _scalar(self, value: object, path: str) -> str | None:
        """HA's cv.string: any scalar becomes its str(), None and collections are refused."""
        if isinstance(value, str):
            return value
        if isinstance(value, bool | int | float):
            return str(value)
        self.problems.append(f"{path}: expected a string, got {_describe(value)}")
        return None

    def _string(self, data: Mapping[str, Any], key: str) -> str | None:
        value = data.get(key)
        return None if value is None else self._scalar(value, key)

    def _strings(self, value: object, path: str, *, csv: bool = False) -> list[str]:
        """HA's cv.ensure_list of strings (ensure_list_csv for entity ids): one or a list."""
        if value is None:
            return []
        if isinstance(value, str) and csv:
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, Mapping | set | frozenset):
            self.problems.append(
                f"{path}: expected a string or a list of strings, got {_describe(value)}"
            )
            return []
        items = value if isinstance(value, list | tuple) else [value]
        out = []
        for index, item in enumerate(items):
            text = self._scalar(item, f"{path}[{index}]")
            if text is not None:
                out.append(text)
        return out

    def _entity_ids(self, value: object, path: str) -> list[str]:
        """HA's cv.entity_ids: lower-cased, each a valid `domain.object_id`."""
        out = []
        for given in self._strings(value, path, csv=True):
            entity_id = given.lower()
            if _VALID_ENTITY_ID.match(entity_id):
                out.append(entity_id)
            else:
                self.problems.append(
                    f"{path}: {given!r} is not a valid entity_id; expected "
                    "domain.object_id in lowercase letters, digits and single underscores"
                )
        return out

    def _mapping(self, data: Mapping[str, Any], key: str) -> Mapping[Any, Any]:
        value = data.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.problems.append(f"{key}: expected a mapping, got {_describe(value)}")
            return {}
        return value

    def _filter_part(self, data: Mapping[str, Any], key: str) -> dict[str, list[str]]:
        part = self._mapping(data, key)
        for name in part:
            if name not in FILTER_KEYS:
                self._unknown(f"{key}.{name}", name, FILTER_KEYS)
        return {
            "domains": self._strings(part.get("domains"), f"{key}.domains"),
            "entities": self._entity_ids(part.get("entities"), f"{key}.entities"),
            "entity_globs": self._strings(part.get("entity_globs"), f"{key}.entity_globs"),
        }

    def _tags(self, value: object) -> tuple[tuple[str, str], ...]:
        if value is None:
            return ()
        if not isinstance(value, Mapping):
            self.problems.append(f"tags: expected a mapping of tag: value, got {_describe(value)}")
            return ()
        tags = {}
        for raw_key, raw_value in value.items():
            key = self._scalar(raw_key, "tags")
            if key is None:
                continue
            text = self._scalar(raw_value, f"tags.{key}")
            if text is None:
                continue
            if not key or not text:
                self.problems.append(
                    f"tags.{key}: InfluxDB refuses empty tag keys and values; give both"
                )
                continue
            tags[key] = text
        return tuple(sorted(tags.items()))

    def _entity_configs(
        self, data: Mapping[str, Any], key: str, *, entity_ids: bool = False
    ) -> tuple[tuple[str, EntityConfig], ...]:
        out: dict[str, EntityConfig] = {}
        for raw_name, entry in self._mapping(data, key).items():
            name = self._scalar(raw_name, key)
            if name is None:
                continue
            if entity_ids:
                valid = self._entity_ids(name, key)
                if not valid:
                    continue
                name = valid[0]
            path = f"{key}[{name}]"
            if entry is None:
                entry = {}
            if not isinstance(entry, Mapping):
                self.problems.append(
                    f"{path}: expected a mapping with {' or '.join(ENTITY_KEYS)}, "
                    f"got {_describe(entry)}"
                )
                continue
            for option in entry:
                if option not in ENTITY_KEYS:
                    self._unknown(f"{path}.{option}", option, ENTITY_KEYS)
            override = entry.get("override_measurement")
            ignore = entry.get("ignore_attributes")
            out[name] = EntityConfig(
                override_measurement=(
                    None
                    if override is None
                    else self._scalar(override, f"{path}.override_measurement")
                ),
                ignore_attributes=(
                    None
                    if ignore is None
                    else frozenset(self._strings(ignore, f"{path}.ignore_attributes"))
                ),
            )
        return tuple(out.items())
