"""`ha-ingestor import` end to end: the simulator's recorded past → a real worker → InfluxDB.

The simulator computes days of history and statistics (devtools/simulator/recorder_past.py);
what it holds is compared with what InfluxDB holds after the command exits.
"""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import urllib3

from core.rules import Rules
from core.statistics_point import PERIODS
from devtools.local_servers import free_port
from devtools.simulator.entities import us_from_datetime
from listener.history.backfill import state_event, states_from_history
from tests.expectations import expected_points
from tests.helpers import InfluxDatabase, wait_until
from tests.processes import BIN, AppProcess, app_env, worker_argv
from tests.sim_thread import SimulatorThread

pytestmark = pytest.mark.e2e

TOKEN = "import-token-0123456789"
DAYS = 2.0
INTERVAL = 900.0


@dataclass
class ImportStack:
    tmp: Path
    sim: SimulatorThread
    env: dict[str, str]
    influx: InfluxDatabase
    worker: AppProcess | None = None

    def start_worker(self) -> None:
        self.worker = AppProcess("worker", worker_argv(), self.env, self.tmp).start()

    def command(self, *args: str) -> AppProcess:
        argv = [str(BIN / "ha-ingestor"), "import", *args]
        return AppProcess("import", argv, self.env, self.tmp).start()

    def run(self, *args: str, timeout: float = 60) -> tuple[int, str]:
        process = self.command(*args)
        code = process.wait(timeout)
        return code, process.log_text()

    def expected_states(self, start: datetime, end: datetime) -> dict[Any, Any]:
        """The points of every state the simulator recorded in [start, end)."""
        a, b = us_from_datetime(start), us_from_datetime(end)

        def history() -> dict[str, list[dict[str, Any]]]:
            rows = self.sim.sim.past.history(a - 1, b)
            home = self.sim.sim.home.history_during_period(
                a - 1, b, include_start_time_state=False, significant_changes_only=False
            )
            for entity_id, more in home.items():
                rows[entity_id] = rows.get(entity_id, []) + more
            return rows

        events = [state_event(s) for s in states_from_history(self.sim.do(history))]
        return expected_points(events, Rules.from_mapping(None))

    def expected_statistics(self, start: datetime, end: datetime) -> int:
        a, b = us_from_datetime(start), us_from_datetime(end)
        past = self.sim.sim.past
        return sum(past.count_statistics(period, a, b) for period in PERIODS)

    def state_points(self) -> int:
        rows = self.influx.query("SELECT * FROM /.*/ WHERE \"period\" = '' GROUP BY *")
        return len(rows)

    def statistics_points(self) -> int:
        rows = self.influx.query('SELECT * FROM /.*/ WHERE "period" =~ /./ GROUP BY *')
        return len(rows)


@pytest.fixture
def stack(tmp_path: Path, redis_url: str, influx_db: InfluxDatabase) -> Iterator[ImportStack]:
    sim = SimulatorThread(
        token=TOKEN, rate=10, entities=20, past_days=DAYS, past_interval=INTERVAL
    ).start(paused=True)
    env = app_env(
        HA_URL=sim.sim.url,
        HA_TOKEN=TOKEN,
        CELERY_BROKER_URL=redis_url,
        INFLUXDB_URL=influx_db.url,
        INFLUXDB_DATABASE=influx_db.name,
        DATA_DIR=str(tmp_path / "data"),
    )
    built = ImportStack(tmp_path, sim, env, influx_db)
    try:
        yield built
    finally:
        if built.worker is not None:
            built.worker.stop()
        sim.stop()


def _range(stack: ImportStack) -> tuple[str, datetime, datetime]:
    now = datetime.now(UTC)
    since = datetime.fromtimestamp(stack.sim.sim.past.start_us / 1e6 - 3600, UTC)
    return since.isoformat(), since, now


def _states_cursor(path: Path) -> datetime:
    """Where the import's states cursor stands (the epoch before it saved one)."""
    try:
        position = json.loads(path.read_text())["positions"]["states"]
    except (OSError, ValueError, KeyError):
        return datetime.fromtimestamp(0, UTC)
    return datetime.fromisoformat(position)


def test_import_states_and_statistics_lands_every_row(stack: ImportStack) -> None:
    stack.start_worker()
    since_text, since, now = _range(stack)
    code, out = stack.run("--since", since_text)
    assert code == 0, out
    expected = stack.expected_states(since, now)
    assert len(expected) > 1000
    assert stack.state_points() == len(expected), out
    statistics = stack.expected_statistics(since, now)
    assert statistics > 100
    assert stack.statistics_points() == statistics
    assert f"{len(expected)} states, {statistics} statistics rows" in out
    # Twice: the same points again, nothing more.
    code, out = stack.run("--since", since_text)
    assert code == 0, out
    assert stack.state_points() == len(expected)
    assert stack.statistics_points() == statistics
    print(f"\nFIGURES import both: simulator holds {len(expected)} state points and {statistics} "
          f"statistics rows; InfluxDB {stack.state_points()} and {stack.statistics_points()}, "
          "the same after importing twice")  # fmt: skip


