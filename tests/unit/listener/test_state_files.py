"""The listener's files in DATA_DIR: atomic writes, and the watermark of what is handed off."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from listener.handoff.watermark import HandoffWatermark
from listener.state_files import HomeNameFile, WatermarkFile, read_document, write_atomically


def test_an_atomic_write_replaces_the_whole_file_and_fsyncs_file_and_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.json"
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    write_atomically(path, {"handed_off_through": "old"})
    write_atomically(path, {"handed_off_through": "new"})
    assert json.loads(path.read_text()) == {"handed_off_through": "new"}
    # Each write: the temporary file's data, then the folder's entry for the rename.
    assert synced == [str(path) + ".tmp", str(tmp_path)] * 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_write_that_fails_half_way_leaves_the_old_content(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_atomically(path, {"handed_off_through": "old"})
    with pytest.raises(TypeError):
        # json.dump writes the first keys before it meets the one it cannot serialise.
        write_atomically(path, {"handed_off_through": "new", "bad": object()})
    assert json.loads(path.read_text()) == {"handed_off_through": "old"}


@pytest.mark.parametrize("content", ["", "{", "[1]", '"x"'])
def test_a_garbled_file_reads_as_empty_not_as_an_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    assert read_document(path) == {}
    assert WatermarkFile(path).handed_off_through() is None


def test_the_watermark_file_reads_what_older_listeners_wrote(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text('{"last_event_time": "2024-03-01T10:00:00+00:00"}')
    assert WatermarkFile(path).handed_off_through() == "2024-03-01T10:00:00+00:00"
    saved = WatermarkFile(path)
    saved.save("2024-03-01T11:00:00+00:00")
    saved.save(None)  # nothing handed off yet this run: the old mark stays
    assert WatermarkFile(path).handed_off_through() == "2024-03-01T11:00:00+00:00"


def test_the_watermark_moves_only_past_what_is_handed_off_in_order() -> None:
    watermark = HandoffWatermark()
    tickets = [watermark.submitted(mark) for mark in ("t1", None, "t3", "t4", None)]
    assert tickets == [0, 1, 2, 3, 4]
    assert watermark.value is None
    watermark.handed_off(2)  # t1 and the unmarked snapshot state
    assert watermark.value == "t1"
    assert watermark.is_durable(1)
    assert not watermark.is_durable(2)
    watermark.handed_off(1)
    assert watermark.value == "t3"
    watermark.handed_off(2)
    assert watermark.value == "t4"
    assert watermark.is_durable(4)
    assert watermark.submitted_count == 5


def test_a_home_name_is_made_from_has_location_once_and_kept(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="listener.state_files")
    home = HomeNameFile(tmp_path)
    assert home.remembered() is None
    assert home.resolve(None, "Simulated Home") == "simulated_home"
    assert "made from HA's location name 'Simulated Home'" in caplog.text
    caplog.clear()
    again = HomeNameFile(tmp_path)  # a restart
    assert again.remembered() == "simulated_home"
    assert again.resolve(None, "Renamed Home") == "simulated_home", "stable across HA renames"
    assert "keeps the name 'simulated_home'" in caplog.text
    caplog.clear()
    assert again.resolve(None, "Renamed Home") == "simulated_home"
    assert caplog.text == "", "said once per change"
    assert again.resolve("lab-2", "Renamed Home") == "lab-2", "HA_INSTANCE wins"
    assert HomeNameFile(tmp_path).resolve(None, None) == "simulated_home"


def test_no_location_name_makes_the_fallback_name(tmp_path: Path) -> None:
    assert HomeNameFile(tmp_path).resolve(None, None) == "home"
    (tmp_path / "home.json").write_text('{"instance": "Not Valid"}')
    assert HomeNameFile(tmp_path).remembered() is None, "an invalid kept name is made again"
