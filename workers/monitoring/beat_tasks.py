"""Beat jobs: thin tasks over the pure rate and health computations, stored in Redis with TTLs.

They run INSIDE the beat process (`InProcessScheduler`), not on a worker: a health check that
waits in the same queue as the events it measures would go silent exactly when the queue backs
up or the workers stop — the moments it exists for.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from celery import shared_task
from celery.beat import PersistentScheduler, ScheduleEntry

from config.settings import get_settings
from workers.monitoring.health_job import Monitor

log = logging.getLogger(__name__)

COMPUTE_HEALTH = "ha_ingestor.compute_health"


@functools.cache
def monitor() -> Monitor:
    """One set of Redis connections per process, built on first use."""
    return Monitor.from_settings(get_settings())


_last_reasons: list[list[str]] = [[]]


@shared_task(name=COMPUTE_HEALTH, ignore_result=True, run_in_beat=True)
def compute_health() -> None:
    """Event rates (overall, per domain, top entities), subscription and pipeline health, and
    the overall status with its reasons, into the `health` and `rates` keys."""
    report = monitor().run()
    # One log line when the verdict changes, not one per run.
    codes = [check["code"] for check in report["checks"]]
    if codes != _last_reasons[0]:
        _last_reasons[0] = codes
        reasons = "; ".join(report["reasons"]) or "every check passes"
        level = logging.INFO if report["status"] == "healthy" else logging.WARNING
        log.log(level, "health: %s — %s", report["status"], reasons)


class InProcessScheduler(PersistentScheduler):  # type: ignore[misc]
    """Celery beat's scheduler, except that tasks marked `run_in_beat` run here and now."""

    def apply_entry(self, entry: ScheduleEntry, producer: Any = None) -> None:
        task = self.app.tasks.get(entry.task)
        if task is None or not getattr(task, "run_in_beat", False):
            super().apply_entry(entry, producer)
            return
        log.debug("running %s", entry.task)  # every few seconds: not worth an INFO line
        self.apply_async(entry, producer=producer, advance=False)

    def apply_async(
        self,
        entry: ScheduleEntry,
        producer: Any = None,
        advance: bool = True,
        **kwargs: Any,
    ) -> Any:
        task = self.app.tasks.get(entry.task)
        if task is None or not getattr(task, "run_in_beat", False):
            return super().apply_async(entry, producer, advance, **kwargs)
        entry = self.reserve(entry) if advance else entry
        try:
            task(*entry.args, **entry.kwargs)
        except Exception:
            # One failed run (Redis restarting) must not stop the next ones.
            log.exception("beat job %s failed; it runs again in its next period", entry.task)
        return None