def test_states_only_and_statistics_only(stack: ImportStack) -> None:
    stack.start_worker()
    since_text, since, now = _range(stack)
    code, out = stack.run("--since", since_text, "--no-statistics")
    assert code == 0, out
    assert stack.state_points() == len(stack.expected_states(since, now))
    assert stack.statistics_points() == 0
    code, out = stack.run("--since", since_text, "--no-states", "--entity-globs", "sensor.*")
    assert code == 0, out
    assert stack.statistics_points() == stack.expected_statistics(since, now)
    assert "0 states" in out
    print(f"\nFIGURES import states only: simulator {len(stack.expected_states(since, now))}, "
          f"InfluxDB {stack.state_points()}; then statistics only: simulator "
          f"{stack.expected_statistics(since, now)}, "
          f"InfluxDB {stack.statistics_points()}")  # fmt: skip


def test_dry_run_counts_and_writes_nothing(stack: ImportStack) -> None:
    since_text, since, now = _range(stack)
    code, out = stack.run("--since", since_text, "--dry-run")  # no worker needed
    assert code == 0, out
    expected = len(stack.expected_states(since, now))
    assert f"dry run: {expected} states and {stack.expected_statistics(since, now)}" in out
    assert stack.state_points() == 0
    assert stack.statistics_points() == 0
    assert not (stack.tmp / "data" / "import" / "cursor.json").exists()


def _interrupt(stack: ImportStack, command: AppProcess) -> None:
    """Ctrl-C in the middle of the import: the worker is paused first, so the import cannot
    finish between the cursor check and the signal (a small past imports in a second)."""
    assert stack.worker is not None
    assert command.proc is not None
    os.kill(stack.worker.pid, signal.SIGSTOP)
    try:
        command.proc.send_signal(signal.SIGINT)
        wait_until(lambda: "interrupted" in command.log_text(), 20, message="the import stopping")
    finally:
        os.kill(stack.worker.pid, signal.SIGCONT)
    assert command.wait(20) == 130, command.log_text()


def test_interrupted_import_resumes_and_ends_with_the_same_totals(stack: ImportStack) -> None:
    stack.env["IMPORT_MAX_QUEUE"] = "100"  # slow: the workers pace the import
    stack.start_worker()
    since_text, since, now = _range(stack)
    cursor = stack.tmp / "data" / "import" / "cursor.json"
    first = stack.command("--since", since_text, "--window", "600")
    wait_until(lambda: _states_cursor(cursor) > since + timedelta(hours=3), 30, message="3 h")
    _interrupt(stack, first)
    assert "interrupted" in first.log_text()
    code, out = stack.run("--since", since_text, "--window", "600")
    assert code == 0, out
    assert "resuming" in out
    expected = stack.expected_states(since, now)
    resumed = int(out.rsplit("import finished in", 1)[1].split(": ", 1)[1].split(" states")[0])
    assert 0 < resumed < len(expected)  # went on, did not start over
    assert stack.state_points() == len(expected)
    assert stack.statistics_points() == stack.expected_statistics(since, now)
    assert not cursor.exists()
    print(f"\nFIGURES import resumed after SIGINT: the second run read {resumed} of "
          f"{len(expected)} states; InfluxDB {stack.state_points()} state points, "
          f"{stack.statistics_points()} statistics (simulator "
          f"{stack.expected_statistics(since, now)})")  # fmt: skip


def test_restart_starts_over(stack: ImportStack) -> None:
    stack.env["IMPORT_MAX_QUEUE"] = "100"
    stack.start_worker()
    since_text, since, now = _range(stack)
    cursor = stack.tmp / "data" / "import" / "cursor.json"
    first = stack.command("--since", since_text, "--no-statistics", "--window", "600")
    wait_until(lambda: _states_cursor(cursor) > since + timedelta(hours=3), 30, message="3 h")
    _interrupt(stack, first)
    code, out = stack.run("--since", since_text, "--no-statistics", "--window", "600", "--restart")
    assert code == 0, out
    assert "resuming" not in out
    expected = len(stack.expected_states(since, now))
    assert f"{expected} states" in out
    assert stack.state_points() == expected


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--since", "2999-01-01"], "is in the future"),
        (["--since", "2d", "--until", "3d"], "is not after --since"),
        (["--since", "yesterday"], "is not a time"),
        (["--since", "2d", "--entities", "sensor.nope"], "unknown entity sensor.nope"),
        (["--since", "2d", "--entity-globs", "nothing.*"], "match no entity"),
    ],
)
def test_bad_input_exits_2_with_one_line(stack: ImportStack, args: list[str], says: str) -> None:
    code, out = stack.run(*args)
    assert code == 2, out
    assert says in out
    assert "Traceback" not in out


