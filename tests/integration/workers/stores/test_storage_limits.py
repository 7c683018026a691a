"""Nothing is deleted to make room unless the user chose a cap, against a real Redis:
the dead-letter store, the outage store, their replay order, and beat's storage reasons."""

from __future__ import annotations

import http.server
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from config.celery_app import create_app
from config.redis_keys import RedisKeys
from config.settings import load_settings
from core.rules import Rules
from devtools.local_servers import free_port
from tests.helpers import stored_arg
from workers.consumers.task_sender import FrontSender, TaskSender
from workers.hand_back import HandBackPacer
from workers.monitoring.health_job import Monitor
from workers.pipeline import IngestPipeline
from workers.sinks.influx_sink import V1Sink
from workers.stores.counter_store import CounterStore
from workers.stores.dead_letters import DROPPED, TOO_OLD_DURING_OUTAGE, AutoReplay, DeadLetterStore

pytestmark = pytest.mark.integration

KEYS = RedisKeys()


def message(seq: int, source: str = "live") -> dict[str, Any]:
    entity_id = f"sensor.s{seq}"
    return {
        "event": {
            "event_type": "state_changed",
            "data": {
                "entity_id": entity_id,
                "new_state": {
                    "entity_id": entity_id,
                    "state": str(seq),
                    "attributes": {},
                    "last_updated": "2026-11-26T22:23:23+00:00",
                },
            },
        },
        "received_at": time.time() - 3600,
        "source": source,
        "seq": seq,
    }


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


def letters(n: int, reason: str, start: int = 0) -> list[tuple[Any, str, str]]:
    return [(message(start + i), reason, f"error {i}") for i in range(n)]


def test_by_default_every_dead_letter_is_kept(client: redis.Redis) -> None:
    counters = CounterStore(client, KEYS)
    store = DeadLetterStore(client, KEYS, count=counters.add)
    assert load_settings().dead_letters_max is None, "the default keeps them all"
    for chunk in range(3):
        store.add_many(letters(100, "rejected_by_influxdb", 100 * chunk))
    assert store.count() == 300
    assert counters.totals([DROPPED]) == {DROPPED: 0}


