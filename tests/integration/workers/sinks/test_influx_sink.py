"""The InfluxDB sinks against real servers: influxd 1.x (v1 /write) and VictoriaMetrics (v2 API).

What must hold: points land exactly as encoded; the server's refusals of the data become
PointsRejected with its own text; everything else (down, slow, misconfigured) becomes
SinkUnavailable; no password or token ever shows in an error.
"""

from __future__ import annotations

import os
import signal
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.field_types import Conflict, conflicts_in
from devtools.local_servers import InfluxDBServer, VictoriaMetricsServer
from tests.helpers import InfluxDatabase, InfluxQL, Victoria, wait_until
from tests.influx_v2_bridge import V2Bridge
from workers.sinks.errors import PointsRejected, SinkError, SinkUnavailable
from workers.sinks.influx_http import error_for_status, parse_retry_after
from workers.sinks.influx_sink import V1Sink, V2Sink

pytestmark = pytest.mark.integration

T0 = 1_764_195_803_441_045_000  # 2026-11-26T22:23:23.441045Z, in ns
ADMIN_PASSWORD = "adm1n-pa55word-xyz"
TOKEN = "t0ken-abcdef-123456"


def assert_secret_free(exc: BaseException, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in str(exc)
        assert secret not in repr(exc)
        if exc.__cause__ is not None:
            assert secret not in str(exc.__cause__)


def every_thread_stopped(pid: int) -> bool:
    """Whether every thread of the process is in state T (stopped), from /proc."""
    try:
        states = [
            (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
            for task in Path(f"/proc/{pid}/task").iterdir()
        ]
    except FileNotFoundError:  # a thread ended while we looked: look again
        return False
    return bool(states) and all(state == "T" for state in states)


@pytest.fixture
def v1(influx_db: InfluxDatabase) -> Iterator[V1Sink]:
    sink = V1Sink(influx_db.url, influx_db.name)
    yield sink
    sink.close()


@pytest.fixture
def v2(victoria: Victoria) -> Iterator[V2Sink]:
    sink = V2Sink(victoria.url, token="", org="home", bucket="ha")
    yield sink
    sink.close()


# -- v1 /write against influxd 1.6 ---------------------------------------------------------------


def test_v1_points_read_back_as_written(v1: V1Sink, influx_db: InfluxDatabase) -> None:
    v1.write(
        [
            r"°C,domain=sensor,entity_id=living\ room "
            rf'value=21.5,friendly_name_str="Séjour \"1\"" {T0}',
            f'°C,domain=sensor,entity_id=kitchen value=19,count=3i,ok=true,note_str="a b" {T0 + 1}',
        ]
    )

    rows = influx_db.query('SELECT * FROM "°C" GROUP BY *')

    assert rows == [
        {
            "domain": "sensor",
            "entity_id": "kitchen",
            "time": T0 + 1,
            "count": 3,
            "friendly_name_str": None,
            "note_str": "a b",
            "ok": True,
            "value": 19,
        },
        {
            "domain": "sensor",
            "entity_id": "living room",
            "time": T0,
            "count": None,
            "friendly_name_str": 'Séjour "1"',
            "note_str": None,
            "ok": None,
            "value": 21.5,
        },
    ]


@pytest.mark.parametrize(
    ("precision", "timestamp"),
    [("s", T0 // 10**9), ("ms", T0 // 10**6), ("us", T0 // 10**3), ("ns", T0), ("u", T0 // 10**3)],
)
def test_v1_precision_scales_the_timestamps(
    influx_db: InfluxDatabase, precision: str, timestamp: int
) -> None:
    sink = V1Sink(influx_db.url, influx_db.name, precision=precision)
    sink.write([f"m value=1 {timestamp}"])

    scale = {"s": 10**9, "ms": 10**6, "us": 10**3, "u": 10**3, "ns": 1}[precision]
    assert influx_db.query("SELECT value FROM m") == [{"time": timestamp * scale, "value": 1}]


def test_v1_field_type_conflict_is_rejected_with_influxdb_text(
    v1: V1Sink, influx_db: InfluxDatabase
) -> None:
    v1.write([f'm state="on" {T0}'])

    with pytest.raises(PointsRejected) as caught:
        v1.write([f"m state=1.5 {T0 + 1}"])

    assert caught.value.status == 400
    assert caught.value.message == (
        'partial write: field type conflict: input field "state" on measurement "m" is type '
        "float, already exists as type string dropped=1"
    )
    assert "field type conflict" in str(caught.value)


def test_v1_field_types_are_what_the_store_holds(v1: V1Sink, influx_db: InfluxDatabase) -> None:
    v1.write([f'°C,entity_id=a value=1i,state="x",ok=true {T0}', f'm"q\\ x value=2.5 {T0}'])

    assert v1.field_types("°C") == {"value": {"integer"}, "state": {"string"}, "ok": {"boolean"}}
    assert v1.field_types('m"q x') == {"value": {"float"}}
    assert v1.field_types("absent") == {}


def test_v2_api_refusal_of_a_field_type_names_the_conflict(influx_db: InfluxDatabase) -> None:
    """InfluxDB 1.8's v2 write API (tests/influx_v2_bridge.py) answers in the store's words."""
    planter = V1Sink(influx_db.url, influx_db.name)
    planter.write([f"°C,entity_id=a value=1i {T0}"])
    planter.close()
    bridge = V2Bridge(influx_db.url).start()
    sink = V2Sink(bridge.url, token="unused", org="home", bucket=influx_db.name)
    try:
        with pytest.raises(PointsRejected) as caught:
            sink.write([f"°C,entity_id=b value=1.5 {T0 + 1}"])
    finally:
        sink.close()
        bridge.stop()

    assert caught.value.message == (
        'partial write: field type conflict: input field "value" on measurement "°C" is type '
        "float, already exists as type integer dropped=1"
    )
    assert conflicts_in(caught.value.message) == [Conflict("°C", "value", "float", "integer")]


def test_v1_rejection_of_one_point_still_stores_the_others(
    v1: V1Sink, influx_db: InfluxDatabase
) -> None:
    v1.write([f'm state="on" {T0}'])

    with pytest.raises(PointsRejected, match="dropped=1"):
        v1.write([f"m state=2.5 {T0 + 1}", f'm state="off" {T0 + 2}'])

    assert influx_db.query("SELECT state FROM m") == [
        {"time": T0, "state": "on"},
        {"time": T0 + 2, "state": "off"},
    ]


@pytest.mark.parametrize(
    ("line", "text"),
    [
        ("m value=", "unable to parse 'm value=': missing field value"),
        ("m value=5u", "unable to parse 'm value=5u': invalid number"),
        ("m", "unable to parse 'm': missing fields"),
    ],
)
def test_v1_unparsable_lines_are_rejected(v1: V1Sink, line: str, text: str) -> None:
    with pytest.raises(PointsRejected) as caught:
        v1.write([line])
    assert (caught.value.status, caught.value.message) == (400, text)


def test_v1_missing_database_is_unavailable_until_created(influxdb_server: InfluxDBServer) -> None:
    name = f"test_{uuid.uuid4().hex[:12]}"
    sink = V1Sink(influxdb_server.url, name)
    try:
        with pytest.raises(SinkUnavailable) as caught:
            sink.write([f"m value=1 {T0}"])
        assert caught.value.status == 404
        assert f'CREATE DATABASE "{name}"' in str(caught.value)

        sink.ensure_database()
        sink.ensure_database()  # idempotent
        sink.write([f"m value=1 {T0}"])

        assert InfluxQL(influxdb_server.url).query("SELECT value FROM m", name) == [
            {"time": T0, "value": 1}
        ]
    finally:
        InfluxQL(influxdb_server.url).results(f'DROP DATABASE "{name}"')
        sink.close()


def test_v1_missing_retention_policy_is_unavailable(influx_db: InfluxDatabase) -> None:
    sink = V1Sink(influx_db.url, influx_db.name, retention_policy="no_such_rp")
    with pytest.raises(SinkUnavailable, match="retention policy") as caught:
        sink.write([f"m value=1 {T0}"])
    assert caught.value.status == 500


def test_v1_empty_batch_sends_nothing() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        V1Sink(f"http://127.0.0.1:{server.getsockname()[1]}", "db", timeout=1).write([])
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.accept()  # no connection came: a request would be waiting here


def test_v1_stopped_server_is_unavailable_then_recovers(tmp_path: Path) -> None:
    with InfluxDBServer(tmp_path) as server:
        sink = V1Sink(server.url, "db")
        sink.ensure_database()
        sink.write([f"m value=1 {T0}"])
        server.stop()

        with pytest.raises(SinkUnavailable, match="cannot reach InfluxDB") as caught:
            sink.write([f"m value=2 {T0 + 1}"])
        assert caught.value.status is None
        assert caught.value.retry_after is None

        server.start()
        sink.write([f"m value=2 {T0 + 1}"])  # the same sink reconnects
        assert len(InfluxQL(server.url).query("SELECT value FROM m", "db")) == 2


def test_v1_unresponsive_server_times_out_as_unavailable(tmp_path: Path) -> None:
    with InfluxDBServer(tmp_path) as server:
        sink = V1Sink(server.url, "db", timeout=0.3)
        assert server.pid is not None
        pid = server.pid
        os.kill(pid, signal.SIGSTOP)  # the kernel still accepts connections; no answer
        try:
            # SIGSTOP lands on each thread in its own time: a running one could still answer.
            wait_until(lambda: every_thread_stopped(pid), 10, message="influxd paused")
            with pytest.raises(SinkUnavailable, match="timed out"):
                sink.write([f"m value=1 {T0}"])
        finally:
            os.kill(pid, signal.SIGCONT)


@pytest.fixture(scope="module")
def secured_influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDBServer]:
    """influxd with auth-enabled and one admin user (created while no user exists)."""
    with InfluxDBServer(tmp_path_factory.mktemp("influx-auth"), auth_enabled=True) as server:
        InfluxQL(server.url).results(
            f"CREATE USER admin WITH PASSWORD '{ADMIN_PASSWORD}' WITH ALL PRIVILEGES"
        )
        yield server


def test_v1_credentials_are_sent_and_a_refusal_keeps_them_secret(
    secured_influxdb: InfluxDBServer,
) -> None:
    url = secured_influxdb.url
    sink = V1Sink(url, "secured", username="admin", password=ADMIN_PASSWORD)
    sink.ensure_database()
    sink.write([f"m value=1 {T0}"])
    admin = InfluxQL(url, username="admin", password=ADMIN_PASSWORD)
    assert admin.query("SELECT value FROM m", "secured") == [{"time": T0, "value": 1}]

    wrong = "Wr0ng-" + ADMIN_PASSWORD
    with pytest.raises(SinkUnavailable, match="refused the credentials") as caught:
        V1Sink(url, "secured", username="admin", password=wrong).write([f"m value=2 {T0}"])
    assert caught.value.status == 401
    assert "authorization failed" in str(caught.value)
    assert_secret_free(caught.value, wrong)

    with pytest.raises(SinkUnavailable) as caught:
        V1Sink(url, "secured", username="admin", password=wrong).ensure_database()
    assert_secret_free(caught.value, wrong)


def test_v1_credentials_in_the_url_are_used_and_redacted(
    secured_influxdb: InfluxDBServer,
) -> None:
    url = secured_influxdb.url.replace("http://", f"http://admin:{ADMIN_PASSWORD}@")
    sink = V1Sink(url, "secured")
    sink.ensure_database()
    sink.write([f"m value=3 {T0 + 3}"])
    assert ADMIN_PASSWORD not in repr(sink)

    down = V1Sink(f"http://admin:{ADMIN_PASSWORD}@127.0.0.1:1", "secured")
    with pytest.raises(SinkUnavailable) as caught:
        down.write([f"m value=1 {T0}"])
    assert_secret_free(caught.value, ADMIN_PASSWORD)


# -- v2 write API (influxdb-client) against VictoriaMetrics --------------------------------------


def test_v2_points_reach_victoria(v2: V2Sink, victoria: Victoria) -> None:
    v2.write(
        [
            f"°C,domain=sensor,entity_id=kitchen value=21.5,battery=87i {T0}",
            f"°C,domain=sensor,entity_id=kitchen value=22 {T0 + 10**9}",
            f'state,domain=switch,entity_id=lamp value=1,state="on" {T0}',
        ]
    )

    series = {(s["metric"]["__name__"], s["metric"].get("entity_id")): s for s in victoria.export()}

    ms = T0 // 10**6
    assert series["°C_value", "kitchen"] == {
        "metric": {"__name__": "°C_value", "domain": "sensor", "entity_id": "kitchen"},
        "values": [21.5, 22],
        "timestamps": [ms, ms + 1000],
    }
    assert series["°C_battery", "kitchen"]["values"] == [87]
    assert series["state_value", "lamp"]["values"] == [1]
    # VictoriaMetrics stores numbers only: a string field becomes 0.
    assert series["state_state", "lamp"]["values"] == [0]


@pytest.mark.parametrize("precision", ["s", "ms", "us", "ns"])
def test_v2_precision_scales_the_timestamps(victoria: Victoria, precision: str) -> None:
    scale = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[precision]
    sink = V2Sink(victoria.url, token="", org="home", bucket="ha", precision=precision)
    sink.write([f"p value=1 {T0 // scale}"])
    sink.close()

    [series] = victoria.export('{__name__="p_value"}')
    assert series["timestamps"] == [T0 // scale * scale // 10**6]


def test_v2_malformed_lines_are_skipped_by_victoria_without_an_error(
    v2: V2Sink, victoria: Victoria
) -> None:
    """VictoriaMetrics answers 204 and logs the bad lines: it never returns a 4xx for data."""
    v2.write(
        [
            f"good value=1 {T0}",
            "garbage",
            f"bad value= {T0}",
            "bad value=1 not-a-time",
            f"good value=2 {T0 + 10**6}",
        ]
    )

    [series] = victoria.export()
    assert series["metric"] == {"__name__": "good_value"}
    assert series["values"] == [1, 2]


def test_v2_stopped_server_is_unavailable_then_recovers(tmp_path: Path) -> None:
    with VictoriaMetricsServer(tmp_path) as server:
        sink = V2Sink(server.url, token=TOKEN, org="home", bucket="ha")
        sink.write([f"m value=1 {T0}"])
        server.stop()

        with pytest.raises(SinkUnavailable, match="cannot reach InfluxDB") as caught:
            sink.write([f"m value=2 {T0 + 10**6}"])
        assert caught.value.status is None
        assert_secret_free(caught.value, TOKEN)

        server.start()
        sink.write([f"m value=2 {T0 + 10**6}"])
        sink.close()
        assert Victoria(server.url).export()[0]["values"] == [1, 2]


def test_v2_refused_token_is_unavailable_and_kept_secret(tmp_path: Path) -> None:
    auth = ["-httpAuth.username=vm", "-httpAuth.password=vm-pa55word"]
    with VictoriaMetricsServer(tmp_path, extra_args=auth) as server:
        sink = V2Sink(server.url, token=TOKEN, org="home", bucket="ha")
        with pytest.raises(SinkUnavailable, match="refused the credentials") as caught:
            sink.write([f"m value=1 {T0}"])
        sink.close()
    assert caught.value.status == 401
    assert_secret_free(caught.value, TOKEN)
    assert TOKEN not in repr(sink)


def test_v2_against_influxdb_1_6_says_to_check_the_url(influxdb_server: InfluxDBServer) -> None:
    """influxd 1.6 has no /api/v2/write: a 404, which no bisecting can fix."""
    sink = V2Sink(influxdb_server.url, token="", org="home", bucket="ha")
    with pytest.raises(SinkUnavailable, match="check the InfluxDB URL") as caught:
        sink.write([f"m value=1 {T0}"])
    sink.close()
    assert caught.value.status == 404


def test_v2_empty_batch_sends_nothing() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        sink = V2Sink(url, token=TOKEN, org="home", bucket="ha", timeout=1)
        sink.write([])
        sink.close()
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.accept()  # no connection came: a request would be waiting here


# -- probe(): the empty write of `ha-ingestor check`, with what to fix ----------------------------


def test_v1_probe_accepts_and_stores_nothing(v1: V1Sink, influx_db: InfluxDatabase) -> None:
    assert v1.probe() is None
    assert influx_db.query("SHOW MEASUREMENTS") == []


def test_v1_probe_of_a_missing_database_says_how_to_create_it(
    influxdb_server: InfluxDBServer,
) -> None:
    sink = V1Sink(influxdb_server.url, "no_such_db")
    refusal = sink.probe()
    sink.close()
    assert refusal is not None
    assert "database 'no_such_db' not found" in refusal.problem
    assert refusal.fix.startswith('create it: CREATE DATABASE "no_such_db"')


def test_v1_probe_of_a_stopped_server_raises_unavailable(tmp_path: Path) -> None:
    with InfluxDBServer(tmp_path) as server:
        url = server.url
    with pytest.raises(SinkUnavailable, match="cannot reach InfluxDB"):
        V1Sink(url, "db").probe()


def test_v2_probe_accepts_then_names_the_token_when_refused(v2: V2Sink, tmp_path: Path) -> None:
    assert v2.probe() is None
    auth = ["-httpAuth.username=vm", "-httpAuth.password=vm-pa55word"]
    with VictoriaMetricsServer(tmp_path, extra_args=auth) as server:
        sink = V2Sink(server.url, token=TOKEN, org="home", bucket="ha")
        refusal = sink.probe()
        sink.close()
    assert refusal is not None
    assert "refused the credentials (HTTP 401" in refusal.problem
    assert refusal.fix == "correct INFLUXDB_TOKEN"
    assert TOKEN not in str(refusal)


# -- pure parts: the status table (with v1's refusals) and Retry-After ----------------------------


@pytest.mark.parametrize(
    ("status", "expected", "retry_after"),
    [
        (400, PointsRejected, None),
        (413, PointsRejected, None),
        (422, PointsRejected, None),
        (401, SinkUnavailable, None),
        (403, SinkUnavailable, None),
        (404, SinkUnavailable, None),
        (429, SinkUnavailable, 7.0),
        (500, SinkUnavailable, None),
        (503, SinkUnavailable, 2.5),
        (302, SinkUnavailable, None),
    ],
)
def test_status_table(status: int, expected: type[SinkError], retry_after: float | None) -> None:
    refusal = V1Sink("http://127.0.0.1:1", "db")._refusal(status, "text")
    error = error_for_status(
        status, "text", server="InfluxDB", refusal=refusal, retry_after=retry_after
    )
    assert type(error) is expected
    if isinstance(error, SinkUnavailable):
        assert (error.status, error.retry_after) == (status, retry_after)
    else:
        assert isinstance(error, PointsRejected)
        assert (error.status, error.message) == (status, "text")


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("", None),
        ("30", 30.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("nan", None),
        ("soon", None),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=lambda: 1445412480.0) == seconds


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="precision"):
        V1Sink("http://127.0.0.1:1", "db", precision="h")
    with pytest.raises(ValueError, match="precision"):
        V2Sink("http://127.0.0.1:1", token="", org="o", bucket="b", precision="m")


def test_errors_survive_pickling() -> None:
    import pickle

    unavailable = pickle.loads(pickle.dumps(SinkUnavailable("down", retry_after=3.0, status=503)))
    assert (str(unavailable), unavailable.retry_after, unavailable.status) == ("down", 3.0, 503)
    rejected = pickle.loads(pickle.dumps(PointsRejected(400, "bad")))
    assert (rejected.status, rejected.message, str(rejected)) == (
        400,
        "bad",
        "InfluxDB rejected the points (400): bad",
    )
