"""`ha-ingestor check` with INFLUXDB_KIND=influxdb3, against the stand-in: /health with the token,
and for each failure what to fix, never the token."""

from __future__ import annotations

import pytest

from config.check_command import check_configuration
from config.destinations import Destination
from config.settings import load_settings
from devtools.influxdb3 import InfluxDB3Server
from devtools.local_servers import free_port
from workers.commands.store_checks import check_destination

pytestmark = pytest.mark.integration


def test_a_reachable_server_that_takes_the_token_passes(
    influxdb3_server: InfluxDB3Server,
) -> None:
    settings = load_settings(
        influxdb_kind="influxdb3",
        influxdb_url=influxdb3_server.url,
        influxdb_token=influxdb3_server.token,
        influxdb_database="home",
    )
    outcome = check_destination(Destination.from_settings(settings))
    assert outcome.ok, outcome
    assert "InfluxDB 3" in outcome.detail
    assert "database 'home'" in outcome.detail
    assert "InfluxDB 3" in check_configuration(settings).detail


@pytest.mark.parametrize(
    ("where", "detail", "fix"),
    [
        ("wrong token", "refused the token (HTTP 401)", "set INFLUXDB_TOKEN"),
        ("nothing", "cannot reach InfluxDB 3 at http://127.0.0.1:", "correct INFLUXDB_URL"),
    ],
)
def test_each_failure_says_what_to_fix_without_the_token(
    influxdb3_server: InfluxDB3Server, where: str, detail: str, fix: str
) -> None:
    secret = "apiv3_wrong-secret-4711"
    url = influxdb3_server.url if where == "wrong token" else f"http://127.0.0.1:{free_port()}"
    settings = load_settings(influxdb_kind="influxdb3", influxdb_url=url, influxdb_token=secret)
    outcome = check_destination(Destination.from_settings(settings))
    assert not outcome.ok
    assert detail in outcome.detail
    assert fix in outcome.fix
    assert secret not in f"{outcome.detail} {outcome.fix}"