def test_a_cap_the_user_set_deletes_the_oldest_and_counts_them(
    client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    counters = CounterStore(client, KEYS)
    store = DeadLetterStore(client, KEYS, max_len=100, count=counters.add)
    store.add_many(letters(85, "invalid_event"))
    assert counters.totals([DROPPED]) == {DROPPED: 0}
    assert "85 of at most 100 kept" in caplog.text
    with caplog.at_level(logging.ERROR):
        store.add_many(letters(65, "invalid_event", 85))
    assert store.count() == 100
    assert counters.totals([DROPPED]) == {DROPPED: 50}
    assert [letter.message["seq"] for letter in store.list(limit=1)] == [50], "oldest went"
    assert "50 of the oldest DELETED to keep within DEAD_LETTERS_MAX=100" in caplog.text
    assert "Unset DEAD_LETTERS_MAX" in caplog.text


def test_events_waiting_out_an_outage_are_never_capped(client: redis.Redis) -> None:
    counters = CounterStore(client, KEYS)
    store = DeadLetterStore(client, KEYS, max_len=100, count=counters.add)
    store.add_many(letters(300, TOO_OLD_DURING_OUTAGE))
    assert store.outage_count() == 300
    assert store.count() == 0
    assert store.auto_replay_pending() == 300
    assert counters.totals([DROPPED]) == {DROPPED: 0}


def test_the_outage_store_is_written_first_and_oldest_first(
    redis_url: str, client: redis.Redis
) -> None:
    """On a Redis broker the replay goes where workers take next (the queue's right end)."""
    queue = f"test_{uuid.uuid4().hex[:8]}"
    settings = load_settings(celery_broker_url=redis_url, celery_queue=queue)
    TaskSender(create_app(settings))([message(100 + i) for i in range(3)])  # newer, waiting
    store = DeadLetterStore(client, KEYS)
    store.add_many(letters(5, TOO_OLD_DURING_OUTAGE))
    replayer = AutoReplay(store, client, KEYS, FrontSender(settings, create_app(settings)))
    assert replayer.run_once() == 5
    assert store.auto_replay_pending() == 0
    taken = []
    while (raw := client.rpop(queue)) is not None:  # the end workers take from
        assert isinstance(raw, bytes)
        taken.append(stored_arg(raw))
    assert [m["seq"] for m in taken] == [0, 1, 2, 3, 4, 100, 101, 102]
    assert {m["source"] for m in taken[:5]} == {"replay"}


def test_a_dead_letter_store_that_does_not_answer_ends_the_hold_not_the_worker() -> None:
    """Storing dead letters used to be retried forever, past the visibility timeout."""
    attempts = []

    def unreachable(batch: list[tuple[Any, str, str]]) -> None:
        attempts.append(len(batch))
        raise redis.ConnectionError("Connection refused")

    pipeline = IngestPipeline(
        rules=Rules(),
        sink=V1Sink(f"http://127.0.0.1:{free_port()}", "home", timeout=1),
        dead_letters=unreachable,
        backoff=lambda: iter([0.05] * 10_000),
        hold_limit=1.0,
    )
    outcomes = []
    worker = threading.Thread(target=lambda: outcomes.append(pipeline.process(["not a message"])))
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "the batch is still held"
    [outcome] = outcomes
    assert outcome.handed_back == [0]
    assert outcome.dead_lettered == {}
    assert 2 <= len(attempts) <= 40


def test_beat_reports_what_the_stores_hold(redis_url: str, client: redis.Redis) -> None:
    settings = load_settings(celery_broker_url=redis_url, dead_letters_max=100)
    counters = CounterStore(client, KEYS)
    store = DeadLetterStore(client, KEYS, max_len=100, count=counters.add)
    store.add_many(letters(90, "invalid_event"))
    store.add_many(letters(4, TOO_OLD_DURING_OUTAGE))
    report, _ = Monitor.from_settings(settings).compute()
    codes = {check["code"]: check for check in report["checks"]}
    assert codes["dead_letter_store"]["severity"] == "degraded"
    assert "90 dead letters kept of at most 100" in codes["dead_letter_store"]["message"]
    assert "4 events waited longer than MAX_EVENT_AGE" in codes["outage_store"]["message"]
    assert "dropping" not in codes
    assert report["pipeline"]["dead_letters_stored"] == 90
    assert report["pipeline"]["outage_letters_stored"] == 4

    store.add_many(letters(30, "invalid_event", 90))
    report, _ = Monitor.from_settings(settings).compute()
    codes = {check["code"]: check for check in report["checks"]}
    assert codes["dropping"]["severity"] == "unhealthy"
    assert "20 dead letters DELETED" in codes["dropping"]["message"]
    assert report["status"] == "unhealthy"
    assert report["pipeline"]["dropped"] == 20
    assert report["pipeline"]["dropped_in_window"] == 20


class _RateLimited(http.server.BaseHTTPRequestHandler):
    """An InfluxDB front that rate-limits every write, as InfluxDB Cloud does (429)."""

    writes = 0

    def do_POST(self) -> None:
        type(self).writes += 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(429)
        self.send_header("Retry-After", "120")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        return None


def test_a_retry_after_longer_than_the_hold_hands_back_once_then_pauses(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before, the batch went back at once and was taken again at once: a tight loop."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RateLimited)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        stopping = threading.Event()
        pipeline = IngestPipeline(
            rules=Rules(),
            sink=V1Sink(f"http://127.0.0.1:{server.server_address[1]}", "home", timeout=2),
            dead_letters=lambda _: None,
            backoff=lambda: iter([0.05] * 10_000),
            hold_limit=5.0,
            stopping=stopping,
        )
        outcome = pipeline.process([message(1), message(2)])
        assert outcome.handed_back == [0, 1]
        assert outcome.retry_after == 120
        assert _RateLimited.writes == 1, "no second attempt within the hold"
        assert "InfluxDB asks to wait 120 s (Retry-After)" in caplog.text
        pacer = HandBackPacer(stopping, cap=30.0)
        pacer.record(outcome)
        assert pacer.delay() == 30, "the next take waits, up to WRITE_RETRY_MAX_DELAY"
    finally:
        server.shutdown()
        server.server_close()
