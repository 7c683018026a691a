"""Poison isolation with a real worker, and `ha-ingestor dlq list|replay|purge` run as the CLI.

A field type conflict is planted in InfluxDB (the field first written as a string); a batch with
one point that conflicts lands except that point, which becomes a dead letter with InfluxDB's
error text; once the schema is fixed, `dlq replay` sends it again and it is written.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from config.celery_app import create_app
from config.redis_keys import RedisKeys
from config.settings import load_settings
from core.line_protocol import encode_point
from core.task_message import INGEST_TASK
from core.transform import Point
from tests.helpers import InfluxDatabase, stored_arg, wait_until
from tests.processes import BIN, AppProcess, app_env, worker_argv
from workers.sinks.influx_sink import V1Sink
from workers.stores.dead_letters import DeadLetterStore

pytestmark = pytest.mark.integration

BASE_S = int(time.time()) - 3600


def event(entity_id: str, state: str, unit: str, second: int) -> dict[str, Any]:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(BASE_S + second))
    new_state = {
        "entity_id": entity_id,
        "state": state,
        "attributes": {"unit_of_measurement": unit, "friendly_name": entity_id},
        "last_updated": stamp,
        "last_changed": stamp,
    }
    return {
        "event_type": "state_changed",
        "data": {"entity_id": entity_id, "old_state": None, "new_state": new_state},
        "time_fired": stamp,
    }


def message(ev: dict[str, Any], seq: int) -> dict[str, Any]:
    return {"event": ev, "received_at": time.time(), "source": "live", "seq": seq}


def cli(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """`ha-ingestor dlq …` as a user runs it."""
    return subprocess.run(
        [str(BIN / "ha-ingestor"), "dlq", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def written(client: redis.Redis) -> int:
    return int(client.get(RedisKeys().counter("written")) or 0)


@pytest.fixture
def env(redis_url: str, influx_db: InfluxDatabase) -> dict[str, str]:
    return app_env(
        CELERY_BROKER_URL=redis_url,
        INFLUXDB_URL=influx_db.url,
        INFLUXDB_DATABASE=influx_db.name,
        BATCH_INTERVAL="1",
    )


@pytest.fixture
def worker(env: dict[str, str], tmp_path: Path) -> Iterator[AppProcess]:
    process = AppProcess("worker", worker_argv(), env, tmp_path).start()
    yield process
    process.stop()


def publish(redis_url: str, messages: list[dict[str, Any]]) -> None:
    app = create_app(load_settings(celery_broker_url=redis_url))
    with app.producer_or_acquire() as producer:
        for m in messages:
            app.send_task(INGEST_TASK, args=[m], producer=producer)


def test_a_conflicting_point_is_isolated_and_replayed_after_the_schema_is_fixed(
    redis_url: str, influx_db: InfluxDatabase, env: dict[str, str], worker: AppProcess
) -> None:
    client = redis.Redis.from_url(redis_url)
    good = [event(f"sensor.power_{i % 20}", str(i), "W", i) for i in range(199)]
    victim = event("sensor.victim", "42.5", "victim_unit", 100)
    # The conflict: `value` first written as a string in the victim's measurement and shard,
    # and its shadow field `value_float` too, so no shadow can take the victim's value.
    sink = V1Sink(influx_db.url, influx_db.name)
    victim_ns = (BASE_S + 100) * 1_000_000_000
    planted = (("value", "a string"), ("value_float", "a string"))
    sink.write([encode_point(Point("victim_unit", (("entity_id", "planted"),), planted,
                                   victim_ns - 1))])  # fmt: skip
    messages = [message(e, i) for i, e in enumerate(good)]
    messages.insert(57, message(victim, 999))
    publish(redis_url, messages)

    store = DeadLetterStore(client, RedisKeys())
    wait_until(lambda: written(client) >= 199 and store.count() >= 1, 30, 0.2,
               message="199 points written and one dead letter")  # fmt: skip
    rows = influx_db.query('SELECT * FROM "W" GROUP BY *')
    assert len(rows) == 199
    assert {int(r["value"]) for r in rows} == set(range(199))

    listed = cli(env, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [letter] = json.loads(listed.stdout)
    assert letter["reason"] == "rejected_by_influxdb"
    assert "field type conflict" in letter["error"]
    assert letter["message"]["seq"] == 999
    assert letter["message"]["event"] == victim

    table = cli(env, "list")
    assert "rejected_by_influxdb" in table.stdout
    assert "sensor.victim" in table.stdout
    assert "field type conflict" in table.stdout
    assert "1 shown of 1 dead letters" in table.stdout

    # Replaying before the fix only puts it back: it is rejected again, with the same reason.
    replayed = cli(env, "replay", letter["id"])
    assert replayed.returncode == 0, replayed.stderr
    wait_until(lambda: store.count() == 1 and store.list()[0].id != letter["id"], 30, 0.2,
               message="the replayed point rejected again")  # fmt: skip
    assert store.list()[0].message["source"] == "replay"

    influx_db.query('DROP MEASUREMENT "victim_unit"')  # the fix: the string field is gone
    replayed = cli(env, "replay", "--all")
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 1 dead letters" in replayed.stdout
    found = wait_until(lambda: influx_db.query('SELECT * FROM "victim_unit"'), 30, 0.2,
                       message="the replayed point in InfluxDB")  # fmt: skip
    assert [(r["entity_id"], r["value"], r["time"]) for r in found] == [("victim", 42.5, victim_ns)]
    assert store.count() == 0
    assert cli(env, "list").stdout.strip() == "no dead letters"


def seed(client: redis.Redis, n: int, reason: str) -> None:
    DeadLetterStore(client, RedisKeys()).add_many(
        [(message(event(f"sensor.s{i}", "1", "W", i), i), reason, f"error {i}") for i in range(n)]
    )


def test_list_filters_and_limits(redis_url: str, env: dict[str, str]) -> None:
    client = redis.Redis.from_url(redis_url)
    seed(client, 3, "invalid_event")
    seed(client, 2, "rejected_by_influxdb")
    only = json.loads(cli(env, "list", "--json", "--reason", "rejected_by_influxdb").stdout)
    assert [letter["reason"] for letter in only] == ["rejected_by_influxdb"] * 2
    first = json.loads(cli(env, "list", "--json", "--limit", "2").stdout)
    assert [letter["error"] for letter in first] == ["error 0", "error 1"]
    assert "2 shown of 5 dead letters" in cli(env, "list", "--limit", "2").stdout


def test_replay_by_reason_enqueues_with_source_replay(redis_url: str, env: dict[str, str]) -> None:
    client = redis.Redis.from_url(redis_url)
    seed(client, 3, "invalid_event")
    seed(client, 2, "rejected_by_influxdb")
    result = cli(env, "replay", "--all", "--reason", "rejected_by_influxdb")
    assert result.returncode == 0, result.stderr
    assert "replayed 2 dead letters" in result.stdout
    queued = [json.loads(raw) for raw in client.lrange("ha_events", 0, -1)]
    assert [q["headers"]["task"] for q in queued] == [INGEST_TASK] * 2
    args = [stored_arg(raw) for raw in client.lrange("ha_events", 0, -1)]
    assert sorted((a["source"], a["seq"]) for a in args) == [("replay", 0), ("replay", 1)]
    left = json.loads(cli(env, "list", "--json").stdout)
    assert [letter["reason"] for letter in left] == ["invalid_event"] * 3


def test_replay_says_which_ids_it_did_not_find(redis_url: str, env: dict[str, str]) -> None:
    seed(redis.Redis.from_url(redis_url), 1, "invalid_event")
    result = cli(env, "replay", "1-0")
    assert result.returncode == 1
    assert "not found" in result.stderr
    assert cli(env, "replay").returncode == 2, "neither --all nor ids"


def test_purge_asks_first(redis_url: str, env: dict[str, str]) -> None:
    client = redis.Redis.from_url(redis_url)
    seed(client, 4, "invalid_event")
    refused = cli(env, "purge", stdin="n\n")
    assert refused.returncode == 1
    assert "delete all 4 dead letters" in refused.stdout
    assert DeadLetterStore(client, RedisKeys()).count() == 4
    agreed = cli(env, "purge", stdin="y\n")
    assert agreed.returncode == 0
    assert DeadLetterStore(client, RedisKeys()).count() == 0
    seed(client, 2, "too_old_during_outage")
    # Events that waited out an outage are fine: purge leaves them for the workers to write.
    assert "no dead letters" in cli(env, "purge", "--yes").stdout
    assert DeadLetterStore(client, RedisKeys()).outage_count() == 2
    assert "2 events that waited out an InfluxDB outage" in cli(env, "list").stderr


def test_an_unreachable_redis_is_explained(env: dict[str, str]) -> None:
    from devtools.local_servers import free_port

    result = cli({**env, "CELERY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}, "list")
    assert result.returncode == 1
    assert "cannot reach Redis" in result.stderr


def test_list_warns_when_the_store_is_nearly_full(redis_url: str, env: dict[str, str]) -> None:
    seed(redis.Redis.from_url(redis_url), 95, "invalid_event")
    result = cli({**env, "DEAD_LETTERS_MAX": "100"}, "list", "--limit", "1")
    assert result.returncode == 0
    assert "warning: 95 dead letters, the most kept is 100 (DEAD_LETTERS_MAX)" in result.stderr
