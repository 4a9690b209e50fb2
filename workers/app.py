"""The one Celery app of the workers: ``celery -A workers.app worker|beat|flower``.

This module is the only place the worker side reads its settings and builds
its app. Task modules declare their tasks with ``shared_task`` (see
``workers/runner.py``) and never import this module; every module of
``workers/tasks/`` is included, so a new task module needs no edit here.
"""

from __future__ import annotations

import logging
import pkgutil

from celery import signals

import workers.tasks
from shared import db, logs
from shared.queue import make_celery
from shared.settings import Settings
from shared.storage import Storage
from workers import context
from workers.dsp import warmup

settings = Settings.from_env()
context.configure(settings)

TASK_MODULES = sorted(f"workers.tasks.{m.name}" for m in pkgutil.iter_modules(workers.tasks.__path__))

app = make_celery(settings, include=TASK_MODULES)
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
    "recover-stalled-jobs": {
        "task": "audioq.maintenance.recover_stalled_jobs",
        "schedule": settings.recover_interval_s,
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


@signals.worker_shutting_down.connect
def _drain(sender: str = "", **_: object) -> None:
    """SIGTERM (a deploy, a scale-down): the running attempts of this worker
    hand their jobs back at their next progress report instead of holding the
    shutdown for minutes (short analyses just finish); the jobs run again on
    another worker."""
    try:
        r = db.connect(settings)
        r.set(db.draining_key(str(sender)), "1", ex=600)
        r.close()
    except Exception as e:  # Redis down: the jobs are recovered by their heartbeat
        logging.getLogger(__name__).warning("could not mark %s as draining: %s", sender, e)


@signals.worker_process_init.connect
def _warm_up(**_: object) -> None:
    """Pay JIT compilation and first-call costs before the first job, not in it."""
    context.reset()  # connections are per process, never inherited
    warmup.warm_up()


@signals.task_prerun.connect
def _bind_log_context(task=None, args=None, **_: object) -> None:
    request = getattr(task, "request", None)
    logs.trace_id.set((getattr(request, "trace_id", None) or "-") if request else "-")
    logs.job_id.set(args[0] if args else "-")


@signals.task_postrun.connect
def _clear_log_context(**_: object) -> None:
    logs.trace_id.set("-")
    logs.job_id.set("-")
