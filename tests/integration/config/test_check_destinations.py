"""`ha-ingestor check` with several destinations: one line each, the failing one named with its
fix, and VictoriaMetrics behind the `influxdb` kind told apart."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from devtools.local_servers import free_port
from tests.helpers import InfluxDatabase, Victoria
from tests.processes import BIN, app_env

pytestmark = pytest.mark.integration

PASSWORD = "offsite-pw-5c1e"


def check(redis_url: str, influx_db: InfluxDatabase, config: Path, tmp_path: Path) -> str:
    env = app_env(
        CELERY_BROKER_URL=redis_url,
        INFLUXDB_URL=influx_db.url,
        INFLUXDB_DATABASE=influx_db.name,
        HA_INGESTOR_CONFIG=str(config),
        DATA_DIR=str(tmp_path / "data"),
    )
    done = subprocess.run(
        [str(BIN / "ha-ingestor"), "check"], env=env, capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 1, done.stdout + done.stderr  # HA is not configured either
    return done.stdout


def lines_of(output: str, name: str) -> list[str]:
    """The outcome line of the check called `name` and its fix line, if any."""
    lines = output.splitlines()
    [at] = [i for i, line in enumerate(lines) if line[8:].startswith(name + " ")]
    following = lines[at + 1 : at + 2]
    return lines[at : at + 1] + [x for x in following if x.strip().startswith("fix:")]


def test_each_destination_is_checked_and_the_unreachable_one_says_how_to_fix_it(
    redis_url: str, influx_db: InfluxDatabase, victoria: Victoria, tmp_path: Path
) -> None:
    secret = tmp_path / "offsite.password"
    secret.write_text(PASSWORD + "\n", encoding="utf-8")
    config = tmp_path / "ha-ingestor.yaml"
    down = f"http://127.0.0.1:{free_port()}"
    config.write_text(
        "destinations:\n"
        "  - name: default\n"
        "  - name: archive\n"
        "    kind: victoriametrics\n"
        f"    url: {victoria.url}\n"
        "  - name: offsite\n"
        f"    url: {down}\n"
        "    username: ha\n"
        f"    password_file: {secret}\n",
        encoding="utf-8",
    )
    out = check(redis_url, influx_db, config, tmp_path)
    [configured] = lines_of(out, "configuration")
    assert configured.startswith("  OK  ")
    assert f"default: InfluxDB v1 {influx_db.url} database {influx_db.name}" in configured
    assert f"archive: VictoriaMetrics {victoria.url}" in configured
    assert f"offsite: InfluxDB v1 {down}" in configured
    [default] = lines_of(out, "InfluxDB default")
    assert default.startswith("  OK  ")
    assert f"accepts writes to database '{influx_db.name}'" in default
    [archive] = lines_of(out, "VictoriaMetrics archive")
    assert archive.startswith("  OK  ")
    offsite, fix = lines_of(out, "InfluxDB offsite")
    assert offsite.startswith("  FAIL")
    assert "fix: start InfluxDB or correct the url of destination 'offsite'" in fix
    assert PASSWORD not in out


def test_victoriametrics_given_as_an_influxdb_destination_is_named_with_the_fix(
    redis_url: str, influx_db: InfluxDatabase, victoria: Victoria, tmp_path: Path
) -> None:
    config = tmp_path / "ha-ingestor.yaml"
    config.write_text(
        f"destinations:\n  - name: default\n  - name: vm\n    url: {victoria.url}\n",
        encoding="utf-8",
    )
    out = check(redis_url, influx_db, config, tmp_path)
    assert lines_of(out, "InfluxDB default")[0].startswith("  OK  ")
    vm, fix = lines_of(out, "InfluxDB vm")
    assert vm.startswith("  FAIL")
    assert "is VictoriaMetrics, not InfluxDB: it would store every text state as 0" in vm
    assert "fix: set `kind: victoriametrics` on destination 'vm' (texts are then written as " in (
        fix
    )
