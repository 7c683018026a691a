"""One JSON library: the product reads and writes JSON through core.json_codec (orjson, the
standard library only where orjson refuses), so speed, what is refused and how non-ASCII text
is written are decided in one place. A module that imports the standard library's `json`
must be in ALLOWED, with the reason its exact text matters."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "listener", "workers", "config")

ALLOWED: dict[str, str] = {
    "core/json_codec.py": "the one JSON way: the standard library reads and writes what orjson "
    "refuses",
    "core/task_message.py": "the envelope's template is ASCII (json.JSONEncoder(ensure_ascii)); "
    "json_codec writes UTF-8",
    "core/transform.py": "_text: the stored text of list/dict attributes (', ' separators, "
    "sorted keys) is what users' queries see",
    "listener/importing/import_command.py": "the hash of an import's request: a run's identity "
    "must stay the same across versions",
}
"""Module → why it keeps the standard library's `json`."""

USE_INSTEAD = (
    "use core.json_codec instead (`json_codec.dumps(value)` returns UTF-8 bytes, "
    "`json_codec.loads` takes bytes or str), or add the module to ALLOWED in "
    "tests/unit/test_one_json_library.py with why its exact text matters"
)


def stdlib_json_imports(source: str) -> Iterator[int]:
    """The line of every import of the standard library's `json` (or a module of it)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        if any(name == "json" or name.startswith("json.") for name in names):
            yield node.lineno


def product_modules() -> Iterator[tuple[str, str]]:
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            yield path.relative_to(REPO).as_posix(), path.read_text(encoding="utf-8")


def test_no_product_module_imports_the_standard_json_outside_the_allow_list() -> None:
    offenders = [
        f"{name}:{line} imports the standard library's json: {USE_INSTEAD}"
        for name, source in product_modules()
        if name not in ALLOWED
        for line in stdlib_json_imports(source)
    ]
    assert not offenders, "\n".join(offenders)


def test_every_allowed_module_still_needs_it() -> None:
    importing = {name for name, source in product_modules() if any(stdlib_json_imports(source))}
    assert set(ALLOWED) <= importing, "remove what no longer imports json from ALLOWED"


def test_every_way_to_import_it_is_found() -> None:
    source = (
        "import json\n"
        "import os, json as j\n"
        "from json import dumps\n"
        "from json.decoder import JSONDecodeError\n"
        "def f():\n"
        "    import json\n"
        "import orjson\n"
        "from core import json_codec\n"
        "from . import json\n"
        "import jsonschema\n"
    )
    assert list(stdlib_json_imports(source)) == [1, 2, 3, 4, 6]
