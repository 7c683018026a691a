"""Health with several destinations, pure: each destination's figures and checks
(core.destination_rules, core.health_beat), the report's `destinations` section and its round
trip through the stored report (core.health_report)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from core.destination_rules import BacklogFigures, destination_checks
from core.health_beat import Readings, StoreReadings, beat_figures
from core.health_check import Check, Thresholds
from core.health_report import BeatFigures, build_report
from core.health_rules import PipelineFigures
from core.queue_trend import QueueProgress, QueueReading

T = Thresholds(window_s=300)
NOW = 1_800_000_000.0
MINUTE = int(NOW // 60)
QUEUE = QueueReading(depth=0, in_flight=0, workers_alive=1)


def store(**changes: object) -> StoreReadings:
    return replace(StoreReadings(dead_letters_stored=0), **changes)  # type: ignore[arg-type]


def several(default: StoreReadings, archive: StoreReadings, **changes: object) -> Readings:
    """Readings as beat makes them: the prefix-level figures are `default`'s."""
    readings = Readings(
        now=NOW,
        listener=None,
        buckets=default.buckets,
        totals=default.totals,
        dead_letter_reasons=default.dead_letter_reasons,
        last_write_error=default.last_write_error,
        dead_letters_stored=default.dead_letters_stored,
        queue=QUEUE,
        destinations={"default": default, "archive": archive},
    )
    return replace(readings, **changes)  # type: ignore[arg-type]


FAILING = store(
    buckets={"write_errors": {MINUTE: 3}, "backlogged": {MINUTE: 120}, "written": {MINUTE: 10}},
    totals={"written": 10, "write_errors": 3, "backlogged": 120},
    last_write_error="503 Service Unavailable",
    backlog_events=120,
    parked=True,
    oldest_backlog_at=NOW - 240,
)
WRITING = store(buckets={"written": {MINUTE: 130}}, totals={"written": 130})


def codes(checks: tuple[Check, ...] | list[Check]) -> set[tuple[str, str | None]]:
    return {(c.code, c.destination) for c in checks}


def test_only_the_failing_destination_has_reasons_and_they_name_it() -> None:
    figures, _ = beat_figures(several(WRITING, FAILING), None, T)
    assert codes(figures.checks) == {("write_errors", "archive"), ("destination_parked", "archive")}
    by_code = {c.code: c for c in figures.checks}
    assert by_code["write_errors"].message == (
        "destination archive refused 3 batches in 5 min: 503 Service Unavailable — its events "
        "wait in its backlog and are written once it accepts them; the other destinations go on"
    )
    assert by_code["destination_parked"].message.startswith(
        "destination archive is unavailable: 120 events wait in its backlog, 120 added in "
        "5 min, the oldest 4 min old; last error: 503 Service Unavailable — "
    )
    assert all(c.severity == "degraded" for c in figures.checks)


def test_each_destination_has_its_figures_and_the_pipeline_adds_them_up() -> None:
    figures, _ = beat_figures(several(WRITING, FAILING), None, T)
    assert list(figures.destinations) == ["default", "archive"]
    archive, default = figures.destinations["archive"], figures.destinations["default"]
    assert (archive["written"], archive["write_errors"], archive["backlogged"]) == (10, 3, 120)
    assert (archive["backlog_events"], archive["parked"], archive["lag_s"]) == (120, True, 240.0)
    assert archive["last_write_error"] == "503 Service Unavailable"
    assert archive["backlogged_in_window"] == 120
    assert (default["written"], default["parked"], default["lag_s"]) == (130, False, 0.0)
    assert default["last_write_error"] is None
    assert figures.pipeline["written"] == 140
    assert figures.pipeline["write_errors"] == 3
    assert figures.pipeline["write_errors_in_window"] == 3
    assert figures.pipeline["last_write_error"] is None, "each destination quotes its own"


