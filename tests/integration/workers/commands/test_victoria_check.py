"""`ha-ingestor check` with VictoriaMetrics: its own kind passes; as InfluxDB v2 it is named."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from config.destinations import Destination
from config.settings import load_settings
from devtools.local_servers import free_port
from tests.helpers import InfluxDatabase, Victoria
from workers.commands.store_checks import check_destination
from workers.sinks.victoria_sink import looks_like_victoria

pytestmark = pytest.mark.integration


def test_the_victoriametrics_kind_passes(victoria: Victoria) -> None:
    outcome = check_destination(
        Destination.from_settings(
            load_settings(influxdb_url=victoria.url, influxdb_kind="victoriametrics")
        )
    )
    assert outcome.ok, outcome
    assert outcome.name == "VictoriaMetrics"


def test_victoriametrics_behind_the_influxdb_v2_kind_is_named(victoria: Victoria) -> None:
    settings = load_settings(
        influxdb_url=victoria.url,
        influxdb_api_version=2,
        influxdb_token=SecretStr("unused"),
        influxdb_org="home",
    )
    outcome = check_destination(Destination.from_settings(settings))
    assert not outcome.ok
    assert "is VictoriaMetrics, not InfluxDB" in outcome.detail
    assert outcome.fix == "set INFLUXDB_KIND=victoriametrics (texts are then written as labels)"


def test_influxdb_and_nothing_are_not_taken_for_victoriametrics(
    influx_db: InfluxDatabase,
) -> None:
    assert not looks_like_victoria(influx_db.url, timeout=5)
    assert not looks_like_victoria(f"http://127.0.0.1:{free_port()}", timeout=5)
    outcome = check_destination(
        Destination.from_settings(
            load_settings(
                influxdb_url=f"http://127.0.0.1:{free_port()}", influxdb_kind="victoriametrics"
            )
        )
    )
    assert not outcome.ok
    assert outcome.fix.startswith("start VictoriaMetrics")
