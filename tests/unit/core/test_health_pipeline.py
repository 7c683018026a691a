"""Beat's pure health computation: pipeline rules (core.health_rules), trends
(core.queue_trend), its figures (core.health_beat) and the report they make (core.health_report)."""

from __future__ import annotations

import base64
import json
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from core.health_beat import Readings, beat_figures
from core.health_check import Thresholds
from core.health_report import build_report
from core.health_rules import PipelineFigures, pipeline_checks
from core.listener_figures import ListenerFigures
from core.queue_trend import QueueProgress, QueueReading, advance_progress, depth_trend
from core.task_message import received_at_of

T = Thresholds(queue_backlog=10_000, queue_max_age_s=300, window_s=300)
OK = PipelineFigures(queue_depth=3, in_flight=10, oldest_message_age_s=0.5, stalled_for_s=None)
NOW = 1_800_000_000.0  # a minute boundary: 30,000,000 minutes


def codes(figures: PipelineFigures) -> list[str]:
    return [c.code for c in pipeline_checks(figures, T)]


def message(figures: PipelineFigures, code: str) -> str:
    return next(c.message for c in pipeline_checks(figures, T) if c.code == code)


def test_a_flowing_pipeline_is_healthy() -> None:
    assert pipeline_checks(OK, T) == []


@pytest.mark.parametrize(
    ("changes", "expected", "words"),
    [
        (
            {"queue_depth": 48_000, "depth_trend_per_min": 2_000.0},
            ["backlog"],
            "queue backlog 48,000 and growing (+2,000/min)",
        ),
        (
            {"queue_depth": 48_000, "depth_trend_per_min": -4_800.0},
            ["backlog"],
            "queue backlog 48,000 and shrinking (-4,800/min, about 10 min to drain)",
        ),
        ({"queue_depth": 10_000, "depth_trend_per_min": 0.0}, ["backlog"], "and steady"),
        ({"queue_depth": 10_000}, ["backlog"], "queue backlog 10,000"),
        ({"oldest_message_age_s": 360.0}, ["queue_age"], "oldest waiting event is 6 min old"),
        (
            {"stalled_for_s": 301.0, "in_flight": 0, "queue_depth": 3000},
            ["stalled"],
            "nothing written to InfluxDB for 5 min while 3,000 events wait — no worker takes "
            "them: start `celery -A config.celery_app worker`",
        ),
        (
            {"stalled_for_s": 301.0, "in_flight": 2000, "queue_depth": 0},
            ["stalled"],
            "workers hold them but write nothing",
        ),
        (
            {"write_errors_window": 3, "last_write_error": "401 authorization failed"},
            ["write_errors"],
            "InfluxDB refused 3 batches in 5 min: 401 authorization failed",
        ),
        ({"write_errors_window": 1}, ["write_errors"], "InfluxDB refused 1 batch in 5 min —"),
        (
            {"dead_letters_window": 12, "dead_letter_reasons": {"rejected_by_influxdb": 12}},
            ["dead_letters"],
            "12 events dead-lettered in 5 min (rejected_by_influxdb 12) — inspect them with "
            "`ha-ingestor dlq list`",
        ),
        (
            {"broker_error": "ConnectionError: refused", "queue_depth": None, "in_flight": None},
            ["broker_unreadable"],
            "cannot read the queue (ConnectionError: refused)",
        ),
    ],
)
def test_each_pipeline_rule(changes: dict[str, object], expected: list[str], words: str) -> None:
    figures = replace(OK, **changes)  # type: ignore[arg-type]
    assert codes(figures) == expected
    assert words in message(figures, expected[0])


def test_a_stall_with_refused_writes_names_influxdb_and_replaces_the_age_rule() -> None:
    figures = replace(
        OK, stalled_for_s=400.0, oldest_message_age_s=400.0, write_errors_window=7, in_flight=2000
    )
    checks = pipeline_checks(figures, T)
    assert [c.code for c in checks] == ["stalled", "write_errors"]
    assert "InfluxDB refuses the writes" in checks[0].message
    assert checks[0].severity == "unhealthy"
    assert checks[1].severity == "degraded"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"queue_depth": 9_999}, []),
        ({"oldest_message_age_s": 299.0}, []),
        ({"stalled_for_s": 299.0}, []),
        ({"stalled_for_s": 999.0, "queue_depth": 0, "in_flight": 0}, []),  # nothing waits
    ],
)
def test_below_the_thresholds_nothing_is_reported(
    changes: dict[str, object], expected: list[str]
) -> None:
    assert codes(replace(OK, **changes)) == expected  # type: ignore[arg-type]


# --- the queue's progress as beat records it --------------------------------------------


