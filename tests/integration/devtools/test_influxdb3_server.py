"""The InfluxDB 3 stand-in answers as the documented API does: the documented exchanges kept in
tests/fixtures/influxdb3/ are replayed against it, then its write, query and auth rules."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import urllib3

from devtools.influxdb3 import InfluxDB3Server

pytestmark = pytest.mark.integration

http = urllib3.PoolManager(retries=False, timeout=5)
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "influxdb3"
CONFLICT = (
    "invalid column type for column '{column}', expected iox::column_type::field::{held}, "
    "got iox::column_type::field::{got}"
)


def _request(server: InfluxDB3Server, request: dict[str, Any]) -> urllib3.BaseHTTPResponse:
    """Send a fixture's request; `auth` absent means the server's token, None means none."""
    headers = {}
    auth = request.get("auth", "Bearer {token}")
    if auth is not None:
        headers["Authorization"] = auth.format(token=server.token)
    body = request.get("body")
    return http.request(
        request["method"],
        server.url + request["path"],
        body=body.encode() if body is not None else None,
        headers=headers,
    )


def _check(answer: urllib3.BaseHTTPResponse, expected: dict[str, Any], what: str) -> None:
    """Compare an answer with a documented response: status, then body and headers."""
    assert answer.status == expected["status"], (what, answer.data)
    if "json" in expected:
        assert json.loads(answer.data) == expected["json"], what
    if "text" in expected:
        assert answer.data.decode() == expected["text"], what
    if "json_keys" in expected:
        assert sorted(json.loads(answer.data)) == expected["json_keys"], what
    for header in expected.get("headers", []):
        assert answer.headers.get(header), (what, header)


@pytest.fixture
def fresh() -> Iterator[InfluxDB3Server]:
    """A server of the test's own: documented exchanges name fixed databases."""
    with InfluxDB3Server() as server:
        yield server


@pytest.fixture
def db() -> str:
    """A database name of the test's own on the session server."""
    return f"t_{uuid.uuid4().hex[:12]}"


def write(server: InfluxDB3Server, db: str, body: str, **params: str) -> urllib3.BaseHTTPResponse:
    query = "&".join(f"{k}={v}" for k, v in {"db": db, **params}.items())
    return _request(server, {"method": "POST", "path": f"/api/v3/write_lp?{query}", "body": body})


def query(server: InfluxDB3Server, db: str, sql: str, fmt: str = "json") -> Any:
    path = f"/api/v3/query_sql?db={db}&q={quote(sql)}&format={fmt}"
    answer = _request(server, {"method": "GET", "path": path})
    assert answer.status == 200, answer.data
    return json.loads(answer.data) if fmt == "json" else answer.data.decode()


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.json")))
def test_documented_exchanges_are_answered_as_documented(fresh: InfluxDB3Server, name: str) -> None:
    fixture = json.loads((FIXTURES / name).read_text())
    assert fixture["source"]
    assert fixture["version"]
    for number, exchange in enumerate(fixture["exchanges"], start=1):
        _check(_request(fresh, exchange["request"]), exchange["response"], f"{name} #{number}")


def test_every_fixture_is_listed_with_its_source_in_the_readme() -> None:
    readme = (FIXTURES.parent / "README.md").read_text()
    names = sorted(p.name for p in FIXTURES.glob("*.json"))
    assert len(names) >= 8
    assert [name for name in names if f"influxdb3/{name}" not in readme] == []


def test_a_write_is_read_back_through_query_sql(influxdb3_server: InfluxDB3Server, db: str) -> None:
    answer = write(
        influxdb3_server,
        db,
        "temperature,entity_id=kitchen,domain=sensor value=21.5 1700000000000000000\n"
        "temperature,entity_id=hall,domain=sensor value=19.0 1700000001000000000",
        precision="nanosecond",
    )
    assert (answer.status, answer.data) == (204, b"")
    rows = query(influxdb3_server, db, 'SELECT * FROM "temperature" ORDER BY time')
    assert rows == [
        {"domain": "sensor", "entity_id": "kitchen", "time": "2023-11-14T22:13:20", "value": 21.5},
        {"domain": "sensor", "entity_id": "hall", "time": "2023-11-14T22:13:21", "value": 19.0},
    ]


