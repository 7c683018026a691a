"""INFLUXDB_KIND=influxdb3 end to end: simulator → listener → Redis → worker → the InfluxDB 3
stand-in (devtools/influxdb3/), read back through its query_sql: every point, numbers and
strings, none dead-lettered (the stack checks)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import urllib3

from devtools.influxdb3 import InfluxDB3Server
from tests.e2e.test_sinks_e2e import stack
from tests.expectations import SeriesKey

pytestmark = pytest.mark.e2e

DATABASE = "home_e2e"


def to_ns(rendered: str) -> int:
    """The stand-in's rendering of a time (no zone, 0/3/6/9 fraction digits) back to ns."""
    whole, _, fraction = rendered.partition(".")
    seconds = int(datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp())
    return seconds * 10**9 + int(fraction.ljust(9, "0") or 0)


def read_back(server: InfluxDB3Server, measurements: set[str]) -> dict[SeriesKey, dict[str, Any]]:
    http = urllib3.PoolManager(retries=False, timeout=10)
    found: dict[SeriesKey, dict[str, Any]] = {}
    for measurement in measurements:
        sql = f'SELECT * FROM "{measurement}"'
        answer = http.request(
            "GET",
            f"{server.url}/api/v3/query_sql?{urlencode({'db': DATABASE, 'q': sql})}",
            headers={"Authorization": f"Bearer {server.token}"},
        )
        assert answer.status == 200, answer.data
        for row in json.loads(answer.data):
            key = (row["domain"], row["entity_id"], to_ns(row["time"]))
            assert key not in found, key
            found[key] = row
    return found


def test_every_point_reaches_influxdb3(
    tmp_path: Path, redis_url: str, influxdb3_server: InfluxDB3Server
) -> None:
    assert influxdb3_server.token is not None
    with stack(
        tmp_path,
        redis_url,
        INFLUXDB_KIND="influxdb3",
        INFLUXDB_URL=influxdb3_server.url,
        INFLUXDB_TOKEN=influxdb3_server.token,
        INFLUXDB_DATABASE=DATABASE,
    ) as expected:
        found = read_back(influxdb3_server, {point.measurement for point in expected.values()})

    assert found.keys() == expected.keys()
    strings = 0
    for key, point in expected.items():
        for name, value in point.fields:
            if isinstance(value, str):
                assert found[key][name] == value, (key, name)
                strings += 1
            else:
                assert found[key][name] == pytest.approx(value), (key, name)
    assert strings > 0, "string fields were checked too"
