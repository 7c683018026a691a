"""The workers' bulk taker on Redis: takes in bulk, finishes per batch, loses nothing.

Real Redis (the session server, or one of the test's own with a small maxmemory), real worker
processes writing to a real InfluxDB.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from config.redis_keys import broker_alive, broker_consumers, broker_inflight
from core.task_message import INGEST_TASK, TaskWire, Undecodable, decode_stored
from devtools.local_servers import RedisServer
from tests.expectations import expected_points, points_in_influx, state_events
from tests.helpers import InfluxDatabase, stored_arg, wait_until
from tests.processes import AppProcess, app_env, worker_argv
from workers.consumers.bulk_queue import (
    BulkQueue,
    given_back,
    in_flight,
    sweep,
    too_old_for_bulk_take,
)

pytestmark = pytest.mark.integration

QUEUE = "ha_events"


def _arg(seq: int, entity: str = "sensor.bulk") -> dict[str, Any]:
    state = {"entity_id": f"{entity}_{seq % 50}", "state": str(seq), "attributes": {},
             "last_updated": 1_780_000_000 + seq}  # fmt: skip
    return {"event": state_events([state])[0], "received_at": time.time(), "source": "live",
            "seq": seq}  # fmt: skip


def _wire() -> TaskWire:
    return TaskWire(INGEST_TASK, QUEUE, origin="gen1@test")


def _fill(client: redis.Redis, seqs: range) -> list[dict[str, Any]]:
    wire = _wire()
    args = [_arg(seq) for seq in seqs]
    client.lpush(QUEUE, *[wire.encode(arg) for arg in args])  # oldest at the right end
    return args


def _seqs(raws: list[Any]) -> list[int]:
    return [stored_arg(raw)["seq"] for raw in raws]


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def test_takes_in_bulk_oldest_first_and_finishes_in_one_call(client: redis.Redis) -> None:
    _fill(client, range(250))
    queue = BulkQueue(client, QUEUE, "c1", ttl=20)
    queue.renew()
    batch = queue.take(100)
    assert _seqs(batch) == list(range(100))
    assert client.llen(broker_inflight("c1")) == 100
    queue.finish(give_back=batch[:3])
    assert client.llen(broker_inflight("c1")) == 0
    assert client.llen(QUEUE) == 153, "147 waiting + 3 given back to the tail"
    assert _seqs(client.lrange(QUEUE, 0, 2)) == [2, 1, 0], "taken from the right: 0, 1, 2"


def test_a_lost_reply_strands_nothing_the_next_take_returns_it(client: redis.Redis) -> None:
    """A take (or BLMOVE) whose reply a broken connection lost left messages in the in-flight
    list of a live consumer: the next take hands them over first."""
    _fill(client, range(10))
    queue = BulkQueue(client, QUEUE, "c2", ttl=20)
    queue.take(4)  # reply "lost": never processed
    assert queue.wait(0.1)  # a BLMOVE whose reply is lost too
    batch = queue.take(8)
    assert _seqs(batch) == list(range(8)), "the stranded five first, then three more"


def test_a_silent_consumers_messages_go_back_to_the_head_in_order(client: redis.Redis) -> None:
    _fill(client, range(20))
    dead = BulkQueue(client, QUEUE, "dead", ttl=20)
    alive = BulkQueue(client, QUEUE, "alive", ttl=20)
    dead.renew()
    alive.renew()
    dead.take(5)
    alive.take(5)
    before = given_back(client)
    assert sweep(client) == {}, "both alive: nothing moves"
    client.delete(broker_alive("dead"))  # its TTL ran out
    assert sweep(client) == {"dead": 5}
    assert in_flight(client) == {"alive": 5}
    assert given_back(client) - before == 5
    assert _seqs(BulkQueue(client, QUEUE, "next", ttl=20).take(5)) == [0, 1, 2, 3, 4]
    assert not client.hexists(broker_consumers(), "dead")


def test_undecodable_and_foreign_messages_decode_to_their_reason() -> None:
    good = _wire().encode(_arg(1))
    foreign = TaskWire("other.task", QUEUE, origin="x").encode(_arg(2))
    out = [decode_stored(raw) for raw in (good, b"not json", foreign)]
    assert stored_arg(good)["seq"] == 1
    assert out[0] == stored_arg(good)
    assert isinstance(out[1], Undecodable)
    assert out[1].reason.startswith("not JSON: ")
    assert isinstance(out[2], Undecodable)
    assert out[2].reason == "a 'other.task' task in the ingest queue"


def test_a_full_redis_still_takes_finishes_renews_and_sweeps(tmp_path: Path) -> None:
    """maxmemory with noeviction refuses LPUSH, SET, BLMOVE; the take path uses none of them
    outside scripts declared allow-oom, so a full broker drains."""
    server = RedisServer(tmp_path / "redis", extra_args=["--maxmemory", "3mb",
                         "--maxmemory-policy", "noeviction"])  # fmt: skip
    server.start()
    try:
        full = redis.Redis.from_url(server.url)
        wire = _wire()
        seq = 0
        for chunk in (100, 1):  # the big LPUSH's own buffer counts too: top up one by one
            try:
                while True:
                    full.lpush(QUEUE, *[wire.encode(_arg(s)) for s in range(seq, seq + chunk)])
                    seq += chunk
            except redis.exceptions.OutOfMemoryError:
                pass
        waiting = int(full.llen(QUEUE))
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            full.set("probe", "x")
        queue = BulkQueue(full, QUEUE, "oom", ttl=20)
        queue.renew()
        other = BulkQueue(full, QUEUE, "oom-dead", ttl=20)
        other.renew()
        other.take(10)
        full.delete(broker_alive("oom-dead"))
        assert sweep(full, skip="oom") == {"oom-dead": 10}
        taken = 0
        while batch := queue.take(500):
            queue.finish(give_back=[])
            taken += len(batch)
        assert taken == waiting
        print(f"\nFIGURES full Redis (maxmemory 3 MB, noeviction): {waiting} waiting messages "
              f"taken and finished in bulk, 10 swept back, none refused")  # fmt: skip
        assert not queue.wait(0.05), "BLMOVE on an empty queue: refused or timed out, no error"
    finally:
        server.stop()


def test_a_worker_drains_the_queue_in_bulk_into_influxdb(
    redis_url: str, influx_db: InfluxDatabase, tmp_path: Path, client: redis.Redis
) -> None:
    args = _fill(client, range(3000))
    env = app_env(CELERY_BROKER_URL=redis_url, INFLUXDB_URL=influx_db.url,
                  INFLUXDB_DATABASE=influx_db.name)  # fmt: skip
    worker = AppProcess("worker", worker_argv(), env, tmp_path).start()
    try:
        started = time.monotonic()
        expected = expected_points([a["event"] for a in args])
        wait_until(lambda: points_in_influx(influx_db).keys() >= expected.keys(), 60, 0.2,
                   message="every point in InfluxDB")  # fmt: skip
        elapsed = time.monotonic() - started
        wait_until(lambda: not any(in_flight(client).values()), 10, 0.1,
                   message="nothing left in flight")  # fmt: skip
        assert client.llen(QUEUE) == 0
        assert not client.hlen("unacked"), "kombu's per-message bookkeeping is not used"
        log = worker.log_text()
        assert "takes ha_events from Redis, up to 1000 messages per round trip" in log
        print(f"\nFIGURES bulk worker: 3000 messages, {len(expected)} points found "
              f"{elapsed:.1f} s after the worker was started")  # fmt: skip
    finally:
        assert worker.stop() == 0
    assert in_flight(client) == {}, "the stopped worker retired its consumer entry"
    assert not client.keys(b"_ha_ingestor.alive.*")


def test_sigkill_gives_back_within_the_liveness_timeout(
    redis_url: str, tmp_path: Path, client: redis.Redis
) -> None:
    """Lowered values: liveness 2 s. InfluxDB unreachable, so the worker holds its batch."""
    _fill(client, range(500))
    env = app_env(CELERY_BROKER_URL=redis_url, INFLUXDB_URL="http://127.0.0.1:9",
                  WORKER_LIVENESS_TIMEOUT="2", BATCH_SIZE="200")  # fmt: skip
    worker = AppProcess("worker", worker_argv(), env, tmp_path).start()
    try:
        wait_until(lambda: sum(in_flight(client).values()) == 200, 30, 0.05,
                   message="the worker holding a batch")  # fmt: skip
        os.kill(worker.pid, signal.SIGKILL)
        killed = time.monotonic()
        sweeper = BulkQueue(client, QUEUE, "sweeper", ttl=2)
        wait_until(lambda: sweep(client, skip="sweeper") or client.llen(QUEUE) == 500, 10, 0.1,
                   message="the killed worker's batch back in the queue")  # fmt: skip
        back = time.monotonic() - killed
        assert client.llen(QUEUE) == 500
        assert _seqs(sweeper.take(3)) == [0, 1, 2], "back at the head, oldest first"
        print(f"\nFIGURES SIGKILL, liveness 2 s: 200 taken messages back in the queue "
              f"{back:.1f} s after the kill")  # fmt: skip
        assert back < 2 + 1
    finally:
        worker.stop()


def test_decoded_messages_match_what_was_sent(client: redis.Redis) -> None:
    args = _fill(client, range(5))
    queue = BulkQueue(client, QUEUE, "c3", ttl=20)
    assert [stored_arg(raw) for raw in queue.take(5)] == json.loads(json.dumps(args))


def test_a_batch_filling_up_gets_only_what_it_does_not_hold(client: redis.Redis) -> None:
    """At a live rate a batch fills over many takes: each returns only the new messages (the
    whole in-flight list each time was quadratic), and a BLMOVE's message comes with the next."""
    _fill(client, range(10))
    queue = BulkQueue(client, QUEUE, "filling", ttl=20)
    batch = queue.take(4)
    assert _seqs(batch) == [0, 1, 2, 3]
    batch += queue.take(6, have=len(batch))
    assert _seqs(batch) == [0, 1, 2, 3, 4, 5]
    assert queue.wait(0.1)  # moved 6 into the in-flight list
    batch += queue.take(8, have=len(batch))
    assert _seqs(batch) == list(range(8))
    assert client.llen(broker_inflight("filling")) == 8


@pytest.mark.parametrize(
    ("version", "supported"),
    [("7.0.15", True), ("7.2.4", True), ("8.0.0", True), ("6.2.14", False), ("5.0.7", False)],
)
def test_the_bulk_take_needs_redis_7_for_its_script_flags(version: str, supported: bool) -> None:
    problem = too_old_for_bulk_take({"redis_version": version})
    assert (problem is None) is supported
    if problem is not None:
        detail, fix = problem
        assert f"runs Redis {version}" in detail
        assert "needs Redis 7.0 or newer" in detail
        assert "Upgrade the broker's Redis" in fix
        assert "WORKER_BULK_TAKE=false" in fix


def test_the_bulk_takes_scripts_run_on_this_redis(client: redis.Redis) -> None:
    """The test servers are Debian's Redis 7: the flags line is understood, not a syntax error."""
    assert too_old_for_bulk_take(client.info("server")) is None
    queue = BulkQueue(client, "flags_q", "consumer-flags", ttl=5)
    client.lpush("flags_q", b"m")
    assert queue.take(10) == [b"m"]
