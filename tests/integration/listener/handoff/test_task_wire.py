"""Messages built by core.task_message are what send_task stores, and a stock worker runs them."""

from __future__ import annotations

import base64
import json
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from celery.contrib.testing.worker import start_worker
from celery_batches import Batches, SimpleRequest

from config.broker_kind import BrokerKind
from core.task_message import INGEST_TASK, TaskWire
from listener.handoff.publisher import WireBatches, supports
from tests.helpers import stock_celery_app, stored_arg, wait_until

ORIGIN = "gen1@test"
FIXTURE = Path(__file__).resolve().parents[3] / "fixtures" / "sample_events.jsonl"

pytestmark = pytest.mark.integration


def _arg(seq: int) -> dict[str, Any]:
    """A realistic task argument, with the characters that trip encoders up."""
    return {
        "event": {
            "event_type": "state_changed",
            "data": {
                "entity_id": f"sensor.t_{seq}",
                "old_state": None,
                "new_state": {
                    "entity_id": f"sensor.t_{seq}",
                    "state": str(20 + seq / 10),
                    "attributes": {
                        "unit_of_measurement": "°C",
                        "friendly_name": 'Küche "Nord" \\ 温度 🌡',
                        "lone": "\ud800",
                        "nested": {"list": [1, 2.5, None, True], "empty": {}},
                    },
                    "last_updated": "2024-03-01T12:00:00.000001+00:00",
                },
            },
            "time_fired": "2024-03-01T12:00:00.000001+00:00",
        },
        "received_at": 1709294400.25,
        "source": "live",
        "seq": seq,
    }


def _stored(client: redis.Redis, queue: str) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in reversed(client.lrange(queue, 0, -1))]


def _body(envelope: dict[str, Any]) -> Any:
    body = base64.b64decode(envelope["body"])
    if envelope["headers"].get("compression"):
        body = zlib.decompress(body)
    return json.loads(body)