def test_progress_is_a_write_a_shrinking_queue_or_an_empty_one() -> None:
    first = advance_progress(None, 100.0, QueueReading(depth=5, in_flight=0), written=10)
    assert first.progress_at == 100.0
    # Same written count, queue grew: no progress since 100.
    grew = advance_progress(first, 105.0, QueueReading(depth=50, in_flight=0), written=10)
    assert grew.progress_at == 100.0
    assert grew.samples == ((100.0, 5), (105.0, 50))
    # A write is progress.
    wrote = advance_progress(grew, 110.0, QueueReading(depth=60, in_flight=0), written=11)
    assert wrote.progress_at == 110.0
    # Shrinking is progress even without writes (filtered events are not written).
    shrank = advance_progress(wrote, 115.0, QueueReading(depth=40, in_flight=0), written=11)
    assert shrank.progress_at == 115.0
    # An empty queue is never stalled.
    stuck = advance_progress(shrank, 120.0, QueueReading(depth=40, in_flight=0), written=11)
    assert stuck.progress_at == 115.0
    empty = advance_progress(stuck, 125.0, QueueReading(depth=0, in_flight=0), written=11)
    assert empty.progress_at == 125.0


def test_an_unreadable_queue_keeps_the_memory() -> None:
    progress = QueueProgress(progress_at=50.0, written=3, pending=7, samples=((50.0, 7),))
    kept = advance_progress(progress, 60.0, QueueReading(error="down"), written=3)
    assert (kept.progress_at, kept.pending, kept.samples) == (50.0, 7, ((50.0, 7),))
    assert advance_progress(None, 60.0, QueueReading(error="down"), written=0).progress_at == 60.0


def test_old_samples_are_forgotten() -> None:
    progress = QueueProgress(progress_at=0.0, written=0, pending=1, samples=((0.0, 1), (100.0, 2)))
    after = advance_progress(progress, 200.0, QueueReading(depth=3, in_flight=0), written=0)
    assert after.samples == ((100.0, 2), (200.0, 3))


def test_memory_round_trips_through_json_and_rejects_garbage() -> None:
    progress = QueueProgress(progress_at=1.5, written=2, pending=3, samples=((1.0, 2),))
    assert QueueProgress.from_document(json.loads(json.dumps(progress.to_document()))) == progress
    assert QueueProgress.from_document({"progress_at": "x"}) is None
    assert QueueProgress.from_document(None) is None


@pytest.mark.parametrize(
    ("samples", "trend"),
    [
        (((0.0, 0), (30.0, 1000)), 2000.0),
        (((-30.0, 1000), (30.0, 0)), -1000.0),
        (((-100.0, 0), (0.0, 10), (30.0, 40)), 60.0),  # only the last minute counts
        (((30.0, 5),), None),
        (((29.5, 5), (30.0, 6)), None),  # too short a span to say
    ],
)
def test_depth_trend(samples: tuple[tuple[float, int], ...], trend: float | None) -> None:
    assert depth_trend(samples, 30.0) == (None if trend is None else pytest.approx(trend))


# --- parsing -----------------------------------------------------------------------------------


def kombu_message(received_at: object) -> str:
    body = json.dumps([[{"event": {}, "received_at": received_at}], {}, {}]).encode()
    return json.dumps(
        {"body": base64.b64encode(body).decode(), "properties": {"body_encoding": "base64"}}
    )


def test_received_at_from_a_waiting_and_from_a_taken_message() -> None:
    assert received_at_of(kombu_message(123.5)) == 123.5
    assert received_at_of(json.dumps([json.loads(kombu_message(7)), "", "ha_events"])) == 7.0
    assert received_at_of(kombu_message(123.5).encode()) == 123.5


@pytest.mark.parametrize(
    "raw",
    [None, "", "not json", "{}", kombu_message(None), json.dumps({"body": "!!"}), "[1]"],
)
def test_received_at_of_anything_else_is_none(raw: str | None) -> None:
    assert received_at_of(raw) is None


# --- the whole report --------------------------------------------------------------------------


def listener_figures(**changes: Any) -> ListenerFigures:
    state = ListenerFigures(
        started_at=NOW - 7200,
        reported_at=NOW - 1,
        connection_state="subscribed",
        ha_version="2024.3.3",
        connect_attempts=1,
        connects_ok=1,
        connects_failed=0,
        reconnects=0,
        last_error="",
        subscriptions={"state_changed": 2},
        events_received=4200,
        events_by_type=Counter({"state_changed": 4200}),
        last_event_at=NOW - 12 * 60,
        malformed_frames=0,
        events_enqueued=4200,
        events_spooled=0,
        events_drained=0,
        publish_errors=0,
        broker_up=True,
        spool_depth=0,
        memory_queue_depth=0,
        snapshot_states=0,
        backfilled_states=0,
        history_available=True,
    )
    return replace(state, **changes)


def compute_report(
    readings: Readings, progress: QueueProgress | None, t: Thresholds
) -> tuple[dict[str, Any], QueueProgress]:
    """What beat stores: its figures and the listener's state through the one builder."""
    figures, new_progress = beat_figures(readings, progress, t)
    report = build_report(readings.now, readings.listener, figures, t, beat_ran_at=readings.now)
    return report, new_progress


