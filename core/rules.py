"""The options of HA's InfluxDB integration (`influxdb:` in configuration.yaml), validated once.

Named exactly as HA names them so a user can paste HA's block; everything is precomputed
(frozensets, one compiled regex per glob list, per-entity results cached) because the rules
are applied to every event. Semantics copied from HA: `helpers/entityfilter.py` for
include/exclude and `helpers/entity_values.py` for the `component_config*` merge.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

MEASUREMENT_ATTRS: Final = ("unit_of_measurement", "domain__device_class", "entity_id")
PRECISIONS: Final[Mapping[str, int]] = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
"""Write precision → nanoseconds per unit."""
DEFAULT_IGNORE_STATES: Final = ("unknown", "unavailable", "")

# HA's connection options. Ours come from the environment (config/settings.py), so these are
# accepted and ignored: a user can paste HA's whole `influxdb:` block without editing it.
IGNORED_OPTIONS: Final = frozenset(
    {
        "api_version",
        "host",
        "port",
        "path",
        "ssl",
        "verify_ssl",
        "ssl_ca_cert",
        "username",
        "password",
        "database",
        "token",
        "organization",
        "bucket",
        "max_retries",
    }
)

FILTER_KEYS: Final = ("domains", "entities", "entity_globs")
"""Keys of `include` and `exclude`."""
ENTITY_KEYS: Final = ("override_measurement", "ignore_attributes")
"""What one entry of `component_config*` may set."""
OPTIONS: Final = (
    "include",
    "exclude",
    "tags",
    "tags_attributes",
    "ignore_attributes",
    "default_measurement",
    "override_measurement",
    "measurement_attr",
    "component_config",
    "component_config_domain",
    "component_config_glob",
    "precision",
    "ignore_states",
)
"""Every option ha-ingestor applies (the configuration reference is generated from these)."""
# homeassistant/core.py: VALID_ENTITY_ID
_OBJECT_ID: Final = r"(?!_)[\da-z_]+(?<!_)"
_VALID_ENTITY_ID: Final = re.compile(r"^(?!.+__)" + _OBJECT_ID + r"\." + _OBJECT_ID + r"$")
_MAX_CACHED_ENTITIES: Final = 16_384  # HA's MAX_EXPECTED_ENTITY_IDS


class RulesError(ValueError):
    """The rules cannot be used; `problems` lists every one, each saying what would be valid."""

    def __init__(self, problems: str | Sequence[str]) -> None:
        self.problems: tuple[str, ...] = (
            (problems,) if isinstance(problems, str) else tuple(problems)
        )
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            lines = "\n".join(f"  - {p}" for p in self.problems)
            message = f"{len(self.problems)} problems in the rules:\n{lines}"
        super().__init__(message)


def _globs_to_pattern(globs: Iterable[str]) -> re.Pattern[str] | None:
    """One regex for a glob list, as HA's `_convert_globs_to_pattern`."""
    translated = [fnmatch.translate(glob) for glob in sorted(set(globs))]
    return re.compile("(?:" + "|".join(translated) + ")") if translated else None


