"""The frame trace file: redaction at any depth, rotation at the cap, the oldest dropped."""

from __future__ import annotations

import json
from pathlib import Path

from config.redaction import MASK
from listener.ha.frame_trace import FrameTrace, redact, trace_files


def test_redact_masks_secret_fields_at_any_depth() -> None:
    frame = {
        "type": "auth",
        "access_token": "abc",
        "data": [{"new_state": {"attributes": {"Password": "p", "token": 1, "tokens": "kept"}}}],
    }
    assert redact(frame) == {
        "type": "auth",
        "access_token": MASK,
        "data": [
            {"new_state": {"attributes": {"Password": MASK, "token": MASK, "tokens": "kept"}}}
        ],
    }


def test_known_secrets_are_scrubbed_from_any_field_and_non_json(tmp_path: Path) -> None:
    trace = FrameTrace(tmp_path / "t.jsonl", 10_000, 1, secrets=["s3cret-value"])
    trace.record("out", json.dumps({"type": "x", "note": "has s3cret-value inside"}))
    trace.record("in", b"not json s3cret-value")
    trace.close()
    text = (tmp_path / "t.jsonl").read_text()
    assert "s3cret-value" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["frame"] == {"type": "x", "note": f"has {MASK} inside"}
    assert lines[1]["frame"] == f"not json {MASK}"
    assert lines[1]["size"] == len(b"not json s3cret-value")
    assert [line["dir"] for line in lines] == ["out", "in"]


def test_rotation_keeps_each_file_under_the_cap_and_drops_the_oldest(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    trace = FrameTrace(path, 1_000, 2)
    for n in range(100):
        trace.record("in", json.dumps({"type": "event", "n": n}))
    trace.close()
    files = trace_files(path)
    assert files == [tmp_path / "t.jsonl.2", tmp_path / "t.jsonl.1", path]
    assert all(f.stat().st_size <= 1_000 for f in files)
    numbers = [json.loads(line)["frame"]["n"] for f in files for line in f.read_text().splitlines()]
    assert numbers == list(range(numbers[0], 100)), (
        "frames lost or out of order within the kept files"
    )
    assert numbers[0] > 0, "nothing was dropped: the cap did not apply"
    assert trace.rotations > 2


def test_a_frame_larger_than_the_cap_gets_a_file_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    trace = FrameTrace(path, 200, 3)
    trace.record("in", json.dumps({"type": "pong", "id": 1}))
    trace.record("in", json.dumps({"type": "result", "result": "x" * 500}))
    trace.record("in", json.dumps({"type": "pong", "id": 2}))
    trace.close()
    sizes = [len(f.read_text().splitlines()) for f in trace_files(path)]
    assert sizes == [1, 1, 1]


def test_reopening_appends_and_counts_what_is_there(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    first = FrameTrace(path, 300, 1)
    first.record("in", json.dumps({"type": "pong", "id": 1, "pad": "x" * 150}))
    first.close()
    second = FrameTrace(path, 300, 1)
    second.record("in", json.dumps({"type": "pong", "id": 2, "pad": "x" * 150}))
    second.close()
    assert len(trace_files(path)) == 2, "the reopened file ignored what it already held"