def test_every_field_type_keeps_its_type(influxdb3_server: InfluxDB3Server, db: str) -> None:
    # Escaped space and comma in tags; an escaped quote and a comma inside a string field.
    line = (
        r'state,entity_id=door\ one,area=a\,b f=1.5,i=-3i,u=7u,s="on",'
        r'quoted="say \"hi\", ok",t=true,f2=F,big=1e3 1700000000'
    )
    assert write(influxdb3_server, db, line, precision="second").status == 204
    [row] = query(influxdb3_server, db, "SELECT * FROM state")
    assert row == {
        "area": "a,b",
        "big": 1000.0,
        "entity_id": "door one",
        "f": 1.5,
        "f2": False,
        "i": -3,
        "quoted": 'say "hi", ok',
        "s": "on",
        "t": True,
        "time": "2023-11-14T22:13:20",
        "u": 7,
    }
    # Each field's type is now fixed: an integer where a float was is refused by name.
    refused = write(influxdb3_server, db, "state f=2i 1700000001", precision="second")
    assert refused.status == 400
    [entry] = json.loads(refused.data)["data"]
    assert entry["error_message"] == CONFLICT.format(column="f", held="float", got="integer")


@pytest.mark.parametrize(
    ("precision", "stamp", "rendered"),
    [
        ("second", "1700000000", "2023-11-14T22:13:20"),
        ("millisecond", "1700000000123", "2023-11-14T22:13:20.123"),
        ("microsecond", "1700000000123456", "2023-11-14T22:13:20.123456"),
        ("nanosecond", "1700000000123456789", "2023-11-14T22:13:20.123456789"),
        ("auto", "1700000000123", "2023-11-14T22:13:20.123"),
    ],
)
def test_precision_turns_timestamps_into_the_same_instant(
    influxdb3_server: InfluxDB3Server, db: str, precision: str, stamp: str, rendered: str
) -> None:
    assert write(influxdb3_server, db, f"m v=1 {stamp}", precision=precision).status == 204
    assert query(influxdb3_server, db, "SELECT time FROM m") == [{"time": rendered}]


def test_a_short_precision_is_refused_as_the_docs_say_the_server_does(
    influxdb3_server: InfluxDB3Server, db: str
) -> None:
    answer = write(influxdb3_server, db, "m v=1 1", precision="ns")
    assert answer.status == 400
    assert answer.data.decode().startswith("serde error: unknown variant `ns`")


def test_a_partial_write_stores_the_good_lines_and_names_the_two_refused(
    influxdb3_server: InfluxDB3Server, db: str
) -> None:
    assert write(influxdb3_server, db, "home,room=Sunroom temp=96 1735545600").status == 204
    batch = "\n".join(
        [
            "home,room=Kitchen temp=21.0 1735549200",
            'home,room=Sunroom temp="hi" 1735549200',
            "home,room=Hall temp 1735549200",
            "home,room=Hall temp=20.5 1735549200",
        ]
    )
    answer = write(influxdb3_server, db, batch)
    assert answer.status == 400
    assert json.loads(answer.data) == {
        "error": "partial write of line protocol occurred",
        "data": [
            {
                "original_line": "home,room=Sunroom temp=hi 1735549200",
                "line_number": 2,
                "error_message": CONFLICT.format(column="temp", held="float", got="string"),
            },
            {
                "original_line": "home,room=Hall temp 1735549200",
                "line_number": 3,
                "error_message": "No fields were provided",
            },
        ],
    }
    rows = query(influxdb3_server, db, "SELECT room, temp FROM home ORDER BY room")
    assert rows == [
        {"room": "Hall", "temp": 20.5},
        {"room": "Kitchen", "temp": 21.0},
        {"room": "Sunroom", "temp": 96.0},
    ]