@dataclass(frozen=True, slots=True)
class EntityFilter:
    """HA's include/exclude filter: the six cases of `helpers/entityfilter.py`, chosen once."""

    include_domains: frozenset[str] = frozenset()
    include_entities: frozenset[str] = frozenset()
    include_entity_globs: frozenset[str] = frozenset()
    exclude_domains: frozenset[str] = frozenset()
    exclude_entities: frozenset[str] = frozenset()
    exclude_entity_globs: frozenset[str] = frozenset()
    _include_re: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _exclude_re: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _test: Callable[[str], bool] = field(init=False, repr=False, compare=False)
    case: int = field(init=False, compare=False)
    """Which case of HA's applies, numbered as HA's comments: 1 no filter, 2 only includes,
    3 only excludes, 4 domain/glob includes (`entity_filter_4a`), 5 domain/glob excludes
    without domain/glob includes (`entity_filter_4b`), 6 only entity includes and excludes."""

    def __post_init__(self) -> None:
        include_re = _globs_to_pattern(self.include_entity_globs)
        exclude_re = _globs_to_pattern(self.exclude_entity_globs)
        have_include = bool(self.include_domains or self.include_entities or include_re)
        have_exclude = bool(self.exclude_domains or self.exclude_entities or exclude_re)
        test: Callable[[str], bool]
        if not have_include and not have_exclude:
            case, test = 1, _pass_all
        elif not have_exclude:
            case, test = 2, self._included
        elif not have_include:
            case, test = 3, self._not_excluded
        elif self.include_domains or include_re:
            case, test = 4, self._case_4
        elif self.exclude_domains or exclude_re:
            case, test = 5, self._case_5
        else:
            case, test = 6, self.include_entities.__contains__
        object.__setattr__(self, "_include_re", include_re)
        object.__setattr__(self, "_exclude_re", exclude_re)
        object.__setattr__(self, "_test", test)
        object.__setattr__(self, "case", case)

    def __call__(self, entity_id: str) -> bool:
        return self._test(entity_id)

    def _included(self, entity_id: str) -> bool:
        return (
            entity_id in self.include_entities
            or entity_id.partition(".")[0] in self.include_domains
            or bool(self._include_re and self._include_re.match(entity_id))
        )

    def _not_excluded(self, entity_id: str) -> bool:
        return not (
            entity_id in self.exclude_entities
            or entity_id.partition(".")[0] in self.exclude_domains
            or (self._exclude_re and self._exclude_re.match(entity_id))
        )

    def _case_4(self, entity_id: str) -> bool:
        """Included entity; else not excluded entity and (glob included, or domain included
        and not glob excluded). Excluded domains play no part here, as in HA."""
        return entity_id in self.include_entities or (
            entity_id not in self.exclude_entities
            and (
                bool(self._include_re and self._include_re.match(entity_id))
                or (
                    entity_id.partition(".")[0] in self.include_domains
                    and not (self._exclude_re and self._exclude_re.match(entity_id))
                )
            )
        )

    def _case_5(self, entity_id: str) -> bool:
        """Excluded by domain or glob: only included entities pass; else not excluded by id."""
        if entity_id.partition(".")[0] in self.exclude_domains or bool(
            self._exclude_re and self._exclude_re.match(entity_id)
        ):
            return entity_id in self.include_entities
        return entity_id not in self.exclude_entities


def _pass_all(_: str) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class EntityConfig:
    """One `component_config*` entry. None means "not set here", so a later level does not
    erase an earlier one (HA merges these entries with dict.update)."""

    override_measurement: str | None = None
    ignore_attributes: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class EntityRules:
    """What applies to one entity once filter and the three config levels are resolved."""

    override_measurement: str | None
    ignore_attributes: frozenset[str]
    """The entity's own plus the global `ignore_attributes`."""


