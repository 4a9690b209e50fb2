"""Periodic housekeeping, scheduled by Celery beat on the ``maintenance`` queue."""

from __future__ import annotations

import logging

import redis
from celery import shared_task

from shared import assets, jobs
from shared.errors import StorageError
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
