"""`ha-ingestor renames` as a user runs it, against a real InfluxDB 1.x."""

from __future__ import annotations

import json
import subprocess

import pytest

from core.line_protocol import encode_point
from core.renames import Rename, rename_event, rename_to_point
from core.rules import Rules
from core.transform import Point
from devtools.local_servers import free_port
from tests.helpers import InfluxDatabase
from tests.processes import BIN, app_env
from workers.sinks.influx_sink import V1Sink

pytestmark = pytest.mark.integration

RENAMES = [
    Rename("r1", "sensor.kitchen_temp", "sensor.kitchen_temperature", 1_790_000_000.0, "event"),
    Rename("r2", "light.lamp", "light.desk_lamp", "2026-11-26T22:31:05+00:00", "registry"),
]


def cli(influx: InfluxDatabase | None, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    url = influx.url if influx else f"http://127.0.0.1:{free_port()}"
    settings = {"INFLUXDB_URL": url, "INFLUXDB_DATABASE": influx.name if influx else "x", **env}
    return subprocess.run(
        [str(BIN / "ha-ingestor"), "renames", *args], env=app_env(**settings),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_renames_are_listed_oldest_first_and_filtered(influx_db: InfluxDatabase) -> None:
    sink = V1Sink(influx_db.url, influx_db.name)
    rules = Rules.from_mapping(None)
    points = [rename_to_point(rename_event(r), rules) for r in reversed(RENAMES)]
    sink.write([encode_point(p, "ns") for p in points if isinstance(p, Point)])
    table = cli(influx_db, TRACK_RENAMES="true")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines() == [
        "2026-09-21T14:13:20Z  sensor.kitchen_temp → sensor.kitchen_temperature  "
        "entity_registry_id=r1  (event)",
        "2026-11-26T22:31:05Z  light.lamp → light.desk_lamp  entity_registry_id=r2  (registry)",
    ]
    only = cli(influx_db, "--json", "--entity", "light.desk_lamp")
    assert only.returncode == 0, only.stderr
    assert json.loads(only.stdout) == [
        {"time": "2026-11-26T22:31:05Z", "domain": "light", "old_entity_id": "lamp",
         "new_entity_id": "desk_lamp", "registry_id": "r2", "found_by": "registry"}
    ]  # fmt: skip


def test_none_recorded_says_whether_tracking_is_on(influx_db: InfluxDatabase) -> None:
    sink = V1Sink(influx_db.url, influx_db.name)
    sink.ensure_database()
    done = cli(influx_db)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "no renames recorded (TRACK_RENAMES is off: renames are not recorded)\n"


def test_an_unreachable_influxdb_is_said_with_exit_3() -> None:
    done = cli(None)
    assert done.returncode == 3
    assert "ha-ingestor renames: cannot reach InfluxDB at http://127.0.0.1:" in done.stderr
    assert "check INFLUXDB_URL" in done.stderr
