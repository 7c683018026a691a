"""`make run`: a local Redis and InfluxDB 1.x under ./.data, the simulator, and the Procfile.

Everything it starts, it stops: the app processes through honcho (Ctrl-C), the servers by PID
in a `finally`. While it runs, DATA_DIR/dev-stack.env holds the settings it started with, so
`ha-ingestor status`, `check`, `dlq` and `import` run from another shell in this checkout reach
this stack and not the default Redis (config/dev_stack_file.py); it is removed on the way out.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import sys
import typing
from collections.abc import Mapping
from pathlib import Path

from honcho.environ import parse_procfile
from honcho.manager import Manager
from honcho.printer import Printer
from pydantic import SecretStr

from config.dev_stack_file import find_dev_stack, stack_file, write_stack_file
from config.settings import Settings, environment_names
from devtools.local_servers import InfluxDBServer, RedisServer, free_port

PREFERRED_PORTS: typing.Final = {"redis": 6380, "influxdb": 8086, "simulator": 8123}


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
    parser.add_argument(
        "--free-ports",
        action="store_true",
        help="free ports for everything, the health server and Flower included, instead of "
        "6380, 8086, 8123, HEALTH_PORT and FLOWER_PORT (a second stack, tests)",
    )


def _port(name: str, free_ports: bool) -> int:
    return free_port() if free_ports else _port_or_free(PREFERRED_PORTS[name])


def public_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """The settings set in this environment that are not secrets, by their variable names."""
    given = {name.upper(): value for name, value in environ.items()}
    out = {}
    for name, field in Settings.model_fields.items():
        if SecretStr in (field.annotation, *typing.get_args(field.annotation)):
            continue
        for variable in environment_names(name, field):
            if variable in given:
                out[variable] = given[variable]
    return out


def run(args: argparse.Namespace) -> int:
    """Start the servers, then the Procfile (and the simulator) under honcho, until Ctrl-C."""
    data_dir = args.data_dir.resolve()
    running = find_dev_stack({"DATA_DIR": str(data_dir)})
    if running is not None and running.running():
        print(
            f"ha-ingestor dev: a dev stack already runs with {data_dir} (pid {running.pid}): "
            "stop it first (Ctrl-C in its terminal), or give this one another --data-dir",
            file=sys.stderr,
        )
        return 1
    data_dir.mkdir(parents=True, exist_ok=True)
    redis_server = RedisServer(
        data_dir / "redis", port=_port("redis", args.free_ports), appendonly=True
    )
    influx = InfluxDBServer(data_dir / "influxdb", port=_port("influxdb", args.free_ports))
    settings_file = stack_file(data_dir)
    started = []
    try:
        for server in (redis_server, influx):
            server.start()
            started.append(server)
        env = _stack_settings(redis_server, influx, data_dir, args.free_ports)
        _create_database(influx.url, env["INFLUXDB_DATABASE"])
        manager = Manager(Printer(sys.stdout))
        if not os.environ.get("HA_URL"):
            sim_port = _port("simulator", args.free_ports)
            env.update(HA_URL=f"http://127.0.0.1:{sim_port}", HA_TOKEN=secrets.token_urlsafe(24))
            manager.add_process(
                "simulator",
                f"ha-ingestor simulate --host 127.0.0.1 --port {sim_port} --rate {args.rate} "
                f"--entities {args.entities}",
                env=_process_env(env),
            )
        procfile = parse_procfile(args.procfile.read_text(encoding="utf-8"))
        for name, command in procfile.processes.items():
            manager.add_process(name, command, env=_process_env(env))
        write_stack_file(settings_file, env, os.getpid())
        _print_banner(env, influx)
        manager.loop()
        return int(manager.returncode or 0)
    finally:
        settings_file.unlink(missing_ok=True)
        for server in reversed(started):
            server.stop()


def _stack_settings(
    redis_server: RedisServer, influx: InfluxDBServer, data_dir: Path, free_ports: bool
) -> dict[str, str]:
    """The settings the stack's processes get: the user's public ones, then the stack's own."""
    health = free_port() if free_ports else int(os.environ.get("HEALTH_PORT", 8001))
    flower = free_port() if free_ports else int(os.environ.get("FLOWER_PORT", 5555))
    return {
        **public_settings(os.environ),
        "CELERY_BROKER_URL": redis_server.url,
        "INFLUXDB_API_VERSION": "1",
        "INFLUXDB_URL": influx.url,
        "INFLUXDB_DATABASE": os.environ.get(
            "INFLUXDB_DATABASE", Settings.model_fields["influxdb_database"].default
        ),
        "DATA_DIR": str(data_dir),
        "HEALTH_PORT": str(health),
        "FLOWER_PORT": str(flower),
    }


def _process_env(settings: Mapping[str, str]) -> dict[str, str]:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, **settings, "PATH": path, "PYTHONUNBUFFERED": "1"}


def _print_banner(env: Mapping[str, str], influx: InfluxDBServer) -> None:
    database = env["INFLUXDB_DATABASE"]
    influx_cli = "influx" if shutil.which("influx") else "curl"
    print(
        f"\nha-ingestor dev stack: Redis {env['CELERY_BROKER_URL']}, InfluxDB {influx.url} "
        f"(database {database}), health http://127.0.0.1:{env['HEALTH_PORT']}/health, Flower "
        f"http://127.0.0.1:{env['FLOWER_PORT']}\n"
        f"`ha-ingestor status`, `check`, `dlq` and `import` run here with no broker set reach "
        f"this stack: they read {stack_file(Path(env['DATA_DIR']))}.\n"
        f"Query what was written ({influx_cli}):\n"
        f"  influx -port {influx.port} -database {database} -execute 'SHOW MEASUREMENTS'\n"
        f"  curl -sG {influx.url}/query --data-urlencode db={database} "
        "--data-urlencode 'q=SELECT * FROM \"°C\" ORDER BY time DESC LIMIT 5'\n"
        "Ctrl-C stops everything.\n",
        flush=True,
    )
