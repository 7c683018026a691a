"""The servers and processes a benchmark run starts, all on loopback, all stopped by PID."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import redis

from bench.influx import Influx
from devtools.local_servers import InfluxDBServer, RedisServer, free_port, terminate

BIN = Path(sys.executable).parent
TOKEN = "bench-token-0123456789abcdef"

WORKER_FLAGS = [
    "--pool",
    "solo",
    "--loglevel",
    "INFO",
    "-E",
    "--without-mingle",
    "--without-gossip",
]
"""The Procfile's worker flags: the candidate and the bare baseline run with the same ones."""


class Proc:
    """One process with its output in a log file; stop() is SIGTERM then SIGKILL, by PID."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()

    def start(self, *, json_stdout: bool = False) -> Proc:
        log = self.log_path.open("ab")
        stdout: Any = subprocess.PIPE if json_stdout else log
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdout=stdout, stderr=log, start_new_session=True
        )
        log.close()
        if json_stdout:
            threading.Thread(target=self._read_lines, daemon=True).start()
        return self

    def _read_lines(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                self.lines.put(json.loads(raw))
            except ValueError:
                continue

    def next_line(self, key: str, timeout: float) -> dict[str, Any]:
        """The next JSON line from stdout that has `key`."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.running():
                if not self.lines.empty():
                    line = self.lines.get_nowait()
                    if key in line:
                        return line
                    continue
                raise RuntimeError(
                    f"{self.name}: no {key!r} within {timeout:g} s; log {self.log_path}:\n"
                    + self.log_tail()
                )
            try:
                line = self.lines.get(timeout=min(remaining, 0.2))
            except queue.Empty:
                continue
            if key in line:
                return line

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> int | None:
        return None if self.proc is None else terminate(self.proc, timeout)

    def log_tail(self, size: int = 3000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-size:]
        except OSError:
            return ""


class Stack:
    """Redis and InfluxDB 1.x for one benchmark run, and the app processes on top of them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        # Append-only file on (fsync every second), as production runs: "durably enqueued".
        self.redis_server = RedisServer(root / "redis", appendonly=True)
        self.influx_server = InfluxDBServer(root / "influxdb")
        self.procs: list[Proc] = []

    def start(self) -> Stack:
        self.redis_server.start()
        self.influx_server.start()
        self.influx = Influx(self.influx_server.url)
        return self

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop(timeout=10)
        self.influx_server.stop()
        self.redis_server.stop()

    def redis_url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.redis_server.port}/{db}"

    def redis(self, db: int) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url(db))

    def env(self, db: int, database: str, data_dir: Path, **extra: str) -> dict[str, str]:
        """The environment of an app process: the settings and nothing leaking from ours."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("HA_", "INFLUXDB_", "CELERY_")) and k != "REDIS_URL"
        }
        env.update(
            PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            PYTHONUNBUFFERED="1",
            CELERY_BROKER_URL=self.redis_url(db),
            INFLUXDB_URL=self.influx_server.url,
            INFLUXDB_DATABASE=database,
            HEALTH_PORT=str(free_port()),
            DATA_DIR=str(data_dir),
            HA_TOKEN=TOKEN,
        )
        env.update(extra)
        return env

    def spawn(self, name: str, argv: list[str], env: dict[str, str], **kw: Any) -> Proc:
        proc = Proc(name, argv, env, self.logs).start(**kw)
        self.procs.append(proc)
        return proc

    def retire(self, proc: Proc, timeout: float = 20.0) -> int | None:
        code = proc.stop(timeout)
        if proc in self.procs:
            self.procs.remove(proc)
        return code

    # --- the processes ------------------------------------------------------------------------

    def simulator(
        self, *, rate: float, events: int, record: Path, entities: int = 40, flow_control: int = 0
    ) -> Proc:
        argv = [
            sys.executable, "-m", "bench.sim_server", "--rate", str(rate), "--events",
            str(events), "--record", str(record), "--entities", str(entities),
            "--flow-control", str(flow_control),
        ]  # fmt: skip
        env = {**os.environ, "HA_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
        proc = self.spawn("simulator", argv, env, json_stdout=True)
        proc.url = proc.next_line("url", 20)["url"]  # type: ignore[attr-defined]
        return proc

    def listener(self, env: dict[str, str], ha_url: str) -> Proc:
        return self.spawn(
            "listener", [str(BIN / "ha-ingestor"), "listener"], {**env, "HA_URL": ha_url}
        )

    def worker(
        self, env: dict[str, str], app: str = "config.celery_app", name: str = "worker"
    ) -> Proc:
        argv = [
            str(BIN / "celery"), "-A", app, "worker", *WORKER_FLAGS,
            "-n", f"{name}-{uuid.uuid4().hex[:6]}@%h",
        ]  # fmt: skip
        return self.spawn(name, argv, env)

    def beat(self, env: dict[str, str], data_dir: Path) -> Proc:
        data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            str(BIN / "celery"), "-A", "config.celery_app", "beat", "--loglevel", "INFO",
            "-s", str(data_dir / "celerybeat-schedule"),
        ]  # fmt: skip
        return self.spawn("beat", argv, env)