def test_an_unavailable_destination_does_not_stall_the_queue() -> None:
    """Writing to the backlog moves the queue on: only `archive` progresses (it keeps events
    in its backlog), `default` writes nothing, events wait: no `stalled`."""
    waiting = replace(QUEUE, depth=500, in_flight=50)
    earlier = QueueProgress(progress_at=NOW - 3600, written=0, pending=550)
    idle = store()
    figures, progress = beat_figures(several(idle, FAILING, queue=waiting), earlier, T)
    assert progress.progress_at == NOW
    assert "stalled" not in {c.code for c in figures.checks}
    # Nothing written nor kept anywhere for an hour while events wait: stalled, as always.
    same = QueueProgress(progress_at=NOW - 3600, written=130, pending=550)
    figures, _ = beat_figures(several(idle, FAILING, queue=waiting), same, T)
    assert "stalled" in {c.code for c in figures.checks}


def test_one_destination_is_judged_and_worded_as_before() -> None:
    alone = Readings(
        now=NOW,
        listener=None,
        buckets={"write_errors": {MINUTE: 1}},
        totals={"written": 5, "write_errors": 1},
        last_write_error="timeout",
        queue=QUEUE,
        destinations={"default": store(totals={"written": 5, "write_errors": 1})},
    )
    figures, _ = beat_figures(alone, None, T)
    [check] = figures.checks
    assert check == Check(
        "write_errors",
        "degraded",
        "pipeline",
        "InfluxDB refused 1 batch in 5 min: timeout — the events wait in the broker and are "
        "written once InfluxDB accepts them",
    )
    assert "destination" not in check.as_dict()
    assert figures.destinations["default"]["written"] == 5


def test_a_parked_destination_is_a_reason_only_while_events_wait_for_it() -> None:
    p = PipelineFigures()
    assert destination_checks("archive", p, BacklogFigures(events=0, parked=True), T) == []
    assert destination_checks("archive", p, BacklogFigures(events=9, parked=False), T) == []
    [check] = destination_checks("archive", p, BacklogFigures(events=9, parked=True), T)
    assert (check.code, check.destination) == ("destination_parked", "archive")
    assert check.message.startswith("destination archive is unavailable: 9 events wait in its ")


@pytest.mark.parametrize(
    ("figures", "code"),
    [
        (PipelineFigures(dead_letters_window=4), "dead_letters"),
        (PipelineFigures(dropped_window=3, dropped_total=3), "dropping"),
        (PipelineFigures(outage_letters_stored=12), "outage_store"),
    ],
)
def test_a_destination_s_store_reasons_carry_its_name(figures: PipelineFigures, code: str) -> None:
    [check] = destination_checks("archive", figures, BacklogFigures(), T)
    assert (check.code, check.destination) == (code, "archive")
    assert check.message.startswith("destination archive: ")


def test_the_section_and_the_named_checks_survive_the_stored_report() -> None:
    figures, _ = beat_figures(several(WRITING, FAILING), None, T)
    stored = build_report(NOW, None, figures, T, beat_ran_at=NOW)
    assert {c.get("destination") for c in stored["checks"] if c["area"] == "pipeline"} == {
        "archive"
    }
    read_back = BeatFigures.from_report(json.loads(json.dumps(stored)))
    assert read_back is not None
    assert read_back.destinations == figures.destinations
    assert codes(read_back.checks) == codes(figures.checks)
    again = build_report(NOW + 1, None, read_back, T, beat_ran_at=NOW)
    assert again["destinations"] == stored["destinations"]


def test_a_check_without_a_destination_reads_back_without_one() -> None:
    check = Check("backlog", "degraded", "pipeline", "queue backlog 10,000")
    assert "destination" not in check.as_dict()
    assert Check.from_dict(check.as_dict()) == check
    named = replace(check, destination="archive")
    assert Check.from_dict(named.as_dict()) == named
    assert Check.from_dict({**named.as_dict(), "destination": 7}) == check
