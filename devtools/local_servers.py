"""Real Redis, InfluxDB 1.x and VictoriaMetrics processes on loopback, for tests, benchmarks and
`make run`.

Each server runs in its own session from a Debian binary, with its data and log under one
directory, on a free port (or a given one, kept across restarts). Processes are only ever
signalled by their own PID, never by name, so parallel sessions on one machine do not clash.
A server can bind another address than loopback and run behind a command prefix that execs it
(`ip netns exec NAME`: the several-hosts test puts the servers on a host of their own); the
readiness probe then has to run where that address is reachable.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Literal, Self

__all__ = [
    "InfluxDBServer",
    "LocalServer",
    "RedisServer",
    "ServerNotInstalled",
    "ServerStartError",
    "VictoriaMetricsServer",
    "free_port",
]

LOOPBACK = "127.0.0.1"
_LOG_TAIL_BYTES = 4000
_POLL_INTERVAL = 0.02
_MAX_PORT_ATTEMPTS = 5
_Outcome = Literal["ready", "port in use", "exited", "timeout"]
_running: set[LocalServer] = set()
"""Servers started by this process and not stopped yet: stopped at exit if still running."""


class ServerNotInstalled(RuntimeError):
    """The server binary is missing; the message says how to install it."""


class ServerStartError(RuntimeError):
    """The server did not become ready; the message ends with the tail of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


