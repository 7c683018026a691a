"""The InfluxDB 3 sink against the stand-in (devtools/influxdb3/): points read back through
query_sql; a partial write names exactly the refused lines, the pipeline dead-letters those and
sends no stored line again; type clashes go to shadow fields; a refused token or an absent server
is SinkUnavailable saying what to fix, never showing the token."""

from __future__ import annotations

import json
import socket
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlencode

import pytest
import urllib3

from core.rules import Rules
from devtools.influxdb3 import InfluxDB3Server
from workers.pipeline import BatchOutcome, IngestPipeline
from workers.sinks.errors import PartiallyWritten, SinkUnavailable
from workers.sinks.field_types import FieldTypeCache
from workers.sinks.influxdb3_sink import InfluxDB3Sink

pytestmark = pytest.mark.integration

T0 = 1_764_195_803_441_045_000  # 2025-11-26T22:23:23.441045Z, in ns
CONFLICT = (
    "invalid column type for column 'value', expected iox::column_type::field::string, "
    "got iox::column_type::field::float"
)
http = urllib3.PoolManager(retries=False, timeout=5)


def rows(server: InfluxDB3Server, db: str, sql: str) -> list[dict[str, Any]]:
    """Read back through the stand-in's query_sql (json rows)."""
    answer = http.request(
        "GET",
        f"{server.url}/api/v3/query_sql?{urlencode({'db': db, 'q': sql, 'format': 'json'})}",
        headers={"Authorization": f"Bearer {server.token}"},
    )
    assert answer.status == 200, answer.data
    result: list[dict[str, Any]] = json.loads(answer.data)
    return result


def assert_secret_free(exc: BaseException, secret: str) -> None:
    assert secret not in str(exc)
    assert secret not in repr(exc)
    if exc.__cause__ is not None:
        assert secret not in str(exc.__cause__)


@pytest.fixture
def db() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def sink(influxdb3_server: InfluxDB3Server, db: str) -> Iterator[InfluxDB3Sink]:
    assert influxdb3_server.token is not None
    made = InfluxDB3Sink(influxdb3_server.url, token=influxdb3_server.token, database=db)
    yield made
    made.close()


class Recording:
    """The real sink, keeping every request's lines: what was sent, not what was stored. Lines
    starting with `spoil` lose their fields on the way, a line the server cannot parse (our own
    encoder never writes one)."""

    def __init__(self, sink: InfluxDB3Sink, spoil: str | None = None) -> None:
        self.sink = sink
        self.spoil = spoil
        self.precision = sink.precision
        self.requests: list[list[str]] = []

    @property
    def target(self) -> str:
        return self.sink.target

    def write(self, lines: Sequence[str]) -> None:
        self.requests.append(list(lines))
        spoil = self.spoil
        sent = [line.split(" ")[0] if spoil and line.startswith(spoil) else line for line in lines]
        self.sink.write(sent)

    def probe(self, *, timeout: float | None = None) -> None:
        return None

    def close(self) -> None:
        self.sink.close()


def message(seq: int, entity_id: str, state: str = "1") -> dict[str, Any]:
    new_state = {
        "entity_id": entity_id,
        "state": state,
        "attributes": {},
        "last_updated": "2026-11-26T22:23:23.441045+00:00",
    }
    event = {
        "event_type": "state_changed",
        "data": {"entity_id": entity_id, "new_state": new_state},
    }
    return {"event": event, "received_at": 1.0e12, "source": "live", "seq": seq}


def test_a_batch_is_read_back_as_written(
    sink: InfluxDB3Sink, influxdb3_server: InfluxDB3Server, db: str
) -> None:
    sink.write(
        [
            f"°C,entity_id=kitchen,domain=sensor value=21.5 {T0}",
            f'°C,entity_id=hall,domain=sensor value=19.0,state="19" {T0 + 1000}',
        ]
    )

    assert rows(influxdb3_server, db, 'SELECT entity_id, value, state FROM "°C" ORDER BY time') == [
        {"entity_id": "kitchen", "value": 21.5},
        {"entity_id": "hall", "value": 19.0, "state": "19"},
    ]


