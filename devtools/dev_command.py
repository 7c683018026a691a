"""`make run`: a local Redis and InfluxDB 1.x under ./.data, the simulator, and the Procfile.

Everything it starts, it stops: the app processes through honcho (Ctrl-C), the servers by PID
in a `finally`.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import sys
from pathlib import Path

from honcho.environ import parse_procfile
from honcho.manager import Manager
from honcho.printer import Printer

from devtools.local_servers import InfluxDBServer, RedisServer, free_port


def _port_or_free(preferred: int) -> int:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
        except OSError:
            return free_port()
    return preferred


def _create_database(influx_url: str, database: str) -> None:
    import urllib.parse
    import urllib.request

    body = urllib.parse.urlencode({"q": f'CREATE DATABASE "{database}"'}).encode()
    with urllib.request.urlopen(f"{influx_url}/query", data=body, timeout=10) as reply:
        reply.read()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=Path(".data"), help="(./.data)")
    parser.add_argument("--procfile", type=Path, default=Path("Procfile"), help="(./Procfile)")
    parser.add_argument("--rate", type=float, default=20.0, help="simulator events/s (20)")
    parser.add_argument("--entities", type=int, default=30, help="simulated entities (30)")


def run(args: argparse.Namespace) -> int:
    """Start the servers, then the Procfile (and the simulator) under honcho, until Ctrl-C."""

    data_dir = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    redis_server = RedisServer(data_dir / "redis", port=_port_or_free(6380), appendonly=True)
    influx = InfluxDBServer(data_dir / "influxdb", port=_port_or_free(8086))
    database = os.environ.get("INFLUXDB_DATABASE", "home_assistant")
    started = []
    try:
        for server in (redis_server, influx):
            server.start()
            started.append(server)
        _create_database(influx.url, database)
        env = {
            "CELERY_BROKER_URL": redis_server.url,
            "INFLUXDB_API_VERSION": "1",
            "INFLUXDB_URL": influx.url,
            "INFLUXDB_DATABASE": database,
            "DATA_DIR": str(data_dir),
            "PYTHONUNBUFFERED": "1",
        }
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        manager = Manager(Printer(sys.stdout))
        procfile = parse_procfile(args.procfile.read_text(encoding="utf-8"))
        if not os.environ.get("HA_URL"):
            sim_port = _port_or_free(8123)
            token = secrets.token_urlsafe(24)
            env.update(HA_URL=f"http://127.0.0.1:{sim_port}", HA_TOKEN=token)
            manager.add_process(
                "simulator",
                f"ha-ingestor simulate --host 127.0.0.1 --port {sim_port} --rate {args.rate} "
                f"--entities {args.entities}",
                env={**os.environ, **env},
            )
        for name, command in procfile.processes.items():
            manager.add_process(name, command, env={**os.environ, **env})
        influx_cli = "influx" if shutil.which("influx") else "curl"
        print(
            f"\nha-ingestor dev stack: Redis {redis_server.url}, InfluxDB {influx.url} "
            f"(database {database}), health http://127.0.0.1:{os.environ.get('HEALTH_PORT', 8001)}"
            f"/health, Flower http://127.0.0.1:{os.environ.get('FLOWER_PORT', 5555)}\n"
            f"Query what was written ({influx_cli}):\n"
            f"  influx -port {influx.port} -database {database} -execute 'SHOW MEASUREMENTS'\n"
            f"  curl -sG {influx.url}/query --data-urlencode db={database} "
            "--data-urlencode 'q=SELECT * FROM \"°C\" ORDER BY time DESC LIMIT 5'\n"
            "Ctrl-C stops everything.\n",
            flush=True,
        )
        manager.loop()
        return int(manager.returncode or 0)
    finally:
        for server in reversed(started):
            server.stop()
