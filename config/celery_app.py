"""The Celery app (`celery -A config.celery_app worker|beat|flower`).

The listener imports it only to send tasks by name; workers register their tasks on it from
`workers.tasks` (imported by the worker at start, never by the listener).
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger

from config.messages import INGEST_TASK
from config.settings import Settings, get_settings

BEAT_PERIOD_S = 5.0


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings derived from ours; one place that decides delivery semantics."""
    queue = settings.celery_queue
    return {
        "broker_url": settings.celery_broker_url.get_secret_value(),
        "broker_connection_retry_on_startup": True,
        # Redis redelivers unacknowledged messages after this many seconds: how long a killed
        # worker's batch waits before another worker takes it.
        "broker_transport_options": {
            "visibility_timeout": settings.celery_visibility_timeout,
        },
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "task_ignore_result": True,
        "result_backend": None,
        # A message is acknowledged only once its point is written or dead-lettered.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_default_queue": queue,
        "task_routes": {INGEST_TASK: {"queue": queue}},
        # celery-batches needs a prefetch window of at least one batch, or it stalls.
        "worker_prefetch_multiplier": 2 * settings.batch_size,
        "worker_max_memory_per_child": None,
        "worker_hijack_root_logger": True,
        "worker_send_task_events": False,
        "beat_schedule": {
            "compute-pipeline-stats": {
                "task": "ha_ingestor.compute_pipeline_stats",
                "schedule": BEAT_PERIOD_S,
            },
        },
        "timezone": "UTC",
        "enable_utc": True,
    }


def create_app(settings: Settings) -> Celery:
    """Build the app for these settings (tests build their own)."""
    celery = Celery("ha_ingestor", include=["workers.tasks", "workers.beat_tasks"])
    celery.conf.update(celery_config(settings))
    return celery


def _mask_secrets(**_: Any) -> None:
    from config.logging_setup import install_secret_filter

    install_secret_filter(get_settings().secrets())


after_setup_logger.connect(_mask_secrets, weak=False)
after_setup_task_logger.connect(_mask_secrets, weak=False)

app = create_app(get_settings())