@dataclass(frozen=True, slots=True)
class Rules:
    """Everything that decides which events become points and how; built once per process."""

    entity_filter: EntityFilter = field(default_factory=EntityFilter)
    tags: tuple[tuple[str, str], ...] = ()
    tags_attributes: frozenset[str] = frozenset()
    ignore_attributes: frozenset[str] = frozenset()
    default_measurement: str | None = None
    override_measurement: str | None = None
    measurement_attr: str = "unit_of_measurement"
    component_config: tuple[tuple[str, EntityConfig], ...] = ()
    component_config_domain: tuple[tuple[str, EntityConfig], ...] = ()
    component_config_glob: tuple[tuple[str, EntityConfig], ...] = ()
    """In the user's order: later globs win, as in HA."""
    precision: str = "ns"
    ignore_states: frozenset[str] = frozenset(DEFAULT_IGNORE_STATES)
    static_tags: Mapping[str, str] = field(init=False, repr=False, compare=False)
    _exact: dict[str, EntityConfig] = field(init=False, repr=False, compare=False)
    _domain: dict[str, EntityConfig] = field(init=False, repr=False, compare=False)
    _glob: tuple[tuple[re.Pattern[str], EntityConfig], ...] = field(
        init=False, repr=False, compare=False
    )
    _cache: dict[str, EntityRules | None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        problems = []
        if self.measurement_attr not in MEASUREMENT_ATTRS:
            problems.append(
                _not_one_of("measurement_attr", self.measurement_attr, MEASUREMENT_ATTRS)
            )
        if self.precision not in PRECISIONS:
            problems.append(_not_one_of("precision", self.precision, tuple(PRECISIONS)))
        if problems:
            raise RulesError(problems)
        object.__setattr__(self, "static_tags", MappingProxyType(dict(self.tags)))
        object.__setattr__(self, "_exact", dict(self.component_config))
        object.__setattr__(self, "_domain", dict(self.component_config_domain))
        globs = tuple((re.compile(fnmatch.translate(g)), c) for g, c in self.component_config_glob)
        object.__setattr__(self, "_glob", globs)
        object.__setattr__(self, "_cache", {})

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> Rules:
        """Rules from the parsed YAML of HA's `influxdb:` block; RulesError lists every problem."""
        return _Parser().parse(data)

    def for_entity(self, entity_id: str) -> EntityRules | None:
        """The rules for one entity, or None when the filter leaves it out. Cached per entity."""
        try:
            return self._cache[entity_id]
        except KeyError:
            pass
        resolved = self._resolve(entity_id) if self.entity_filter(entity_id) else None
        if len(self._cache) >= _MAX_CACHED_ENTITIES:
            self._cache.clear()
        self._cache[entity_id] = resolved
        return resolved

    def _resolve(self, entity_id: str) -> EntityRules:
        """HA's EntityValues.get: domain, then every matching glob in order, then the entity."""
        levels: list[EntityConfig] = []
        if (by_domain := self._domain.get(entity_id.partition(".")[0])) is not None:
            levels.append(by_domain)
        levels.extend(config for pattern, config in self._glob if pattern.match(entity_id))
        if (exact := self._exact.get(entity_id)) is not None:
            levels.append(exact)
        measurement: str | None = None
        ignore: frozenset[str] = frozenset()
        for level in levels:
            if level.override_measurement is not None:
                measurement = level.override_measurement
            if level.ignore_attributes is not None:
                ignore = level.ignore_attributes
        return EntityRules(measurement, ignore | self.ignore_attributes)


def _not_one_of(option: str, value: object, valid: Sequence[str]) -> str:
    return f"{option}: {value!r} is not one of {', '.join(valid)}"


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
        include = self._filter_part(data, "include")
        exclude = self._filter_part(data, "exclude")
        measurement_attr = self._string(data, "measurement_attr")
        if measurement_attr is None:
            measurement_attr = "unit_of_measurement"
        elif measurement_attr not in MEASUREMENT_ATTRS:
            self.problems.append(
                _not_one_of("measurement_attr", measurement_attr, MEASUREMENT_ATTRS)
            )
        precision = self._string(data, "precision")
        if precision is None:
            precision = "ns"
        elif precision not in PRECISIONS:
            self.problems.append(_not_one_of("precision", precision, tuple(PRECISIONS)))
        if data.get("ignore_states") is None:
            ignore_states = list(DEFAULT_IGNORE_STATES)
        else:
            ignore_states = self._strings(data["ignore_states"], "ignore_states")
        entity_filter = EntityFilter(
            include_domains=frozenset(include["domains"]),
            include_entities=frozenset(include["entities"]),
            include_entity_globs=frozenset(include["entity_globs"]),
            exclude_domains=frozenset(exclude["domains"]),
            exclude_entities=frozenset(exclude["entities"]),
            exclude_entity_globs=frozenset(exclude["entity_globs"]),
        )
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
