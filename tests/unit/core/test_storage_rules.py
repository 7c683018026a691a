"""The storage health rules (core.storage_rules) on both sides of each threshold, and the
hand-back pacer (workers/hand_back.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace

from core.backoff import exponential_backoff
from core.health_check import Thresholds
from core.health_rules import PipelineFigures
from core.listener_figures import ListenerFigures
from core.storage_rules import listener_storage_checks, store_checks
from core.text_format import format_bytes
from workers.hand_back import HandBackPacer
from workers.pipeline import BatchOutcome

T = Thresholds(dead_letters_max=None)
GB = 1_000_000_000
FINE = ListenerFigures(
    started_at=1_800_000_000.0,
    reported_at=1_800_000_600.0,
    connection_state="subscribed",
    spool_bytes=0,
    spool_max_bytes=GB,
    spool_disk_free_bytes=50 * GB,
    broker_memory_used_bytes=100_000_000,
    broker_memory_max_bytes=GB,
)


def codes_and_severity(checks: list) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [(c.code, c.severity) for c in checks]


def test_plenty_of_room_reports_nothing() -> None:
    assert listener_storage_checks(FINE, T) == []
    assert store_checks(PipelineFigures(dead_letters_stored=5), T) == []


def test_broker_memory_is_reported_from_the_warning_threshold() -> None:
    below = replace(FINE, broker_memory_used_bytes=int(0.79 * GB))
    assert listener_storage_checks(below, T) == []
    [check] = listener_storage_checks(replace(FINE, broker_memory_used_bytes=int(0.8 * GB)), T)
    assert (check.code, check.severity) == ("broker_memory", "degraded")
    assert "800 MB of 1.0 GB (80%)" in check.message
    assert "from 90% the listener spools" in check.message
    [full] = listener_storage_checks(
        replace(FINE, broker_memory_used_bytes=int(0.93 * GB), broker_full=True), T
    )
    assert "above 90% the listener keeps new events in its spool" in full.message
    assert "maxmemory" in full.message


def test_a_broker_without_maxmemory_or_figures_is_not_judged_here() -> None:
    unlimited = replace(FINE, broker_memory_used_bytes=20 * GB, broker_memory_max_bytes=0)
    assert listener_storage_checks(unlimited, T) == []  # `ha-ingestor check` says to set one
    rabbit = replace(FINE, broker_memory_used_bytes=None, broker_memory_max_bytes=None)
    assert listener_storage_checks(rabbit, T) == []


def test_the_spool_is_reported_near_its_cap_and_unhealthy_when_full() -> None:
    assert (
        listener_storage_checks(replace(FINE, spool_bytes=int(0.79 * GB), spool_depth=1), T) == []
    )
    near = listener_storage_checks(replace(FINE, spool_bytes=int(0.8 * GB), spool_depth=9), T)
    assert codes_and_severity(near) == [("spool_disk", "degraded")]
    assert "SPOOL_MAX_MB" in near[0].message
    full = listener_storage_checks(replace(FINE, spool_bytes=GB, spool_depth=9), T)
    assert codes_and_severity(full) == [("spool_disk", "unhealthy")]
    assert "reading from HA is paused" in full[0].message
    no_disk = listener_storage_checks(replace(FINE, spool_disk_free_bytes=500_000), T)
    assert codes_and_severity(no_disk) == [("spool_disk", "unhealthy")]
    # A batch that does not fit is refused before the cap is reached: that is full too.
    refused = listener_storage_checks(replace(FINE, spool_bytes=int(0.87 * GB), spool_full=True), T)
    assert codes_and_severity(refused) == [("spool_disk", "unhealthy")]
    assert "reading from HA is paused" in refused[0].message


def test_a_disk_smaller_than_the_spool_cap_is_reported_when_it_matters() -> None:
    small_disk = replace(FINE, spool_disk_free_bytes=300_000_000)
    assert listener_storage_checks(small_disk, T) == [], "an idle spool with room for a while"
    [in_use] = listener_storage_checks(replace(small_disk, spool_depth=10, spool_bytes=1000), T)
    assert (in_use.code, in_use.severity) == ("spool_disk", "degraded")
    assert "300 MB free, less than the 1,000 MB SPOOL_MAX_MB still allows" in in_use.message
    [tiny] = listener_storage_checks(replace(FINE, spool_disk_free_bytes=40_000_000), T)
    assert tiny.code == "spool_disk"


def test_dropping_is_unhealthy_and_counts() -> None:
    t = Thresholds(dead_letters_max=100)
    figures = PipelineFigures(dead_letters_stored=100, dropped_window=37, dropped_total=250)
    [check] = store_checks(figures, t)
    assert (check.code, check.severity) == ("dropping", "unhealthy")
    assert "37 dead letters DELETED" in check.message
    assert "DEAD_LETTERS_MAX=100 (250 in all)" in check.message


def test_the_dead_letter_store_is_reported_from_80_percent_of_a_cap_only() -> None:
    assert store_checks(PipelineFigures(dead_letters_stored=10**7), T) == [], "no cap, no limit"
    t = Thresholds(dead_letters_max=1000)
    assert store_checks(PipelineFigures(dead_letters_stored=799), t) == []
    [check] = store_checks(PipelineFigures(dead_letters_stored=800), t)
    assert (check.code, check.severity) == ("dead_letter_store", "degraded")


def test_the_outage_store_is_reported_while_it_holds_events() -> None:
    [check] = store_checks(PipelineFigures(outage_letters_stored=1234), T)
    assert (check.code, check.severity) == ("outage_store", "degraded")
    assert "1,234 events" in check.message
    assert "oldest first" in check.message


def test_format_bytes() -> None:
    assert [format_bytes(n) for n in (12, 4_500, 812_000_000, 1_500_000_000, 25 * GB)] == [
        "12 B", "4.5 kB", "812 MB", "1.5 GB", "25 GB",
    ]  # fmt: skip


def test_the_pacer_grows_after_hand_backs_and_forgets_at_a_write() -> None:
    stopping = threading.Event()

    def unjittered() -> Iterator[float]:  # core/backoff.py's delays, without their jitter
        return exponential_backoff(initial=1.0, cap=30.0, jitter=lambda upper: upper)

    pacer = HandBackPacer(stopping, cap=30.0, backoff=unjittered)
    assert pacer.delay() == 0
    delays = []
    for _ in range(7):
        pacer.record(BatchOutcome(handed_back=[0, 1]))
        delays.append(pacer.delay())
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    pacer.record(BatchOutcome(written=2))
    assert pacer.delay() == 0


def test_the_pacer_honours_retry_after_within_its_cap() -> None:
    pacer = HandBackPacer(threading.Event(), cap=30.0)
    pacer.record(BatchOutcome(handed_back=[0], retry_after=12.0))
    assert pacer.delay() == 12
    pacer.record(BatchOutcome(handed_back=[0], retry_after=600.0))
    assert pacer.delay() == 30


def test_a_stopping_worker_is_not_paced() -> None:
    stopping = threading.Event()
    pacer = HandBackPacer(stopping, cap=30.0)
    stopping.set()
    pacer.record(BatchOutcome(handed_back=[0]))
    assert pacer.delay() == 0
    assert pacer.wait() is True
