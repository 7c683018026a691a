"""No product function over 60 lines: a longer one does several things, and a reader should
see each of them named (declarative tables are module-level data, not functions)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "config", "listener", "workers")
LIMIT = 60


def long_functions(source: str) -> Iterator[tuple[str, int, int]]:
    """(name, first line, length) of each function or method longer than LIMIT lines."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > LIMIT:
                yield node.name, node.lineno, length


def test_the_rule_measures_a_function_from_its_def_to_its_last_line() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT))
    assert [name for name, _, _ in long_functions(f"def long():\n{body}\n")] == ["long"]
    assert list(long_functions("def short():\n" + "\n".join(body.splitlines()[:-1]))) == []


def test_no_product_function_is_over_60_lines() -> None:
    found = [
        f"{path.relative_to(REPO)}:{line} {name} is {length} lines: split it into named steps"
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
        for name, line, length in long_functions(path.read_text(encoding="utf-8"))
    ]
    assert not found, "\n".join(found)
