"""Each batch's task events (workers/batch_events.py) as Celery's own event receiver
reads them.

Real Redis broker, Celery's real dispatcher and receiver; the worker's consumer is stood in for
by the two things BatchEvents reads of it: its app and its event dispatcher (whose `groups`
say whether task events are on, as `-E` or Flower's `enable_events` leave them).
"""

from __future__ import annotations

import ast
import contextlib
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from celery import Celery

from config.celery_app import create_app
from config.settings import load_settings
from workers.batch_events import BATCH_TASK, BatchEvents
from workers.pipeline import BatchOutcome

pytestmark = pytest.mark.integration


@dataclass
class Consumer:
    """What BatchEvents reads of Celery's worker consumer."""

    app: Celery
    event_dispatcher: Any
    hostname: str = "batch-events-test@host"


def received(app: Celery, send: Any, expect: int) -> list[dict[str, Any]]:
    """The task events a receiver bound before `send()` runs gets, at most `expect` of them."""
    events: list[dict[str, Any]] = []
    with app.connection_for_read() as connection:
        receiver = app.events.Receiver(
            connection, handlers={"*": events.append}, node_id="batch-events-test"
        )
        with receiver.consumer_context(wakeup=False) as (conn, _, _):
            # On Redis the receiver subscribes (pub/sub) on its first poll: poll once first.
            with contextlib.suppress(TimeoutError):
                conn.drain_events(timeout=0.2)
            send()
            deadline = time.monotonic() + 10
            while len([e for e in events if e["type"].startswith("task-")]) < expect:
                if time.monotonic() > deadline:
                    break
                try:
                    conn.drain_events(timeout=0.5)
                except TimeoutError:
                    continue
    return [e for e in events if e["type"].startswith("task-")]


@pytest.fixture
def app(redis_url: str) -> Celery:
    return create_app(load_settings(celery_broker_url=redis_url))


def consumer(app: Celery, groups: set[str] | None) -> Consumer:
    """A worker's consumer whose dispatcher sends these groups (None: all, as with -E)."""
    return Consumer(app, app.events.Dispatcher(enabled=True, groups=groups))


def test_a_written_batch_is_one_succeeded_task(app: Celery) -> None:
    events = BatchEvents(consumer(app, groups=None))
    outcome = BatchOutcome(written=48, skipped=Counter({"ignore_states": 2}))

    def batch() -> None:
        task = events.started(50)
        events.finished(task, outcome)

    got = received(app, batch, 3)
    assert [e["type"] for e in got] == ["task-received", "task-started", "task-succeeded"]
    assert len({e["uuid"] for e in got}) == 1
    first, last = got[0], got[-1]
    assert first["name"] == BATCH_TASK
    assert ast.literal_eval(first["kwargs"]) == {"events": 50}
    assert first["hostname"] == "batch-events-test@host"
    result = ast.literal_eval(last["result"])
    assert result == {"written": 48, "skipped": 2, "dead_lettered": {}, "handed_back": 0,
                      "write_retries": 0}  # fmt: skip
    assert last["runtime"] >= 0


def test_with_several_destinations_the_task_says_what_each_did(app: Celery) -> None:
    """A batch written to `default` and kept in the backlog of `archive` (unavailable)."""
    events = BatchEvents(consumer(app, groups=None))
    outcome = BatchOutcome(
        written=20,
        backlogged=20,
        dead_lettered=Counter({"rejected_by_influxdb": 1}),
        destinations={
            "default": BatchOutcome(written=20, dead_lettered=Counter({"rejected_by_influxdb": 1})),
            "archive": BatchOutcome(backlogged=20),
        },
    )

    def batch() -> None:
        events.finished(events.started(21), outcome)

    result = ast.literal_eval(received(app, batch, 3)[-1]["result"])
    assert result["destinations"] == {
        "default": {"written": 20, "backlogged": 0, "dead_lettered": {"rejected_by_influxdb": 1}},
        "archive": {"written": 0, "backlogged": 20, "dead_lettered": {}},
    }
    assert result["written"] == 20


@pytest.mark.parametrize(
    ("outcome", "words"),
    [
        (BatchOutcome(written=10, retries=3, handed_back=[10, 11]), "2 of 12 events handed back"),
        (BatchOutcome(dead_lettered=Counter({"worker_error": 12})), "worker_error"),
        (None, "the batch failed"),
    ],
)
def test_a_batch_not_finished_is_a_failed_task(
    app: Celery, outcome: BatchOutcome | None, words: str
) -> None:
    events = BatchEvents(consumer(app, groups=None))

    def batch() -> None:
        events.finished(events.started(12), outcome)

    got = received(app, batch, 3)
    assert [e["type"] for e in got] == ["task-received", "task-started", "task-failed"]
    assert words in got[-1]["exception"]


def test_nothing_is_sent_until_task_events_are_enabled(app: Celery) -> None:
    worker = consumer(app, groups={"worker"})  # a worker without -E
    events = BatchEvents(worker)

    def two_batches() -> None:
        assert not events.enabled()
        assert events.started(5) is None  # sends nothing
        worker.event_dispatcher.groups.add("task")  # what Flower's enable_events does
        assert events.enabled()
        events.finished(events.started(6), BatchOutcome(written=6))

    got = received(app, two_batches, 3)
    assert [e["type"] for e in got] == ["task-received", "task-started", "task-succeeded"]
    assert ast.literal_eval(got[0]["kwargs"]) == {"events": 6}, "the first batch sent events"


def test_a_broker_that_is_gone_costs_the_events_not_the_batch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gone = create_app(load_settings(celery_broker_url="redis://127.0.0.1:1/0"))
    events = BatchEvents(consumer(gone, groups=None))
    began = time.monotonic()
    task = events.started(3)  # no exception: the events are dropped, with one warning
    events.finished(task, BatchOutcome(written=3))
    first = time.monotonic() - began
    began = time.monotonic()
    for _ in range(20):  # the next batches do not try again for RETRY_AFTER_S
        events.finished(events.started(3), BatchOutcome(written=3))
    assert time.monotonic() - began < 0.5
    assert first < 15, "one failed connection attempt per RETRY_AFTER_S, not one per event"
    warnings = [r for r in caplog.records if "could not send a batch's task event" in r.message]
    assert len(warnings) == 1
