"""`ha-ingestor renames` reads the rename points back from InfluxDB 3 (the stand-in) with SQL."""

from __future__ import annotations

import uuid

import pytest

from config.destinations import Destination
from config.settings import load_settings
from core.line_protocol import encode_point
from core.renames import Rename, rename_event, rename_to_point
from core.rules import Rules
from core.transform import Point
from devtools.influxdb3 import InfluxDB3Server
from workers.sinks.errors import SinkUnavailable
from workers.sinks.influx_query import RenameRow, read_renames
from workers.sinks.influxdb3_sink import InfluxDB3Sink

pytestmark = pytest.mark.integration


def test_renames_are_read_back_oldest_first(influxdb3_server: InfluxDB3Server) -> None:
    assert influxdb3_server.token is not None
    db = f"t_{uuid.uuid4().hex[:12]}"
    settings = load_settings(
        influxdb_kind="influxdb3",
        influxdb_url=influxdb3_server.url,
        influxdb_token=influxdb3_server.token,
        influxdb_database=db,
    )
    assert (
        read_renames(Destination.from_settings(settings)) == []
    )  # nothing written yet: no database, no table

    renames = [
        Rename("r2", "sensor.b", "sensor.b2", "2025-11-26T22:31:06+00:00", "event"),
        Rename("r1", "sensor.a", "sensor.a2", "2025-11-26T22:31:05.5+00:00", "registry"),
    ]
    points = [rename_to_point(rename_event(r), Rules()) for r in renames]
    sink = InfluxDB3Sink(influxdb3_server.url, token=influxdb3_server.token, database=db)
    sink.write([encode_point(p, "ns") for p in points if isinstance(p, Point)])
    sink.close()

    assert read_renames(Destination.from_settings(settings)) == [
        RenameRow("2025-11-26T22:31:05.500Z", "sensor", "a", "a2", "r1", "registry"),
        RenameRow("2025-11-26T22:31:06Z", "sensor", "b", "b2", "r2", "event"),
    ]


def test_a_refused_token_says_so_without_showing_it(influxdb3_server: InfluxDB3Server) -> None:
    secret = "apiv3_not-this-one-1234"
    settings = load_settings(
        influxdb_kind="influxdb3", influxdb_url=influxdb3_server.url, influxdb_token=secret
    )
    with pytest.raises(SinkUnavailable) as caught:
        read_renames(Destination.from_settings(settings))
    assert "401" in str(caught.value)
    assert "INFLUXDB_TOKEN" in str(caught.value)
    assert secret not in str(caught.value)
