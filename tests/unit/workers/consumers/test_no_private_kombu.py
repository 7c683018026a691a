"""The product and the bench use kombu and Celery only through their public names.

A private name (a leading underscore) may change in any release without notice; the workers'
consumers once depended on several of kombu's, and needed a version guard to stay safe. The
rule is a simple, honest grep: a dotted path from kombu, celery or amqp (py-amqp) reaching a
name that starts with an underscore (`kombu.transport._transport_cache`, `celery._state`), or
such a name imported from them. It cannot see an underscore attribute read on an object held
in a variable (`message._raw`): review catches those.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[4]
PACKAGES = ("core", "config", "listener", "workers", "bench")
LIBRARIES = r"(?:kombu|celery|amqp)"
PRIVATE_PATH = re.compile(rf"\b{LIBRARIES}(?:\.[A-Za-z]\w*)*\._[a-z]")
PRIVATE_IMPORT = re.compile(rf"^\s*from\s+{LIBRARIES}[\w.]*\s+import\s+.*\b_[a-z]")


def offenders(text: str) -> list[tuple[int, str]]:
    """(line number, line) of each private kombu/Celery name in a module's source."""
    return [
        (number, line.strip())
        for number, line in enumerate(text.splitlines(), 1)
        if PRIVATE_PATH.search(line) or PRIVATE_IMPORT.search(line)
    ]


def test_the_rule_sees_private_paths_and_imports_and_spares_public_ones() -> None:
    source = "\n".join(
        [
            "kombu.transport._transport_cache.pop(scheme, None)",
            "from celery._state import _task_stack",
            "from kombu.transport.redis import _after_fork_cleanup_channel",
            "from kombu.messaging import Consumer  # a public name",
            "c.task_consumer.cancel_by_queue(queue)",
            "celery.signals.worker_shutting_down.connect(self.on_stop)",
            "self._threads = []",
        ]
    )
    assert [number for number, _ in offenders(source)] == [1, 2, 3]


def test_no_product_or_bench_module_uses_a_private_kombu_or_celery_name() -> None:
    found = [
        f"{path.relative_to(REPO)}:{number}: {line}"
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
        for number, line in offenders(path.read_text(encoding="utf-8"))
    ]
    assert found == []
