"""No worker module rebinds a module global: the services a worker runs with (its bulk taker,
its worker context, its batch events for Flower) are owned by its bootsteps and carried by its
app (workers/consumers/bulk_consumer.py, workers/worker_start.py), so two apps in one process,
or a test, never share one by accident. The rule: no `global` statement in workers/."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_no_worker_module_rebinds_a_module_global() -> None:
    found = [
        f"{path.relative_to(REPO)}:{node.lineno}: global {', '.join(node.names)}"
        for path in sorted((REPO / "workers").rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Global)
    ]
    assert found == []
