"""Beat sends only our jobs: none of Celery's default entries reaches the ingest queue."""

from __future__ import annotations

from pathlib import Path

from config.celery_app import create_app
from config.settings import load_settings
from workers.monitoring.beat_tasks import InProcessScheduler


def test_beat_schedules_our_jobs_and_not_celerys_daily_backend_cleanup(tmp_path: Path) -> None:
    app = create_app(load_settings())
    scheduler = InProcessScheduler(app, schedule_filename=str(tmp_path / "beat-schedule"))
    try:
        names = set(scheduler.schedule)
        tasks = {entry.task for entry in scheduler.schedule.values()}
    finally:
        scheduler.close()
    assert "celery.backend_cleanup" not in names
    assert tasks == {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert "ha_ingestor.compute_health" in tasks