@pytest.mark.parametrize(("precision", "stamp"), [("s", T0 // 10**9), ("ms", T0 // 10**6)])
def test_the_precision_is_sent_by_its_long_name(
    influxdb3_server: InfluxDB3Server, db: str, precision: str, stamp: int
) -> None:
    assert influxdb3_server.token is not None
    sink = InfluxDB3Sink(
        influxdb3_server.url, token=influxdb3_server.token, database=db, precision=precision
    )
    sink.write([f"m,entity_id=x value=1 {stamp}"])
    sink.close()

    [row] = rows(influxdb3_server, db, "SELECT time FROM m")
    assert row["time"].startswith("2025-11-26T22:23:23")


def test_a_partial_write_names_exactly_the_refused_lines(
    sink: InfluxDB3Sink, influxdb3_server: InfluxDB3Server, db: str
) -> None:
    sink.write([f'sensor.x,entity_id=a value="text" {T0}'])  # `value` is now a string column

    with pytest.raises(PartiallyWritten) as caught:
        sink.write(
            [
                f"sensor.x,entity_id=b state=1.0 {T0}",
                f"sensor.x,entity_id=c value=2.0 {T0}",
                f"sensor.x,entity_id=d state=3.0 {T0}",
                f"sensor.x,entity_id=e {T0}",
            ]
        )

    assert set(caught.value.refused) == {1, 3}
    assert caught.value.refused[1] == CONFLICT
    [[count]] = [
        list(r.values()) for r in rows(influxdb3_server, db, "SELECT count(*) FROM sensor.x")
    ]
    assert count == 3  # a, b, d


def test_the_pipeline_dead_letters_the_refused_and_sends_the_stored_once(
    sink: InfluxDB3Sink, influxdb3_server: InfluxDB3Server, db: str
) -> None:
    sink.write([f'sensor.clash,entity_id=clash value="text" {T0}'])
    recording = Recording(sink, spoil="sensor.spoilt,")
    letters: list[tuple[Any, str, str]] = []
    pipeline = IngestPipeline(rules=Rules(), sink=recording, dead_letters=letters.extend)
    batch = [
        message(0, "sensor.a"),
        message(1, "sensor.clash"),
        message(2, "sensor.spoilt"),
        message(3, "sensor.b"),
    ]

    outcome = pipeline.process(batch)

    assert outcome == BatchOutcome(
        written=2, write_errors=1, dead_lettered=Counter(rejected_by_influxdb=2)
    )
    assert [(m, reason) for m, reason, _ in letters] == [
        (batch[1], "rejected_by_influxdb"),
        (batch[2], "rejected_by_influxdb"),
    ]
    assert letters[0][2] == CONFLICT
    assert letters[1][2]  # the server's own words for a line without fields
    assert [len(request) for request in recording.requests] == [4]
    assert rows(influxdb3_server, db, 'SELECT entity_id, value FROM "sensor.a"') == [
        {"entity_id": "a", "value": 1.0}
    ]
    assert len(rows(influxdb3_server, db, 'SELECT * FROM "sensor.b"')) == 1


def test_a_type_clash_goes_to_the_shadow_field(
    sink: InfluxDB3Sink, influxdb3_server: InfluxDB3Server, db: str
) -> None:
    sink.write([f'sensor.clash,entity_id=clash value="text" {T0 - 1000}'])
    recording = Recording(sink)
    letters: list[tuple[Any, str, str]] = []
    pipeline = IngestPipeline(
        rules=Rules(),
        sink=recording,
        dead_letters=letters.extend,
        field_types=FieldTypeCache(),
    )

    outcome = pipeline.process([message(0, "sensor.a"), message(1, "sensor.clash", "2.5")])

    assert outcome == BatchOutcome(written=2, write_errors=1, type_shadowed=1)
    assert letters == []
    assert [len(request) for request in recording.requests] == [2, 1]
    assert rows(
        influxdb3_server, db, 'SELECT value, value_float FROM "sensor.clash" ORDER BY time'
    ) == [{"value": "text"}, {"value_float": 2.5}]


def test_a_wrong_token_is_unavailable_saying_which_setting_and_never_the_token(
    influxdb3_server: InfluxDB3Server, db: str
) -> None:
    wrong = "wrong-secret-token-98765"
    sink = InfluxDB3Sink(influxdb3_server.url, token=wrong, database=db)

    with pytest.raises(SinkUnavailable) as caught:
        sink.write([f"m value=1 {T0}"])
    refusal = sink.probe()
    sink.close()

    assert caught.value.status == 401
    assert "INFLUXDB_TOKEN" in str(caught.value)
    assert_secret_free(caught.value, wrong)
    assert refusal is not None
    assert "INFLUXDB_TOKEN" in refusal.fix
    assert wrong not in str(refusal)


def test_the_probe_accepts_the_right_token(sink: InfluxDB3Sink) -> None:
    assert sink.probe() is None


def test_an_absent_server_is_unavailable_saying_to_check_the_url(db: str) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    sink = InfluxDB3Sink(f"http://127.0.0.1:{port}", token="secret-abc-123", database=db)

    with pytest.raises(SinkUnavailable) as caught:
        sink.write([f"m value=1 {T0}"])
    sink.close()

    assert "INFLUXDB_URL" in str(caught.value)
    assert caught.value.status is None
    assert_secret_free(caught.value, "secret-abc-123")


def test_a_partial_write_survives_pickling() -> None:
    """Celery may serialise the exception: the refused indexes and texts come back whole."""
    import pickle

    partial = pickle.loads(pickle.dumps(PartiallyWritten({1: CONFLICT, 3: "No fields"})))
    assert partial.refused == {1: CONFLICT, 3: "No fields"}
    assert str(partial).startswith("InfluxDB stored the batch except 2 refused point(s): #1: ")