@pytest.fixture
def broker(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def test_matches_what_send_task_stores_with_zlib_and_leaner_headers(
    redis_url: str, broker: redis.Redis
) -> None:
    app = stock_celery_app(redis_url, "wire_test")
    app.send_task(INGEST_TASK, args=[_arg(1)], queue="by_celery", compression="zlib")
    broker.lpush("by_wire", TaskWire(INGEST_TASK, "by_wire", origin=ORIGIN).encode(_arg(1)))
    (celery_msg,) = _stored(broker, "by_celery")
    (wire_msg,) = _stored(broker, "by_wire")

    assert _body(wire_msg) == _body(celery_msg)
    assert wire_msg.keys() == celery_msg.keys()
    for key in ("content-encoding", "content-type"):
        assert wire_msg[key] == celery_msg[key]
    headers, celery_headers = wire_msg["headers"], celery_msg["headers"]
    assert headers.keys() < celery_headers.keys(), "a subset of Celery's own headers"
    assert headers["task"] == celery_headers["task"]
    assert celery_headers["compression"] == "application/x-gzip"
    assert headers["compression"] == "zlib", "kombu's alias of application/x-gzip"
    props, celery_props = wire_msg["properties"], celery_msg["properties"]
    assert props.keys() < celery_props.keys()
    assert props["delivery_info"] == {"exchange": "", "routing_key": "by_wire"}
    assert props["body_encoding"] == celery_props["body_encoding"]


def test_a_realistic_event_costs_redis_under_1_kb(broker: redis.Redis) -> None:
    """MEMORY USAGE of a queue of fixture events (real HA 2024.3 frames) per event."""
    wire = TaskWire(INGEST_TASK, "sized", origin=ORIGIN)
    events = [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]
    n = 2000
    broker.delete("sized")
    for i in range(n):
        frame = events[i % len(events)]
        arg = {"event": frame.get("event", frame), "received_at": 1.5e9 + i, "source": "live",
               "seq": 1_000_000 + i}  # fmt: skip
        broker.lpush("sized", wire.encode(arg))
    per_event = int(broker.memory_usage("sized", samples=0) or 0) / n
    broker.delete("sized")
    print(f"\nFIGURES Redis bytes per waiting fixture event: {per_event:.0f}")
    assert per_event <= 1024


def test_ids_are_unique_uuids(redis_url: str) -> None:
    wire = TaskWire(INGEST_TASK, "q", origin=ORIGIN)
    envelopes = [json.loads(raw) for raw in (wire.encode(_arg(i)) for i in range(1000))]
    ids = {e["headers"]["id"] for e in envelopes}
    tags = {e["properties"]["delivery_tag"] for e in envelopes}
    assert len(ids) == len(tags) == 1000
    import uuid

    for task_id in list(ids)[:20]:
        assert str(uuid.UUID(task_id)) == task_id


def test_only_plain_redis_brokers_take_the_fast_path() -> None:
    assert supports(BrokerKind.REDIS, {"visibility_timeout": 10})
    assert not supports(BrokerKind.AMQP)
    assert not supports(BrokerKind.REDIS, {"global_keyprefix": "x:"})


def test_a_stock_worker_runs_every_message_in_order(redis_url: str, broker: redis.Redis) -> None:
    app = stock_celery_app(redis_url, "wire_test")
    seen: list[Any] = []

    # shared=False: a shared task of the same name from another test's app would win.
    @app.task(name=INGEST_TASK, acks_late=True, shared=False)  # type: ignore[untyped-decorator]
    def ingest(message: Any) -> None:
        seen.append(message)

    assert not isinstance(ingest, Batches)
    sent = [_arg(i) for i in range(300)]
    wire = TaskWire(INGEST_TASK, "wire_plain", origin=ORIGIN)
    broker.lpush("wire_plain", *[wire.encode(arg) for arg in sent])
    with start_worker(
        app, pool="solo", perform_ping_check=False, queues=["wire_plain"], loglevel="WARNING"
    ):
        wait_until(lambda: len(seen) >= len(sent), 30, message="the worker ran every task")
    assert seen == sent
    assert broker.llen("wire_plain") == 0


def test_a_celery_batches_worker_runs_them(redis_url: str, broker: redis.Redis) -> None:
    app = stock_celery_app(redis_url, "wire_test")
    seen: list[Any] = []
    lock = threading.Lock()

    @app.task(  # type: ignore[untyped-decorator]
        base=Batches,
        name=INGEST_TASK,
        flush_every=100,
        flush_interval=0.2,
        acks_late=True,
        shared=False,
    )
    def ingest(requests: list[SimpleRequest]) -> None:
        with lock:
            seen.extend(request.args[0] for request in requests)

    assert isinstance(ingest, Batches)

    sent = [_arg(i) for i in range(300)]  # whole batches: no reliance on the flush timer
    wire = TaskWire(INGEST_TASK, "wire_batches", origin=ORIGIN)
    broker.lpush("wire_batches", *[wire.encode(arg) for arg in sent])
    with start_worker(
        app, pool="solo", perform_ping_check=False, queues=["wire_batches"], loglevel="WARNING"
    ):
        wait_until(
            lambda: len(seen) >= len(sent), 30, message=f"the batches ran every task ({len(seen)})"
        )
    assert seen == sent


def test_body_then_wrap_is_encode_and_a_stored_message_is_pushed_as_it_is(
    redis_url: str, broker: redis.Redis
) -> None:
    """The listener renders the body on its loop and wraps it on its publisher thread
    (the bulk take's lean messages): both halves make the message encode makes; a stored message (a
    spool row) is pushed unchanged, by its own call: nothing inspects bytes to tell the two
    apart."""
    wire = TaskWire(INGEST_TASK, "halves", origin=ORIGIN)
    body = wire.body(_arg(5))
    assert body.startswith(b"[[")
    message = wire.wrap(body)
    stored = json.loads(message)
    assert stored["headers"]["compression"] == "zlib"
    args, _, _ = json.loads(zlib.decompress(base64.b64decode(stored["body"])))
    assert args == [_arg(5)]
    batches = WireBatches(redis_url, "halves")
    broker.delete("halves")
    batches.publish_spooled([batches.from_spool(message)])
    batches.publish([batches.prepare(_arg(6))])
    first, second = reversed(broker.lrange("halves", 0, -1))
    assert first == message
    assert stored_arg(second) == _arg(6)


def test_the_body_is_the_one_serialisation_of_the_event() -> None:
    """The event's JSON appears once, verbatim, in the body: nothing parses it again."""
    wire = TaskWire(INGEST_TASK, "once", origin=ORIGIN, compress=False)
    arg = _arg(7)
    del arg["event"]["data"]["new_state"]["attributes"]["lone"]  # orjson writes the rest
    body = wire.body(arg)
    assert body.startswith(b"[[" + orjson.dumps(arg) + b"],{},")
    stored = json.loads(wire.wrap(body))
    assert base64.b64decode(stored["body"]) == body, "uncompressed: the body as rendered"
