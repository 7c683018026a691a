"""No test without an assertion: a test that checks nothing passes whatever the code does.

Every test function in tests/**/test_*.py (module level, or a method of a Test* class) must
contain, anywhere in its body (closures included — tests hand them to threads and to
`wait_until`), at least one of:

- an `assert` statement, or `raise AssertionError(...)`;
- `pytest.raises`, `pytest.warns`, `pytest.deprecated_call` or `pytest.fail`;
- a call of one of the ASSERTING_HELPERS below, by name (`helper(...)` or `obj.helper(...)`).

Not allowed: "it did not raise" as the whole proof, and any helper not in the list, even when
its name sounds like an assertion. The list is checked too: every helper in it is defined under
tests/, and every definition asserts by the same rule. A deadline alone (`asyncio.wait_for`) is
not an assertion: it proves something finished, not what it did.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]

ASSERTING_HELPERS: dict[str, str] = {
    "wait_until": "tests/helpers.py: raises AssertionError when the condition is not met in time",
    "assert_round_trips": "tests/unit/core/test_transform_properties.py",
    "assert_secret_free": "tests/integration/workers/sinks/test_influx_sink.py",
    "assert_exactly_once": "tests/faults/test_worker_faults.py",
    "assert_everything_landed": "tests/stack.py",
    "assert_gone": "tests/integration/devtools/test_local_servers.py",
    "observed_everywhere": "tests/e2e/test_monitoring.py (Stack): /health, /metrics and status",
    "wait_for": "tests/e2e/test_monitoring.py (Stack): wait_until a code shows in /health",
    "assert_outage_figures": "tests/faults/test_destinations_outage.py: points, p99, drain",
}
"""Helper name → where it is defined and what it asserts."""

_PYTEST_ASSERTIONS = {"raises", "warns", "deprecated_call", "fail"}
_NOT_ASSERTIONS = {"asyncio"}
"""Modules whose functions share a helper's name without asserting (asyncio.wait_for)."""

Function = ast.FunctionDef | ast.AsyncFunctionDef


@functools.cache
def _syntax_trees() -> dict[Path, ast.Module]:
    """Every module under tests/, parsed once for all the checks below."""
    return {
        path: ast.parse(path.read_text("utf-8"), str(path)) for path in sorted(TESTS.rglob("*.py"))
    }


@functools.cache
def _functions_by_name() -> dict[str, list[Function]]:
    """Every function and method defined under tests/, by name."""
    found: dict[str, list[Function]] = {}
    for tree in _syntax_trees().values():
        for node in ast.walk(tree):
            if isinstance(node, Function):
                found.setdefault(node.name, []).append(node)
    return found


def _test_modules() -> dict[Path, ast.Module]:
    return {path: tree for path, tree in _syntax_trees().items() if path.name.startswith("test_")}


def collected_tests(tree: ast.Module) -> Iterator[Function]:
    """The functions pytest collects: test* at module level and in Test* classes."""
    for node in tree.body:
        if isinstance(node, Function) and node.name.startswith("test"):
            yield node
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            for item in node.body:
                if isinstance(item, Function) and item.name.startswith("test"):
                    yield item


def _called_name(call: ast.Call) -> tuple[str | None, str]:
    """(receiver name or None, called name) of `f(...)` / `x.f(...)`."""
    func = call.func
    if isinstance(func, ast.Name):
        return None, func.id
    if isinstance(func, ast.Attribute):
        receiver = func.value.id if isinstance(func.value, ast.Name) else ""
        return receiver, func.attr
    return None, ""


def asserts(function: Function) -> bool:
    """Whether the function holds an assertion by the rule in this module's docstring."""
    for node in ast.walk(function):
        if isinstance(node, ast.Assert):
            return True
        if isinstance(node, ast.Raise) and node.exc is not None:
            raised = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(raised, ast.Name) and raised.id == "AssertionError":
                return True
        if isinstance(node, ast.Call):
            receiver, name = _called_name(node)
            if receiver == "pytest" and name in _PYTEST_ASSERTIONS:
                return True
            if name in ASSERTING_HELPERS and receiver not in _NOT_ASSERTIONS:
                return True
    return False


def test_every_test_asserts_something() -> None:
    silent = [
        f"{path.relative_to(TESTS.parent)}:{function.lineno} {function.name}"
        for path, tree in _test_modules().items()
        for function in collected_tests(tree)
        if not asserts(function)
    ]
    assert silent == [], (
        "these tests assert nothing, so they pass whatever the code does; make each assert "
        "the outcome it was written to prove (or call a helper of ASSERTING_HELPERS in "
        f"{Path(__file__).name}):\n" + "\n".join(silent)
    )


def test_the_test_files_are_found() -> None:
    modules = _test_modules()
    assert Path(__file__).resolve() in modules
    assert len(modules) > 50
    assert sum(1 for tree in modules.values() for _ in collected_tests(tree)) > 500


@pytest.mark.parametrize("name", sorted(ASSERTING_HELPERS))
def test_each_allowed_helper_asserts(name: str) -> None:
    definitions = _functions_by_name().get(name, [])
    assert definitions, f"{name} is allowed as an assertion but defined nowhere under tests/"
    assert all(asserts(definition) for definition in definitions), (
        f"a definition of {name} asserts nothing: remove it from ASSERTING_HELPERS or make it "
        "assert"
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def test_x():\n    assert 1\n", True),
        ("def test_x():\n    with pytest.raises(ValueError):\n        int('x')\n", True),
        ("def test_x():\n    pytest.warns(UserWarning, f)\n", True),
        ("def test_x():\n    if bad():\n        pytest.fail('bad')\n", True),
        ("def test_x():\n    raise AssertionError('never')\n", True),
        ("def test_x():\n    wait_until(ready, 5)\n", True),
        ("def test_x():\n    stack.observed_everywhere('code', 'degraded', 'words')\n", True),
        ("def test_x():\n    def check():\n        assert 1\n    run(check)\n", True),
        ("def test_x():\n    write([])\n", False),
        ("def test_x():\n    raise ValueError('not an assertion')\n", False),
        ("async def test_x():\n    await asyncio.wait_for(task, 5)\n", False),
        ("def test_x():\n    assert_like_but_unlisted(result)\n", False),
        ("def test_x():\n    pytest.skip('later')\n", False),
    ],
)
def test_the_rule(source: str, expected: bool) -> None:
    [function] = collected_tests(ast.parse(source))
    assert asserts(function) is expected
