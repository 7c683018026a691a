"""The autouse reset in tests/conftest.py clears every variable the settings model reads.

The variables are set straight in the process environment by a module fixture, which pytest
sets up before the function-scoped autouse reset; each test then sees what the reset left.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from config.settings import Settings, environment_names, load_settings, setting_variables


def _polluting_value(name: str) -> str:
    """A value no setting accepts, so a leftover would also break load_settings()."""
    return f"left-over-{name.lower()}-://"


@pytest.fixture(scope="module")
def developer_shell() -> Iterator[frozenset[str]]:
    """Every settings variable (names, aliases, `_FILE` variants) set as a developer's shell
    might have them, lower-case spellings too; restored when the module is done."""
    variables = setting_variables()
    names = {*variables, "health_port", "Celery_Broker_Url"}
    saved = {name: os.environ.get(name) for name in names}
    for name in names:
        os.environ[name] = _polluting_value(name)
    yield frozenset(names)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def test_every_variable_of_every_field_is_cleared(developer_shell: frozenset[str]) -> None:
    left = sorted(name for name in developer_shell if name in os.environ)
    assert left == []
    for name, field in Settings.model_fields.items():
        for variable in environment_names(name, field):
            assert variable in developer_shell
            file_variant = variable if variable.endswith("_FILE") else f"{variable}_FILE"
            assert file_variant in developer_shell
    assert load_settings() == Settings()
