"""The one Celery app. Start with ``celery -A workers.app worker|beat|flower``."""

from __future__ import annotations

import logging

from celery import signals

from shared import logs
from shared.queue import make_celery
from shared.settings import Settings
from shared.storage import Storage
from workers import context

settings = Settings.from_env()

app = make_celery(
    settings,
    include=[
        "workers.tasks.analysis",
        "workers.tasks.maintenance",
        "workers.tasks.callbacks",
        "workers.tasks.identify",
        "workers.tasks.mastering",
        "workers.tasks.separation",
        "workers.tasks.transcription",
    ],
)
app.conf.beat_schedule = {
    "expire-assets": {
        "task": "audioq.maintenance.expire_assets",
        "schedule": float(settings.expire_interval_s),
    },
    "reconcile-storage": {
        "task": "audioq.maintenance.reconcile_storage",
        "schedule": float(settings.reconcile_interval_s),
    },
    "fail-overdue-jobs": {
        "task": "audioq.maintenance.fail_overdue_jobs",
        "schedule": 60.0,
    },
}


@signals.worker_init.connect
def _prepare_storage(**_: object) -> None:
    logs.setup(settings.log_level)
    try:
        # A Storage of its own: the main process must not cache a context
        # whose open S3 connections every forked pool process would inherit
        # and share (two processes reading one socket hang each other).
        Storage(settings).ensure_bucket()
    except Exception as e:  # the worker can still start; tasks will retry
        logging.getLogger(__name__).warning("could not ensure bucket: %s", e)


@signals.worker_process_init.connect
def _warm_up(**_: object) -> None:
    """Pay JIT compilation and first-call costs before the first job, not in it."""
    context.get.cache_clear()  # connections are per process, never inherited
    from workers.tasks import analysis

    analysis.warmup()


@signals.task_prerun.connect
def _bind_log_context(task=None, args=None, **_: object) -> None:
    request = getattr(task, "request", None)
    logs.trace_id.set((getattr(request, "trace_id", None) or "-") if request else "-")
    logs.job_id.set(args[0] if args else "-")


@signals.task_postrun.connect
def _clear_log_context(**_: object) -> None:
    logs.trace_id.set("-")
    logs.job_id.set("-")