def test_ha_without_recorder_is_refused(tmp_path: Path, redis_url: str) -> None:
    sim = SimulatorThread(token=TOKEN, rate=10, recorder=False).start(paused=True)
    try:
        env = app_env(HA_URL=sim.sim.url, HA_TOKEN=TOKEN, CELERY_BROKER_URL=redis_url,
                      DATA_DIR=str(tmp_path / "data"))  # fmt: skip
        for args in (["--no-statistics"], ["--no-states"]):
            argv = [str(BIN / "ha-ingestor"), "import", "--since", "1d", *args]
            process = AppProcess("import", argv, env, tmp_path).start()
            assert process.wait(30) == 2
            text = process.log_text()
            assert "answered unknown_command" in text, text
            assert "enable `recorder:`" in text
    finally:
        sim.stop()


def test_rows_influxdb_refuses_are_dead_lettered_and_the_import_still_finishes(
    stack: ImportStack,
) -> None:
    since_text, since, now = _range(stack)
    middle = (stack.sim.sim.past.start_us + stack.sim.sim.past.end_us) // 2 * 1000
    # A text `value` in °C, and a text shadow `value_float`: every °C point of that shard is a
    # field type conflict no shadow field can take.
    line = f'°C,domain=sensor,entity_id=squatter value="text",value_float="text" {middle}'
    response = urllib3.request("POST", f"{stack.influx.url}/write?db={stack.influx.name}",
                               body=line.encode())  # fmt: skip
    assert response.status == 204, response.data
    stack.start_worker()
    code, out = stack.run("--since", since_text, "--no-statistics")
    assert code == 0, out
    states, written, skipped, dead = (int(n) for n in re.findall(
        r"(\d+) states, .*?; (\d+) points written, (\d+) skipped by rules, (\d+) dead letters",
        out)[0])  # fmt: skip
    assert dead > 0
    assert states == len(stack.expected_states(since, now)) == written + skipped + dead
    assert stack.state_points() >= written  # (the squatter may not be read back alike)


def test_an_unreachable_ha_ends_the_import_with_exit_1(tmp_path: Path, redis_url: str) -> None:
    env = app_env(HA_URL=f"http://127.0.0.1:{free_port()}", HA_TOKEN=TOKEN,
                  CELERY_BROKER_URL=redis_url, DATA_DIR=str(tmp_path / "data"))  # fmt: skip
    argv = [str(BIN / "ha-ingestor"), "import", "--since", "1d"]
    process = AppProcess("import", argv, env, tmp_path).start()
    assert process.wait(30) == 1
    assert "cannot reach Home Assistant" in process.log_text()


def test_an_import_acts_for_its_home(stack: ImportStack) -> None:
    """Two homes' imports (one named from HA's location, one by HA_INSTANCE, each with its own
    DATA_DIR, where its cursor lives while it runs): every point carries its home."""
    stack.env["INSTANCE_TAG"] = "true"
    stack.start_worker()
    since_text, since, now = _range(stack)
    code, out = stack.run("--since", since_text)
    assert code == 0, out
    assert "importing for the home 'simulated_home'" in out
    lab = {**stack.env, "HA_INSTANCE": "lab", "DATA_DIR": str(stack.tmp / "lab")}
    argv = [str(BIN / "ha-ingestor"), "import", "--since", since_text]
    process = AppProcess("import-lab", argv, lab, stack.tmp).start()
    assert process.wait(60) == 0, process.log_text()
    assert "importing for the home 'lab'" in process.log_text()
    per_home = len(stack.expected_states(since, now)) + stack.expected_statistics(since, now)
    rows = stack.influx.query("SELECT * FROM /.*/ GROUP BY *")
    homes: dict[str, int] = {}
    for row in rows:
        homes[row.get("instance") or ""] = homes.get(row.get("instance") or "", 0) + 1
    assert homes == {"simulated_home": per_home, "lab": per_home}
    kept = json.loads((stack.tmp / "data" / "home.json").read_text())
    assert kept["instance"] == "simulated_home", "named as its listener would, and kept"
    assert not (stack.tmp / "lab" / "home.json").exists(), "HA_INSTANCE: nothing to keep"
