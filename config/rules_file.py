"""Reading the optional YAML file (HA_INGESTOR_CONFIG): HA's `influxdb:` options, and the
destinations (config/destinations.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from core.rules import Rules, RulesError


class TaggedValue(str):
    """A value HA would have resolved from a tag (`!secret name`): here only the tag's text."""

    __slots__ = ()


class _HAConfigLoader(yaml.SafeLoader):
    """HA's YAML with its tags (`!secret`, `!include`, `!env_var`) read as plain strings.

    The options those tags usually carry (token, password) are HA's connection settings, which
    the rules ignore, so a pasted block loads as is; a destination refuses a tagged secret
    (config/destinations.py), since it would be the secret's name, not the secret.
    """


def _tag_as_string(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return TaggedValue(node.value) if isinstance(node, yaml.ScalarNode) else ""


for _tag in ("!secret", "!include", "!env_var", "!include_dir_named", "!input"):
    _HAConfigLoader.add_constructor(_tag, _tag_as_string)


def read_config_file(path: Path | None) -> Any:
    """The file's parsed YAML (a pasted `influxdb:` block unwrapped); None without a file."""
    if path is None:
        return None
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_HAConfigLoader)
    except (OSError, yaml.YAMLError) as exc:
        raise RulesError(f"HA_INGESTOR_CONFIG: cannot read {path}: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("influxdb"), dict):
        data = data["influxdb"]  # a pasted `influxdb:` block from HA's configuration.yaml
    return data


def load_rules(path: Path | None) -> Rules:
    """The top-level rules (what every destination inherits); defaults without a file."""
    data = read_config_file(path)
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k != "destinations"}
    try:
        return Rules.from_mapping(data)
    except RulesError as exc:
        raise RulesError(f"HA_INGESTOR_CONFIG ({path}): {exc}") from None
