"""The options of HA's InfluxDB integration (`influxdb:` in configuration.yaml), validated once.

Named exactly as HA names them so a user can paste HA's block; everything is precomputed
(frozensets, one compiled regex per glob list, per-entity results cached) because the rules
are applied to every event. Semantics copied from HA: `helpers/entityfilter.py` for
include/exclude and `helpers/entity_values.py` for the `component_config*` merge. Reading the
YAML into Rules, with every problem and its "did you mean", is core/rules_parser.py's job.
"""

from __future__ import annotations

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
                not_one_of("measurement_attr", self.measurement_attr, MEASUREMENT_ATTRS)
            )
        if self.precision not in PRECISIONS:
            problems.append(not_one_of("precision", self.precision, tuple(PRECISIONS)))
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
        from core.rules_parser import parse_rules  # the parser builds Rules: imported on use

        return parse_rules(data)

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


def not_one_of(option: str, value: object, valid: Sequence[str]) -> str:
    """The problem of an option set to a value outside its choices."""
    return f"{option}: {value!r} is not one of {', '.join(valid)}"
