"""`ha-ingestor dlq --destination` with several destinations: letters labelled by destination, a
destination's replay written to it alone (through its backlog), the shared letters through the
broker, purge of one destination only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from config.redis_keys import RedisKeys
from tests.helpers import InfluxDatabase, Victoria, stored_arg, wait_until
from tests.integration.workers.commands.test_dlq_command import cli, event, message
from tests.processes import AppProcess, app_env, worker_argv
from workers.stores.backlog import Backlog
from workers.stores.dead_letters import DeadLetterStore

pytestmark = pytest.mark.integration

ARCHIVE = RedisKeys().for_destination("archive")


@pytest.fixture
def env(
    redis_url: str, influx_db: InfluxDatabase, victoria: Victoria, tmp_path: Path
) -> dict[str, str]:
    config = tmp_path / "ha-ingestor.yaml"
    config.write_text(
        "destinations:\n"
        "  - name: default\n"
        "  - name: archive\n"
        "    kind: victoriametrics\n"
        f"    url: {victoria.url}\n",
        encoding="utf-8",
    )
    return app_env(
        CELERY_BROKER_URL=redis_url,
        INFLUXDB_URL=influx_db.url,
        INFLUXDB_DATABASE=influx_db.name,
        HA_INGESTOR_CONFIG=str(config),
        BATCH_INTERVAL="1",
    )


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


def seed(client: redis.Redis) -> None:
    """Two letters of default, two of archive, one no destination could read."""
    default, archive = DeadLetterStore(client, RedisKeys()), DeadLetterStore(client, ARCHIVE)
    default.add_many(
        [(message(event(f"sensor.d{i}", "1", "W", i), i), "rejected_by_influxdb", "d")
         for i in range(2)]
    )  # fmt: skip
    archive.add_many(
        [(message(event(f"sensor.a{i}", str(10 + i), "kWh", i), 10 + i), "rejected_by_influxdb",
          "a") for i in range(2)]
    )  # fmt: skip
    default.add_many([({"not": "a task"}, "invalid_event", "no event")])


def listed(env: dict[str, str], *args: str) -> list[tuple[str, str]]:
    result = cli(env, "list", "--json", *args)
    assert result.returncode == 0, result.stderr
    return [(row["destination"], row["reason"]) for row in json.loads(result.stdout)]


def test_list_labels_every_destinations_letters_and_one_destination_alone(
    env: dict[str, str], client: redis.Redis
) -> None:
    seed(client)
    assert sorted(listed(env)) == [
        ("*", "invalid_event"),
        ("archive", "rejected_by_influxdb"),
        ("archive", "rejected_by_influxdb"),
        ("default", "rejected_by_influxdb"),
        ("default", "rejected_by_influxdb"),
    ]
    assert listed(env, "--destination", "archive") == [("archive", "rejected_by_influxdb")] * 2
    assert listed(env, "--destination", "default") == [("default", "rejected_by_influxdb")] * 2
    table = cli(env, "list").stdout
    assert "DESTINATION" in table
    assert "sensor.a1" in table
    assert "5 shown of 5 dead letters" in table
    assert "*: no destination could read these; a replay sends them to every one" in table
    assert "2 shown of 5 dead letters" in cli(env, "list", "--limit", "2").stdout


def test_an_unknown_destination_is_refused_with_the_configured_names(
    env: dict[str, str], client: redis.Redis
) -> None:
    seed(client)
    for action in (["list"], ["replay", "--all"], ["purge", "--yes"]):
        result = cli(env, *action, "--destination", "archiv")
        assert result.returncode == 2
        assert "no destination named 'archiv': the configured ones are default, archive" in (
            result.stderr
        )
        assert "give one of them to --destination" in result.stderr
    assert DeadLetterStore(client, ARCHIVE).count() == 2


def test_replay_of_one_destination_goes_to_its_backlog_and_is_written_there_alone(
    env: dict[str, str],
    client: redis.Redis,
    influx_db: InfluxDatabase,
    victoria: Victoria,
    tmp_path: Path,
) -> None:
    seed(client)
    result = cli(env, "replay", "--all", "--destination", "archive")
    assert result.returncode == 0, result.stderr
    assert "replayed 2 dead letters" in result.stdout
    assert "2 into the backlog of archive" in result.stdout
    assert client.llen("ha_events") == 0, "nothing through the broker: default must not get it"
    chunk = Backlog(client, ARCHIVE).oldest()
    assert chunk is not None
    assert [(m["source"], m["seq"]) for m in chunk.messages] == [("replay", 10), ("replay", 11)]
    assert DeadLetterStore(client, ARCHIVE).count() == 0
    assert DeadLetterStore(client, RedisKeys()).count() == 3, "default's and the shared untouched"

    worker = AppProcess("worker", worker_argv(), env, tmp_path).start()
    try:
        wait_until(lambda: Backlog(client, ARCHIVE).events() == 0, 30, 0.2,
                   message="the drainer wrote archive's backlog")  # fmt: skip
        series = wait_until(lambda: victoria.export('{__name__="kWh_value"}'), 30, 0.2,
                            message="the replayed points in VictoriaMetrics")  # fmt: skip
    finally:
        worker.stop()
    assert sorted(s["metric"]["entity_id"] for s in series) == ["a0", "a1"]
    assert influx_db.query("SHOW MEASUREMENTS") == [], "default got nothing"


def test_replay_without_destination_sends_each_where_it_belongs(
    env: dict[str, str], client: redis.Redis
) -> None:
    seed(client)
    result = cli(env, "replay", "--all")
    assert result.returncode == 0, result.stderr
    assert "replayed 5 dead letters" in result.stdout
    assert "2 into the backlog of default" in result.stdout
    assert "2 into the backlog of archive" in result.stdout
    assert "1 through the broker, to every destination" in result.stdout
    assert Backlog(client, RedisKeys()).events() == 2
    assert Backlog(client, ARCHIVE).events() == 2
    assert [stored_arg(raw) for raw in client.lrange("ha_events", 0, -1)] == [{"not": "a task"}]
    assert listed(env) == []


def test_replay_by_id_takes_the_letter_of_the_destination_named(
    env: dict[str, str], client: redis.Redis
) -> None:
    archive = DeadLetterStore(client, ARCHIVE)
    archive.add_many([(message(event("sensor.a", "1", "kWh", 1), 1), "rejected_by_influxdb", "a")])
    [letter] = archive.list()
    # Each store numbers its letters by time: the same id can name a letter of default too.
    client.xadd(RedisKeys().dead_letters(), {"reason": "rejected_by_influxdb", "error": "d",
                "message": json.dumps(message(event("sensor.d", "1", "W", 1), 2)), "at": "0"},
                id=letter.id)  # fmt: skip
    ambiguous = cli(env, "replay", letter.id)
    assert ambiguous.returncode == 2
    assert f"{letter.id} (default, archive)" in ambiguous.stderr
    assert "give --destination NAME" in ambiguous.stderr
    assert len(listed(env)) == 2, "nothing replayed"
    result = cli(env, "replay", letter.id, "--destination", "archive")
    assert result.returncode == 0, result.stderr
    assert Backlog(client, ARCHIVE).events() == 1
    assert Backlog(client, RedisKeys()).events() == 0
    assert listed(env) == [("default", "rejected_by_influxdb")]


def test_purge_of_one_destination_leaves_the_others(
    env: dict[str, str], client: redis.Redis
) -> None:
    seed(client)
    asked = cli(env, "purge", stdin="n\n")
    assert "delete all 5 dead letters (default: 2, archive: 2, *: 1) for good?" in asked.stdout
    assert cli(env, "purge", "--yes", "--destination", "default").returncode == 0
    assert sorted(listed(env)) == [
        ("*", "invalid_event"),
        ("archive", "rejected_by_influxdb"),
        ("archive", "rejected_by_influxdb"),
    ]
    result = cli(env, "purge", "--yes")
    assert "deleted 3 dead letters" in result.stdout
    assert listed(env) == []
