"""Periodic housekeeping, scheduled by Celery beat on the ``maintenance`` queue."""

from __future__ import annotations

import logging

import redis
from celery import shared_task

from shared import assets, jobs, operations, queue
from shared.errors import ApiError, StorageError
from workers import context

log = logging.getLogger(__name__)

_TRANSIENT = (StorageError, redis.ConnectionError, redis.TimeoutError)
# Every housekeeping task: idempotent, so acknowledged late and retried a
# bounded number of times on transient failures only.
_RELIABLE = {"acks_late": True, "autoretry_for": _TRANSIENT, "retry_backoff": True, "max_retries": 3}


@shared_task(
    name="audioq.maintenance.expire_assets",
    soft_time_limit=300,
    time_limit=360,
    **_RELIABLE,
)
def expire_assets() -> int:
    """Delete assets past their expiry: metadata, objects, and what hangs off them."""
    ctx = context.get()
    n = assets.expire_due(ctx.redis, ctx.storage)
    if n:
        log.info("expired %d assets", n)
    return n


@shared_task(
    name="audioq.maintenance.reconcile_storage",
    soft_time_limit=1800,
    time_limit=1900,
    **_RELIABLE,
)
def reconcile_storage() -> int:
    """Delete S3 objects that no live asset owns (past a grace period)."""
    ctx = context.get()
    n = assets.reconcile(ctx.redis, ctx.storage, ctx.settings)
    if n:
        log.info("reconciled away %d orphan objects", n)
    return n


@shared_task(
    name="audioq.maintenance.fail_overdue_jobs",
    soft_time_limit=120,
    time_limit=150,
    **_RELIABLE,
)
def fail_overdue_jobs() -> int:
    """No job stays queued or running forever: past its deadline it fails, refunded."""
    ctx = context.get()
    n = jobs.fail_overdue(ctx.redis, ttl=ctx.settings.job_ttl_s)
    if n:
        log.warning("failed %d overdue jobs", n)
    return n


@shared_task(
    name="audioq.maintenance.recover_stalled_jobs",
    bind=True,
    soft_time_limit=60,
    time_limit=90,
    **_RELIABLE,
)
def recover_stalled_jobs(self) -> int:
    """Running jobs whose worker is gone (heartbeat older than
    ``AUDIOQ_JOB_STALE_S``) go back to their queue as a new attempt, or fail,
    refunded, once ``AUDIOQ_JOB_MAX_ATTEMPTS`` are used. A message the broker
    could not take is sent again on the next run."""
    ctx = context.get()
    s = ctx.settings
    found = jobs.recover_stalled(
        ctx.redis, stale_s=s.job_stale_s, max_attempts=s.job_max_attempts, ttl=s.job_ttl_s
    )
    for job_id, token in found.requeued:
        jobs.mark_pending_send(ctx.redis, job_id, token)
    for job_id in found.failed:
        job = jobs.get_any(ctx.redis, job_id)
        if job.callback_url:
            queue.notify(self.app, job_id)
    sent = 0
    for job_id, token in jobs.pending_sends(ctx.redis):
        try:
            job = jobs.get_any(ctx.redis, job_id)
        except ApiError:
            jobs.clear_pending_send(ctx.redis, job_id)
            continue
        if job.status != "queued" or job.token != token:
            jobs.clear_pending_send(ctx.redis, job_id)
            continue
        try:
            queue.enqueue(self.app, operations.get(job.op), job_id, token, job.trace_id)
        except Exception as e:  # the broker is down: next run sends it
            log.warning("could not queue recovered job %s: %s", job_id, e)
            continue
        jobs.clear_pending_send(ctx.redis, job_id)
        sent += 1
    if found.requeued or found.failed:
        log.warning(
            "stalled jobs: %d queued again, %d failed after %d attempts",
            len(found.requeued),
            len(found.failed),
            s.job_max_attempts,
        )
    return sent
