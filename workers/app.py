"""The one Celery app of the workers: ``celery -A workers.app worker|beat|flower``.

This module is the only place the worker side reads its settings and builds
its app. Task modules declare their tasks with ``shared_task`` (see
``workers/runner.py``) and never import this module; every module of
``workers/tasks/`` is included, so a new task module needs no edit here.
"""

from __future__ import annotations

import logging
import os
import pkgutil
import socket
import time

import threadpoolctl
from celery import signals

import workers.tasks
from shared import db, fleet, logs
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
    logs.setup(settings.log_level, settings.log_format)
    try:
        # A Storage of its own: the main process must not cache a context
        # whose open S3 connections every forked pool process would inherit
        # and share (two processes reading one socket hang each other).
        Storage(settings).ensure_bucket()
    except Exception as e:  # the worker can still start; tasks will retry
        logging.getLogger(__name__).warning("could not ensure bucket: %s", e)


log = logging.getLogger(__name__)

# This worker's node name and queues, known once it is ready.
_me: dict[str, object] = {}
_PRESENCE_EVERY_S = 10.0


@signals.worker_ready.connect
def _announce(sender=None, **_: object) -> None:
    """Record the worker in the fleet, and say at start when a model its
    queues need is missing (jobs needing it fail clearly, refunded)."""
    queues = sorted(q.name for q in sender.task_consumer.queues) if sender is not None else []
    _me.update(node=getattr(sender, "hostname", "") or "", queues=queues, last=0.0)
    missing = fleet.missing_models(settings.model_dir, queues)
    if missing:
        log.error(
            "models missing in %s for queues %s: %s; run `audioq models fetch`",
            settings.model_dir,
            ",".join(queues),
            ", ".join(missing),
        )
    _record_presence(force=True)


@signals.heartbeat_sent.connect
def _heartbeat(**_: object) -> None:
    _record_presence()


def _record_presence(force: bool = False) -> None:
    """At most every 10 s, from the worker's main process (Celery's event
    heartbeat calls this every 2 s); never blocks it for long."""
    now = time.time()
    if not _me.get("node") or (not force and now - float(_me["last"]) < _PRESENCE_EVERY_S):  # type: ignore[arg-type]
        return
    _me["last"] = now
    queues = list(_me["queues"])  # type: ignore[call-overload]
    try:
        r = db.connect(settings, timeout_s=1.0)
        fleet.record(
            r,
            fleet.Worker(
                node=str(_me["node"]),
                host=socket.gethostname(),
                pid=os.getpid(),
                queues=queues,
                missing_models=fleet.missing_models(settings.model_dir, queues),
                seen_at=now,
            ),
        )
        r.close()
    except Exception as e:  # Redis briefly down: the next beat records it
        log.warning("could not record worker presence: %s", e)


@signals.worker_shutting_down.connect
def _drain(sender: str = "", **_: object) -> None:
    """SIGTERM (a deploy, a scale-down): the running attempts of this worker
    hand their jobs back at their next progress report instead of holding the
    shutdown for minutes (short analyses just finish); the jobs run again on
    another worker."""
    try:
        r = db.connect(settings, timeout_s=2.0)
        r.set(db.draining_key(str(sender)), "1", ex=600)
        fleet.forget(r, str(sender))
        r.close()
    except Exception as e:  # Redis down: the jobs are recovered by their heartbeat
        logging.getLogger(__name__).warning("could not mark %s as draining: %s", sender, e)


@signals.beat_init.connect
def _beat_logs(**_: object) -> None:
    logs.setup(settings.log_level, settings.log_format)


@signals.worker_process_init.connect
def _warm_up(**_: object) -> None:
    """Pay JIT compilation and first-call costs before the first job, not in it.

    One BLAS/OpenMP thread per pool process: the pool's processes are the
    parallelism (one per core). Left at their default (a thread per core),
    OpenBLAS's threads spin against the other processes: a 60 s chord
    analysis took 0.86 s of CPU for 0.55 s of wall time, against 0.52 / 0.52
    s single-threaded, and a second fast process added 3 % throughput."""
    context.reset()  # connections are per process, never inherited
    threadpoolctl.threadpool_limits(limits=1)
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
