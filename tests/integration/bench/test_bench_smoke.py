"""`python -m bench --quick`'s smallest scenario runs and reports well-formed figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
KEYS = {"figure", "value", "unit", "baseline", "ratio", "target"}
FIGURES = {
    "listener_capacity", "worker_cpu_per_event", "e2e_throughput", "e2e_latency_p99",
    "burst_drain", "rss_listener", "rss_worker", "lost_events", "worker_drain_rate",
    "worker_cpu_per_event_us", "stack_cpu_per_event_us", "redis_bytes_per_waiting_event",
    "burst_drain_one_worker_s", "steady_listener_cpu_200_us", "steady_listener_cpu_2000_us",
    "steady_stack_cpu_200_us", "heartbeat_points_per_hour", "heartbeat_cpu_per_hour_s",
    "worker_cpu_two_destinations", "backlog_bytes_per_waiting_event",
    "destination_outage_p99_s", "destination_backlog_drain_s", "homes_worker_cpu_per_event_us",
    "homes_p99_worst_home_s", "homes_listener_rss_mb",
}  # fmt: skip


def _quick(tmp_path: Path, scenario: str, timeout: float) -> list[dict[str, Any]]:
    """`python -m bench --quick --only SCENARIO`: its JSON lines, each checked for shape."""
    results = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", scenario, "--results", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len({line["figure"] for line in lines}) == len(lines), "one line per figure"
    for line in lines:
        assert set(line) == KEYS
        assert line["figure"] in FIGURES
        assert isinstance(line["value"], int | float)
        assert isinstance(line["unit"], str)
        assert isinstance(line["target"], str)
        assert line["baseline"] is None or isinstance(line["baseline"], int | float)
        assert line["ratio"] is None or isinstance(line["ratio"], int | float)
    text = results.read_text(encoding="utf-8")
    assert "Machine:" in text
    for line in lines:
        assert f"| {line['figure']} |" in text
    return lines


def test_quick_capacity_run_prints_one_json_line_per_figure_and_loses_nothing(
    tmp_path: Path,
) -> None:
    by_name = {line["figure"]: line for line in _quick(tmp_path, "capacity", 120)}
    assert set(by_name) == {"listener_capacity", "lost_events"}
    assert by_name["listener_capacity"]["value"] > 0
    assert by_name["listener_capacity"]["baseline"] > 0
    assert by_name["lost_events"]["value"] == 0
    assert by_name["lost_events"]["baseline"] >= 8_000, "every event the simulator sent counted"


def test_quick_steady_run_measures_listener_and_stack_against_the_floor(tmp_path: Path) -> None:
    by_name = {line["figure"]: line for line in _quick(tmp_path, "steady", 240)}
    steady = {
        "steady_listener_cpu_200_us", "steady_listener_cpu_2000_us", "steady_stack_cpu_200_us",
    }  # fmt: skip
    assert set(by_name) == steady | {"lost_events"}
    for name in steady:
        assert by_name[name]["value"] > 0
        assert by_name[name]["baseline"] > 0, "the minimal client measured in the same run"
    assert by_name["lost_events"]["value"] == 0
    # 200/s and 2,000/s for the listener, 200/s for the stack: 3 s each, --quick.
    assert by_name["lost_events"]["baseline"] == 3 * (200 + 2000 + 200)


def test_quick_destinations_run_measures_the_second_destination_beside_one(
    tmp_path: Path,
) -> None:
    by_name = {
        line["figure"]: line
        for line in _quick(tmp_path, "destinations_cpu,destinations_backlog", 240)
    }
    assert set(by_name) == {
        "worker_cpu_two_destinations", "backlog_bytes_per_waiting_event", "lost_events",
    }  # fmt: skip
    for name in ("worker_cpu_two_destinations", "backlog_bytes_per_waiting_event"):
        assert by_name[name]["value"] > 0
        assert by_name[name]["baseline"] > 0, "measured beside its baseline in the same run"
    assert by_name["lost_events"]["value"] == 0


def test_quick_homes_run_measures_several_homes_beside_one(tmp_path: Path) -> None:
    by_name = {line["figure"]: line for line in _quick(tmp_path, "homes", 300)}
    homes = {"homes_worker_cpu_per_event_us", "homes_p99_worst_home_s", "homes_listener_rss_mb"}
    assert set(by_name) == homes | {"lost_events"}
    for name in homes:
        assert by_name[name]["value"] > 0
        assert by_name[name]["baseline"] > 0, "the one-home run of the same bench run"
    assert by_name["lost_events"]["value"] == 0
    # 1 home, then 3 homes plus their backlog phase, at 100/s each, --quick: every event counted.
    assert by_name["lost_events"]["baseline"] >= 100 * 4 + 3 * 100 * (4 + 2) * 0.9
    text = (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    for home in ("home_01", "home_02", "home_03"):
        assert f"homes: {home} p99" in text, "one latency line per home"