def test_the_report_of_a_silent_subscription() -> None:
    """Twelve minutes of silence after an hour at 35/min: the issue's example, word for word."""
    minute = int(NOW // 60)
    events = {m: 35 for m in range(minute - 72, minute - 12)}
    readings = Readings(
        now=NOW,
        listener=listener_figures(),
        buckets={"events_received": events, "written": dict(events)},
        maps={"events_by_domain": {minute - 13: {"sensor": 30, "light": 5}}},
        totals={"written": 2100},
        queue=QueueReading(depth=0, in_flight=0),
    )
    report, progress = compute_report(readings, None, T)
    assert report["status"] == "degraded"
    assert report["reasons"][0].startswith(
        "no events for 12 min while subscribed — HA usually sends 35/min"
    )
    # As of the listener's report a second ago: 15 min reach 1 s into a minute of 35 events.
    assert report["subscription"]["event_rate_per_minute"] == {"1m": 0.0, "5m": 0.0, "15m": 7.039}
    assert report["subscription"]["usual_rate_per_minute"] == 35.0
    assert list(report["rates"]["by_domain"]) == ["sensor", "light"]
    assert len(report["rates"]["history"]) == 60
    assert report["pipeline"]["written"] == 2100
    assert report["subscription"]["is_subscribed"] is True
    assert report["listener"]["heartbeat_age_s"] == 1.0
    assert report["connection"]["ha_version"] == "2024.3.3"
    assert progress.written == 2100


def test_the_report_of_a_stalled_pipeline_with_refused_writes() -> None:
    minute = int(NOW // 60)
    previous = QueueProgress(
        progress_at=NOW - 400, written=50, pending=1500, samples=((NOW - 30, 0),)
    )
    readings = Readings(
        now=NOW,
        listener=listener_figures(last_event_at=NOW - 0.5),
        buckets={"retries": {minute: 2, minute - 1: 1}},
        totals={"written": 50, "retries": 3},
        queue=QueueReading(depth=1000, in_flight=2000, oldest_received_at=NOW - 420),
        last_write_error="InfluxDB refused the credentials (401)",
    )
    report, progress = compute_report(readings, previous, T)
    assert report["status"] == "unhealthy"
    assert [c["code"] for c in report["checks"]] == ["stalled", "write_errors"]
    assert report["reasons"][1].startswith(
        "InfluxDB refused 3 batches in 5 min: InfluxDB refused the credentials (401)"
    )
    assert report["pipeline"]["oldest_message_age_s"] == 420.0
    assert report["pipeline"]["stalled_for_s"] == 400.0
    assert report["pipeline"]["depth_trend_per_minute"] == pytest.approx(2000.0)
    assert progress.progress_at == NOW - 400


def test_the_report_without_a_listener() -> None:
    report, _ = compute_report(Readings(now=NOW, listener=None), None, T)
    assert report["status"] == "unhealthy"
    assert report["checks"][0]["code"] == "listener_down"
    assert report["listener"]["present"] is False
    assert report["connection"]["state"] is None
    assert report["uptime_s"] is None
    assert report["pipeline"]["queue_depth"] is None  # the broker could not be read either


@pytest.mark.parametrize(
    ("alive", "broker_error", "expected"),
    [
        (0, None, ["no_workers"]),
        (1, None, []),
        (None, None, []),  # the broker cannot tell (Celery's own consumer on Redis)
        (0, "ConnectionError: refused", ["broker_unreadable"]),  # 0 then means "not read"
    ],
)
def test_no_worker_alive(alive: int | None, broker_error: str | None, expected: list[str]) -> None:
    figures = replace(OK, workers_alive=alive, broker_error=broker_error)
    assert codes(figures) == expected
    if expected == ["no_workers"]:
        assert "start `celery -A config.celery_app worker`" in message(figures, "no_workers")


def test_workers_alive_reaches_the_report() -> None:
    readings = Readings(now=NOW, listener=None, queue=QueueReading(depth=0, workers_alive=0))
    figures, _ = beat_figures(readings, None, T)
    assert figures.pipeline["workers_alive"] == 0
    assert "no_workers" in [c.code for c in figures.checks]


def test_type_shadowed_points_are_a_figure_not_a_problem() -> None:
    """Points that went to shadow fields were written: counted, and the report stays healthy."""
    readings = Readings(
        now=NOW,
        listener=listener_figures(last_event_at=NOW - 0.5),
        buckets={"written": {int(NOW // 60): 40}},
        totals={"written": 40, "type_shadowed": 12},
        queue=QueueReading(depth=0, in_flight=0),
    )
    report, _ = compute_report(readings, None, T)
    assert report["pipeline"]["type_shadowed"] == 12
    assert report["status"] == "healthy", report["reasons"]


def test_texts_left_out_are_a_figure_not_a_problem() -> None:
    """Texts the VictoriaMetrics guard kept out are counted; the report stays healthy."""
    readings = Readings(
        now=NOW,
        listener=listener_figures(last_event_at=NOW - 0.5),
        buckets={"written": {int(NOW // 60): 40}},
        totals={"written": 40, "text_left_out": 7},
        queue=QueueReading(depth=0, in_flight=0),
    )
    report, _ = compute_report(readings, None, T)
    assert report["pipeline"]["text_left_out"] == 7
    assert report["status"] == "healthy", report["reasons"]