def test_accept_partial_false_stores_nothing_of_a_bad_batch(
    influxdb3_server: InfluxDB3Server, db: str
) -> None:
    assert write(influxdb3_server, db, "home,room=Sunroom temp=96 1735545600").status == 204
    batch = 'home,room=Kitchen temp=21.0 1735549200\nhome,room=Hall temp="x" 1735549200'
    answer = write(influxdb3_server, db, batch, accept_partial="false")
    assert answer.status == 400
    body = json.loads(answer.data)
    assert body["error"] == "parsing failed for write_lp endpoint"
    assert body["data"]["line_number"] == 2
    assert query(influxdb3_server, db, "SELECT count(*) FROM home") == [{"count(*)": 1}]
    # A database that only a refused batch named is not created.
    other = f"{db}_new"
    assert write(influxdb3_server, other, 'm v="a"\nm v=1', accept_partial="false").status == 400
    missing = _request(
        influxdb3_server,
        {"method": "GET", "path": f"/api/v3/query_sql?db={other}&q=SELECT+*+FROM+m"},
    )
    assert missing.status == 404


def test_writing_to_a_new_database_creates_it(influxdb3_server: InfluxDB3Server, db: str) -> None:
    assert write(influxdb3_server, db, "m v=1i 1").status == 204
    assert query(influxdb3_server, db, "SELECT count(*) FROM m") == [{"count(*)": 1}]


def test_the_sql_subset_filters_orders_and_limits(
    influxdb3_server: InfluxDB3Server, db: str
) -> None:
    lines = [f"s,entity_id={e} v={v} {t}" for e, v, t in [("a", 1, 10), ("b", 2, 20), ("a", 3, 30)]]
    assert write(influxdb3_server, db, "\n".join(lines), precision="second").status == 204
    sql = (
        "SELECT entity_id, v FROM s WHERE entity_id = 'a' AND time >= '1970-01-01T00:00:10Z' "
        "ORDER BY time DESC LIMIT 1"
    )
    assert query(influxdb3_server, db, sql) == [{"entity_id": "a", "v": 3.0}]
    assert query(influxdb3_server, db, "SELECT count(*) FROM s WHERE v > 1") == [{"count(*)": 2}]
    assert query(influxdb3_server, db, "SELECT v FROM s", fmt="csv") == "v\n1.0\n2.0\n3.0\n"
    outside = _request(
        influxdb3_server,
        {"method": "GET", "path": f"/api/v3/query_sql?db={db}&q={quote('SELECT max(v) FROM s')}"},
    )
    assert outside.status == 400
    assert "small SQL subset" in json.loads(outside.data)["error"]


def test_auth_covers_health_and_ping_unless_the_server_runs_without_auth(
    influxdb3_server: InfluxDB3Server,
) -> None:
    for path in ("/health", "/ping"):
        assert (
            _request(influxdb3_server, {"method": "GET", "path": path, "auth": None}).status == 401
        )
        for scheme in ("Bearer", "Token"):
            auth = f"{scheme} {{token}}"
            answer = _request(influxdb3_server, {"method": "GET", "path": path, "auth": auth})
            assert answer.status == 200, (path, scheme)
    with InfluxDB3Server(token=None) as open_server:
        answer = _request(open_server, {"method": "GET", "path": "/health", "auth": None})
        assert (answer.status, answer.data) == (200, b"OK")
        assert write(open_server, "x", "m v=1 1").status == 204


def test_stop_frees_the_port_and_a_new_start_serves_again() -> None:
    server = InfluxDB3Server()
    server.start()
    port = server.port
    assert _request(server, {"method": "GET", "path": "/health"}).status == 200
    server.stop()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    server.start()
    try:
        assert _request(server, {"method": "GET", "path": "/health"}).status == 200
    finally:
        server.stop()
