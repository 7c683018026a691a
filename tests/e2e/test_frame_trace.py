"""Frame tracing: a real listener with `--trace-frames` against the simulator.

The trace must hold the whole conversation (auth, commands, results, events, pings) with the
token nowhere in it, rotate at its cap, and `ha-ingestor trace summary` must count what is there.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from config.redaction import MASK
from devtools.local_servers import free_port
from listener.ha.frame_trace import trace_files
from tests.helpers import wait_until
from tests.processes import BIN, AppProcess, app_env, listener_argv
from tests.sim_thread import SimulatorThread

pytestmark = pytest.mark.e2e

TOKEN = "trace-token-0123456789abcdef"
SECRETS = ("hunter2-not-for-logs", "nested-token-value-42")
CAP_BYTES = 20_000


def entries(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for f in trace_files(path) for line in f.read_text().splitlines()]


def messages(entry: dict[str, Any]) -> list[dict[str, Any]]:
    frame = entry["frame"]
    return frame if isinstance(frame, list) else [frame]


def test_trace_holds_the_conversation_with_secrets_masked(tmp_path: Path, redis_url: str) -> None:
    sim = SimulatorThread(token=TOKEN, rate=100).start()
    trace = tmp_path / "trace" / "frames.jsonl"
    env = app_env(
        HA_URL=sim.sim.url,
        HA_TOKEN=TOKEN,
        CELERY_BROKER_URL=redis_url,
        HEALTH_PORT=str(free_port()),
        DATA_DIR=str(tmp_path / "data"),
        HA_HEARTBEAT_INTERVAL="3",
        HA_TRACE_MAX_MB=str(CAP_BYTES / 2**20),
        HA_TRACE_BACKUPS="100",
    )
    argv = [*listener_argv(), "--trace-frames", str(trace)]
    listener = AppProcess("listener", argv, env, tmp_path).start()
    try:
        wait_until(lambda: trace.exists() and '"auth_ok"' in trace_files(trace)[0].read_text(),
                   20, message="the login in the trace")  # fmt: skip
        wait_until(lambda: listener.log_text().count("snapshot: enqueued") == 1, 20,
                   message="the snapshot")  # fmt: skip
        # A frame with secret-named fields deep inside (HA never sends these; a bug might).
        secret_frame = {
            "id": 9999,
            "type": "result",
            "success": True,
            "result": {"password": SECRETS[0], "deeper": [{"Token": SECRETS[1]}]},
        }
        sim.do(sim.sim.send_raw, json.dumps(secret_frame))
        # Just after a pong (3 s apart), a silence that the summary must find.
        wait_until(lambda: '"pong"' in trace_files(trace)[-1].read_text(), 10, message="a pong")
        sim.do(sim.sim.pause_events)
        time.sleep(2.0)
        sim.do(sim.sim.resume_events)
        wait_until(lambda: len(trace_files(trace)) >= 3, 20, message="two rotations")
    finally:
        code = listener.stop()
        sim.stop()
    assert code == 0, listener.log_text()[-3000:]

    files = trace_files(trace)
    for file in files:
        text = file.read_text()
        assert TOKEN not in text, f"the token leaked into {file}"
        for secret in SECRETS:
            assert secret not in text, f"{secret} leaked into {file}"
        lines = text.splitlines()
        assert file.stat().st_size <= CAP_BYTES or len(lines) == 1, f"{file} is over the cap"

    found = entries(trace)
    kinds = [(e["dir"], m.get("type")) for e in found for m in messages(e)]
    assert kinds[:3] == [("in", "auth_required"), ("out", "auth"), ("in", "auth_ok")]
    auth = found[1]["frame"]
    assert auth == {"type": "auth", "access_token": MASK}
    assert {("out", "subscribe_events"), ("out", "get_states"), ("in", "result"),
            ("in", "event"), ("out", "ping"), ("in", "pong")} <= set(kinds)  # fmt: skip
    masked = next(m for e in found for m in messages(e) if m.get("id") == 9999)
    assert masked["result"] == {"password": MASK, "deeper": [{"Token": MASK}]}
    for entry in found:
        assert entry["size"] > 0
        assert isinstance(entry["wall"], float)
        assert isinstance(entry["mono"], float)
    walls = [e["wall"] for e in found]
    assert walls == sorted(walls), "the files are not read oldest first"

    summary = subprocess.run(
        [str(BIN / "ha-ingestor"), "trace", "summary", str(trace), "--top", "3"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    (tmp_path / "summary.txt").write_text(summary.stdout)
    assert summary.returncode == 0, summary.stderr
    out = summary.stdout
    events_in = kinds.count(("in", "event"))
    assert f"{len(files)} file(s), {len(found):,} frames" in out
    assert any(line.split() == ["in", "event", f"{events_in:,}"] for line in out.splitlines()), out
    assert any(line.split() == ["out", "auth", "1"] for line in out.splitlines()), out
    state_changes = sum(
        1
        for e in found
        for m in messages(e)
        if m.get("type") == "event" and m["event"]["event_type"] == "state_changed"
    )
    assert any(line.split() == ["state_changed", f"{state_changes:,}"] for line in out.splitlines())
    biggest = max(e["size"] for e in found)
    largest = out.split("largest frames:\n")[1].splitlines()[0]
    assert largest.split()[0] == f"{biggest:,}", out
    longest_gap = float(out.split("longest gaps between frames from HA:\n")[1].split()[0])
    assert 1.8 <= longest_gap < 3.0, out


def test_summary_without_a_trace_says_how_to_make_one(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "ha-ingestor"), "trace", "summary", str(tmp_path / "none.jsonl")],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "HA_TRACE_FRAMES" in result.stderr


def test_an_unwritable_trace_path_stops_the_listener_with_what_to_do(
    tmp_path: Path, redis_url: str
) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    env = app_env(
        HA_URL="http://127.0.0.1:1",
        HA_TOKEN=TOKEN,
        CELERY_BROKER_URL=redis_url,
        DATA_DIR=str(tmp_path / "data"),
        HA_TRACE_FRAMES=str(tmp_path / "a-file" / "frames.jsonl"),
    )
    result = subprocess.run(
        listener_argv(), env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 2, result.stderr
    assert "HA_TRACE_FRAMES: cannot write the frame trace" in result.stderr
    assert "choose a writable path" in result.stderr
    assert TOKEN not in result.stderr
