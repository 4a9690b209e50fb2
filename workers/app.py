"""The one Celery app. Start with ``celery -A workers.app worker|beat|flower``."""

from __future__ import annotations

import logging

from celery import Celery, signals

from shared.settings import Settings
from workers import context

settings = Settings.from_env()

app = Celery(
    "audioq",
    broker=settings.effective_broker_url,
    include=["workers.tasks.maintenance"],
)
app.conf.update(
    # JSON only: tasks take ids, never bytes or pickled objects.
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    # Job state lives in the application Redis; Celery keeps no results,
    # so there is one source of truth and nothing to expire twice.
    task_ignore_result=True,
    # A task is acknowledged only when it finished; if the worker dies, the
    # broker redelivers it (tasks are written to be safe to run twice).
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    # Longer than any task's hard time limit, or the broker would redeliver a
    # task that is still running.
    broker_transport_options={"visibility_timeout": 2 * 3600},
    broker_connection_retry_on_startup=True,
    task_default_queue="analysis",
    task_routes={"audioq.maintenance.*": {"queue": "maintenance"}},
    worker_hijack_root_logger=False,
    # Flower needs task events.
    worker_send_task_events=True,
    task_send_sent_event=True,
    beat_schedule={
        "expire-assets": {
            "task": "audioq.maintenance.expire_assets",
            "schedule": float(settings.expire_interval_s),
        },
        "reconcile-storage": {
            "task": "audioq.maintenance.reconcile_storage",
            "schedule": float(settings.reconcile_interval_s),
        },
    },
    timezone="UTC",
)


@signals.worker_init.connect
def _prepare_storage(**_: object) -> None:
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        context.get().storage.ensure_bucket()
    except Exception as e:  # the worker can still start; tasks will retry
        logging.getLogger(__name__).warning("could not ensure bucket: %s", e)