class LocalServer:
    """A server process with a data directory, a loopback port and a readiness probe.

    Subclasses say which binary and package, how to build the command line and how to tell that
    the server answers; this class owns the process lifecycle.
    """

    name: ClassVar[str]
    default_binary: ClassVar[str]
    package: ClassVar[str]
    env_prefixes_to_strip: ClassVar[tuple[str, ...]] = ()
    has_extra_ports: ClassVar[bool] = False

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        binary: str | None = None,
        extra_args: Sequence[str] = (),
        pick_port: Callable[[], int] = free_port,
        host: str = LOOPBACK,
        command_prefix: Sequence[str] = (),
    ) -> None:
        self.data_dir = Path(data_dir)
        self.binary = binary or self.default_binary
        self.extra_args = tuple(extra_args)
        self.host = host
        self.command_prefix = tuple(command_prefix)
        self._port = port
        self._port_fixed = port is not None
        self._pick_port = pick_port
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self._last_command: list[str] = []

    # -- what subclasses provide -------------------------------------------------------------

    def _command(self, executable: str) -> list[str]:
        raise NotImplementedError

    def _probe(self) -> bool:
        """True when the server on self.port answers like a ready server."""
        raise NotImplementedError

    def _choose_extra_ports(self, fresh: bool) -> None:
        """Pick ports the server binds besides self.port (InfluxDB's RPC port); fresh=True after
        a lost port race."""

    @property
    def url(self) -> str:
        """The URL clients connect to."""
        raise NotImplementedError

    # -- public API ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port clients connect to; chosen by the first start() unless given."""
        if self._port is None:
            raise RuntimeError(
                f"{self.name}: the port is chosen by start(); start the server first"
            )
        return self._port

    @property
    def pid(self) -> int | None:
        """The PID of the running process, None when not running."""
        return self._process.pid if self.is_running() and self._process else None

    @property
    def log_path(self) -> Path:
        """Where the server's stdout and stderr go (appended across restarts)."""
        return self.data_dir / f"{self.name}.log"

    def is_running(self) -> bool:
        """Whether our process is alive (a stopped or crashed one is reaped here)."""
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 20) -> None:
        """Launch the server and wait until it answers; retry on a lost port race."""
        if self.is_running():
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        executable = self._executable()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        for attempt in range(1, _MAX_PORT_ATTEMPTS + 1):
            if self._port is None or (attempt > 1 and not self._port_fixed):
                self._port = self._pick_port()
            self._choose_extra_ports(fresh=attempt > 1)
            self._launch(executable)
            outcome = self._wait_ready(deadline)
            if outcome == "ready":
                # From now on the port is part of the server's identity: restart() keeps it.
                self._port_fixed = True
                return
            self.stop(timeout=5)
            can_move = not self._port_fixed or self.has_extra_ports
            if outcome == "port in use" and can_move and attempt < _MAX_PORT_ATTEMPTS:
                continue
            reason = {
                "port in use": f"port {self._port} is already in use",
                "exited": "the process exited",
                "timeout": f"it did not answer within {timeout:g} s",
            }[outcome]
            raise ServerStartError(
                f"{self.name} did not start ({reason}); command: {' '.join(self._last_command)}"
                f"\n--- last lines of {self.log_path} ---\n{self.log_tail()}"
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM our process, SIGKILL it after timeout, and reap it (no zombie)."""
        _running.discard(self)
        process = self._process
        if process is None:
            return
        terminate(process, timeout)
        _running.discard(self)

    def restart(self, timeout: float = 20) -> None:
        """Stop and start again on the same port with the same data."""
        self.stop()
        self.start(timeout=timeout)

    def log_tail(self, max_bytes: int = _LOG_TAIL_BYTES) -> str:
        """The end of what the current (or last) launch wrote to its log."""
        try:
            with self.log_path.open("rb") as log:
                size = log.seek(0, os.SEEK_END)
                log.seek(max(self._log_offset, size - max_bytes))
                return log.read().decode("utf-8", "replace")
        except OSError as exc:
            return f"(log unavailable: {exc})"

    def __enter__(self) -> Self:
        if not self.is_running():
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.is_running() else "stopped"
        return f"<{type(self).__name__} port={self._port} {state} dir={self.data_dir}>"

    # -- internals -----------------------------------------------------------------------------

    def _executable(self) -> str:
        found = shutil.which(self.binary)
        if found is None:
            raise ServerNotInstalled(
                f"{self.name}: cannot find the server binary {self.binary!r}; install it with: "
                f"sudo apt-get install -y {self.package}"
            )
        return found

    def _launch(self, executable: str) -> None:
        self._last_command = [
            *self.command_prefix,
            *self._command(executable),
            *self.extra_args,
        ]
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(self.env_prefixes_to_strip)
        }
        with self.log_path.open("ab") as log:
            self._log_offset = log.tell()
            # Own session: a Ctrl-C in the terminal does not reach the server behind our back.
            self._process = subprocess.Popen(
                self._last_command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                env=env,
                start_new_session=True,
            )
        _running.add(self)

    def _wait_ready(self, deadline: float) -> _Outcome:
        assert self._process is not None
        while True:
            if self._process.poll() is not None:
                _running.discard(self)
                tail = self.log_tail().lower()
                in_use = "address already in use" in tail or "address in use" in tail
                return "port in use" if in_use else "exited"
            # The probe must reach OUR process: another one may have won the port race.
            if self._probe() and _owns_listening_port(self._process.pid, self.port):
                return "ready"
            if time.monotonic() >= deadline:
                return "timeout"
            time.sleep(_POLL_INTERVAL)


def terminate(process: subprocess.Popen[Any], timeout: float = 10) -> int | None:
    """Stop one process we started, by its PID: SIGTERM, SIGKILL after timeout, then reap it.

    Shared by the servers here and the app processes of tests and benchmarks.
    """
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()
    return process.returncode


def _owns_listening_port(pid: int, port: int) -> bool:
    """Whether pid holds the socket listening on 127.0.0.1:port (True if /proc cannot tell)."""
    inodes = set(_listening_inodes(port))
    if not inodes:
        return True
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return True
    for fd in fds:
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:[") and link[8:-1] in inodes:
                return True
    return False


def _listening_inodes(port: int) -> Iterator[str]:
    try:
        # The calling thread's network namespace: the one the probe just reached the port in.
        lines = Path("/proc/thread-self/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return
    for line in lines:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
            yield inode


def _http_status(host: str, port: int, path: str) -> int | None:
    connection = http.client.HTTPConnection(host, port, timeout=0.5)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


class RedisServer(LocalServer):
    """redis-server without a config file; appendonly=True when a restart must keep the data."""

    name = "redis"
    default_binary = "redis-server"
    package = "redis-server"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        appendonly: bool = False,
        *,
        binary: str | None = None,
        extra_args: Sequence[str] = (),
        pick_port: Callable[[], int] = free_port,
        host: str = LOOPBACK,
        command_prefix: Sequence[str] = (),
    ) -> None:
        super().__init__(
            data_dir,
            port,
            binary=binary,
            extra_args=extra_args,
            pick_port=pick_port,
            host=host,
            command_prefix=command_prefix,
        )
        self.appendonly = appendonly

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def _command(self, executable: str) -> list[str]:
        return [
            executable,
            "--bind", self.host,
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--daemonize", "no",
            "--logfile", "",
        ]  # fmt: skip

    def _probe(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                # "-LOADING" while an append-only file is replayed: not ready yet.
                # -NOAUTH: a server started with --requirepass is up and asks for a password.
                return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False


class InfluxDBServer(LocalServer):
    """influxd 1.x with a generated config: every listener on loopback or off, no reporting."""

    name = "influxdb"
    default_binary = "influxd"
    package = "influxdb"
    # influxd lets INFLUXDB_* variables override its config file (INFLUXDB_HTTP_BIND_ADDRESS, …).
    env_prefixes_to_strip = ("INFLUXDB_",)
    has_extra_ports = True

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        auth_enabled: bool = False,
        binary: str | None = None,
        extra_args: Sequence[str] = (),
        pick_port: Callable[[], int] = free_port,
        host: str = LOOPBACK,
        command_prefix: Sequence[str] = (),
    ) -> None:
        super().__init__(
            data_dir,
            port,
            binary=binary,
            extra_args=extra_args,
            pick_port=pick_port,
            host=host,
            command_prefix=command_prefix,
        )
        self.auth_enabled = auth_enabled
        self.rpc_port: int | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "influxdb.conf"

    def _choose_extra_ports(self, fresh: bool) -> None:
        if fresh or self.rpc_port is None:
            self.rpc_port = self._pick_port()

    def _command(self, executable: str) -> list[str]:
        self.config_path.write_text(self._config())
        return [executable, "run", "-config", str(self.config_path)]

    def _config(self) -> str:
        root = self.data_dir
        auth = "true" if self.auth_enabled else "false"
        return f"""\
reporting-disabled = true
bind-address = "{self.host}:{self.rpc_port}"

[meta]
  dir = "{root / "meta"}"

[data]
  dir = "{root / "data"}"
  wal-dir = "{root / "wal"}"
  query-log-enabled = false

[http]
  enabled = true
  bind-address = "{self.host}:{self.port}"
  auth-enabled = {auth}
  log-enabled = false
  pprof-enabled = false
  unix-socket-enabled = false

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false

[ifql]
  enabled = false

[[graphite]]
  enabled = false

[[collectd]]
  enabled = false

[[opentsdb]]
  enabled = false

[[udp]]
  enabled = false
"""

    def _probe(self) -> bool:
        return _http_status(self.host, self.port, "/ping") == 204


class VictoriaMetricsServer(LocalServer):
    """victoria-metrics single-node: the v2 write endpoint (/api/v2/write) and /api/v1/export."""

    name = "victoria-metrics"
    default_binary = "victoria-metrics"
    package = "victoria-metrics"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _command(self, executable: str) -> list[str]:
        return [
            executable,
            f"-httpListenAddr={self.host}:{self.port}",
            f"-storageDataPath={self.data_dir / 'storage'}",
            "-search.latencyOffset=1s",
            # The default (1 month) silently drops older points with a 204: keep everything.
            "-retentionPeriod=100y",
        ]

    def _probe(self) -> bool:
        return _http_status(self.host, self.port, "/health") == 200


@atexit.register
def _stop_leftovers() -> None:
    """A crashed test run or script must not leave servers behind."""
    for server in list(_running):
        with contextlib.suppress(Exception):
            server.stop(timeout=5)
