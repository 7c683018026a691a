"""Reading the rules from the optional YAML file (HA_INGESTOR_CONFIG)."""

from __future__ import annotations

from pathlib import Path

import yaml

from core.rules import Rules, RulesError


class _HAConfigLoader(yaml.SafeLoader):
    """HA's YAML with its tags (`!secret`, `!include`, `!env_var`) read as plain strings.

    The options those tags usually carry (token, password) are HA's connection settings, which
    ha-ingestor ignores, so a pasted block loads as is.
    """


def _tag_as_string(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else ""


for _tag in ("!secret", "!include", "!env_var", "!include_dir_named", "!input"):
    _HAConfigLoader.add_constructor(_tag, _tag_as_string)


def load_rules(path: Path | None) -> Rules:
    """Rules from a YAML file named as HA's `influxdb:` options; defaults without a file."""
    if path is None:
        return Rules.from_mapping(None)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_HAConfigLoader)
    except (OSError, yaml.YAMLError) as exc:
        raise RulesError(f"HA_INGESTOR_CONFIG: cannot read {path}: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("influxdb"), dict):
        data = data["influxdb"]  # a pasted `influxdb:` block from HA's configuration.yaml
    try:
        return Rules.from_mapping(data)
    except RulesError as exc:
        raise RulesError(f"HA_INGESTOR_CONFIG ({path}): {exc}") from None
