"""`python -m bench --quick`'s smallest scenario runs and reports well-formed figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
KEYS = {"figure", "value", "unit", "baseline", "ratio", "target"}
FIGURES = {
    "listener_capacity", "worker_cpu_per_event", "e2e_throughput", "e2e_latency_p99",
    "burst_drain", "rss_listener", "rss_worker", "lost_events", "worker_drain_rate",
    "worker_cpu_per_event_us", "stack_cpu_per_event_us", "redis_bytes_per_waiting_event",
    "burst_drain_one_worker_s",
}  # fmt: skip


def test_quick_capacity_run_prints_one_json_line_per_figure_and_loses_nothing(
    tmp_path: Path,
) -> None:
    results = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "capacity", "--results", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    by_name = {line["figure"]: line for line in lines}
    assert len(by_name) == len(lines), "one line per figure"
    assert set(by_name) == {"listener_capacity", "lost_events"}
    for line in lines:
        assert set(line) == KEYS
        assert line["figure"] in FIGURES
        assert isinstance(line["value"], int | float)
        assert isinstance(line["unit"], str)
        assert isinstance(line["target"], str)
        assert line["baseline"] is None or isinstance(line["baseline"], int | float)
        assert line["ratio"] is None or isinstance(line["ratio"], int | float)
    assert by_name["listener_capacity"]["value"] > 0
    assert by_name["listener_capacity"]["baseline"] > 0
    assert by_name["lost_events"]["value"] == 0
    assert by_name["lost_events"]["baseline"] >= 8_000, "every event the simulator sent counted"
    text = results.read_text(encoding="utf-8")
    assert "| listener_capacity |" in text
    assert "Machine:" in text
