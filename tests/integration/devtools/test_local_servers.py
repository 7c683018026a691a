"""The server processes tests, benchmarks and `make run` rely on: start, stop, restart, errors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import urllib3

from devtools.local_servers import (
    InfluxDBServer,
    LocalServer,
    RedisServer,
    ServerNotInstalled,
    ServerStartError,
    VictoriaMetricsServer,
    free_port,
)
from tests.helpers import InfluxDatabase, InfluxQL, Victoria

pytestmark = pytest.mark.integration

http = urllib3.PoolManager(retries=False, timeout=5)


def assert_gone(pid: int) -> None:
    """Neither running nor a zombie: the process has been reaped."""
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    assert not Path(f"/proc/{pid}").exists()


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        assert sock.getsockname() == ("127.0.0.1", port)
    assert 0 < port < 65536


def test_redis_restart_keeps_port_and_appendonly_data(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, appendonly=True)
    with server:
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        client = redis.Redis.from_url(server.url)
        client.rpush("queue", "a", "b")
        port, pid = server.port, server.pid
        assert pid is not None

        server.restart()

        assert (server.port, server.is_running()) == (port, True)
        assert server.pid != pid
        assert client.lrange("queue", 0, -1) == [b"a", b"b"]
        client.close()
        assert_gone(pid)
    assert not server.is_running()
    assert server.pid is None
    assert refuses_connections(port)
    assert (tmp_path / "redis.log").read_text()


def test_influxdb_restart_keeps_port_and_data(tmp_path: Path) -> None:
    with InfluxDBServer(tmp_path) as server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert server.rpc_port not in (None, 8088, server.port)
        assert http.request("GET", f"{server.url}/ping").status == 204
        influxql = InfluxQL(server.url)
        influxql.results('CREATE DATABASE "kept"')
        written = http.request(
            "POST", f"{server.url}/write?db=kept", body=b"m v=1 1700000000000000000"
        )
        assert written.status == 204
        port, pid = server.port, server.pid

        server.restart()

        assert server.port == port
        assert server.pid != pid
        rows = InfluxQL(server.url).query("SELECT v FROM m", "kept")
        assert rows == [{"time": 1_700_000_000_000_000_000, "v": 1}]
    assert refuses_connections(port)
    config = (tmp_path / "influxdb.conf").read_text()
    assert "reporting-disabled = true" in config
    assert "store-enabled = false" in config


def test_victoria_restart_keeps_port_and_data(tmp_path: Path) -> None:
    with VictoriaMetricsServer(tmp_path) as server:
        written = http.request(
            "POST", f"{server.url}/api/v2/write?bucket=b", body=b"m,t=x v=3 1700000000000000000"
        )
        assert written.status == 204
        port = server.port

        server.restart()

        assert server.port == port
        series = Victoria(server.url).export()
        assert series == [
            {"metric": {"__name__": "m_v", "t": "x"}, "values": [3], "timestamps": [1700000000000]}
        ]
    assert refuses_connections(port)


def test_a_command_prefix_execs_the_server_on_its_host_address(tmp_path: Path) -> None:
    """`ip netns exec NAME` puts a server on another host: the prefix must exec the server (our
    PID is the server's, signalled by it) and the server binds the given address only."""
    prefix = ["env", "PREFIX_MARK=1"]
    with InfluxDBServer(tmp_path, host="127.0.0.1", command_prefix=prefix) as server:
        assert server.pid is not None
        environ = Path(f"/proc/{server.pid}/environ").read_bytes().split(b"\0")
        assert b"PREFIX_MARK=1" in environ
        assert Path(f"/proc/{server.pid}/comm").read_text().strip() == "influxd"
        config = (tmp_path / "influxdb.conf").read_text()
        assert f'bind-address = "127.0.0.1:{server.port}"' in config
        assert http.request("GET", f"{server.url}/ping").status == 204
        pid = server.pid
    assert_gone(pid)


@pytest.mark.parametrize(
    ("server_class", "package"),
    [
        (RedisServer, "redis-server"),
        (InfluxDBServer, "influxdb"),
        (VictoriaMetricsServer, "victoria-metrics"),
    ],
)
def test_missing_binary_names_the_install_command(
    tmp_path: Path, server_class: type[LocalServer], package: str
) -> None:
    server = server_class(tmp_path, binary=str(tmp_path / "no-such-server"))
    with pytest.raises(ServerNotInstalled) as caught:
        server.start()
    assert f"sudo apt-get install -y {package}" in str(caught.value)
    assert not server.is_running()


def test_a_given_busy_port_fails_with_the_log_tail(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        server = RedisServer(tmp_path, port=port)
        with pytest.raises(ServerStartError, match=f"port {port} is already in use") as caught:
            server.start()
    assert "Address already in use" in str(caught.value)
    assert not server.is_running()


def test_a_lost_port_race_is_retried_on_another_port(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken, free_port()])
        with InfluxDBServer(tmp_path, pick_port=lambda: next(ports, 0) or free_port()) as server:
            assert server.port != taken
            assert http.request("GET", f"{server.url}/ping").status == 204


def test_a_failed_start_reports_the_log_and_leaves_nothing_running(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, extra_args=["--no-such-directive", "1"])
    with pytest.raises(ServerStartError, match="the process exited") as caught:
        server.start()
    assert "no-such-directive" in str(caught.value)
    assert not server.is_running()


def test_a_server_that_never_answers_times_out_and_is_stopped(tmp_path: Path) -> None:
    silent = tmp_path / "silent-server"
    silent.write_text("#!/bin/sh\necho listening soon\nexec sleep 60\n")
    silent.chmod(0o755)
    server = VictoriaMetricsServer(tmp_path / "data", binary=str(silent))

    with pytest.raises(ServerStartError, match=r"did not answer within 0\.5 s") as caught:
        server.start(timeout=0.5)

    assert "listening soon" in str(caught.value)
    assert not server.is_running()


def test_servers_left_running_are_stopped_when_python_exits(tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path; from devtools.local_servers import RedisServer; "
        "server = RedisServer(Path(sys.argv[1])); server.start(); print(server.pid)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[3],
        timeout=60,
    )
    pid = int(done.stdout)
    assert not Path(f"/proc/{pid}").exists()


def test_stop_kills_a_server_that_ignores_sigterm(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    pid = server.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # a stopped process cannot act on SIGTERM

    server.stop(timeout=0.3)

    assert not server.is_running()
    assert_gone(pid)


def test_start_twice_is_refused(tmp_path: Path) -> None:
    with RedisServer(tmp_path) as server, pytest.raises(RuntimeError, match="already running"):
        server.start()


def test_port_is_unknown_before_the_first_start(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="start"):
        _ = RedisServer(tmp_path).port


def test_influxd_ignores_influxdb_variables_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFLUXDB_HTTP_BIND_ADDRESS", "127.0.0.1:1")
    with InfluxDBServer(tmp_path) as server:
        assert http.request("GET", f"{server.url}/ping").status == 204


# -- the session fixtures ---------------------------------------------------------------------


@pytest.fixture
def _dirty_redis_db(redis_server: RedisServer) -> None:
    """Put a key in every DB so the next redis_url must have flushed its own."""
    for db in range(1, 16):
        client = redis.Redis(port=redis_server.port, db=db)
        client.set("leftover", "1")
        client.close()


@pytest.mark.usefixtures("_dirty_redis_db")
def test_redis_url_is_an_empty_db_of_our_server(redis_server: RedisServer, redis_url: str) -> None:
    assert redis_url.startswith(f"redis://127.0.0.1:{redis_server.port}/")
    assert 1 <= int(redis_url.rsplit("/", 1)[1]) <= 15
    client = redis.Redis.from_url(redis_url)
    assert client.dbsize() == 0
    client.close()


def test_influx_db_is_a_fresh_database(influx_db: InfluxDatabase) -> None:
    assert influx_db.query("SHOW MEASUREMENTS") == []
    written = http.request(
        "POST", f"{influx_db.url}/write?db={influx_db.name}", body=b"m,t=a v=2 1700000000000000000"
    )
    assert written.status == 204
    assert influx_db.query("SELECT * FROM m") == [
        {"time": 1_700_000_000_000_000_000, "t": "a", "v": 2}
    ]


def test_victoria_starts_empty_and_exports_what_was_written(victoria: Victoria) -> None:
    assert victoria.export() == []
    written = http.request(
        "POST", f"{victoria.url}/api/v2/write?bucket=b", body=b"m,t=a v=5 1700000000000000000"
    )
    assert written.status == 204
    assert victoria.export('{__name__="m_v"}')[0]["values"] == [5]


def test_fixtures_dir_holds_the_captures(fixtures_dir: Path) -> None:
    assert (fixtures_dir / "sample_events.jsonl").is_file()


def test_environment_is_clean() -> None:
    leaked = [name for name in os.environ if name.startswith(("HA_", "INFLUXDB_", "CELERY_"))]
    assert leaked == []
    assert "REDIS_URL" not in os.environ
