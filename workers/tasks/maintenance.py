"""Periodic housekeeping, scheduled by Celery beat on the ``maintenance`` queue."""

from __future__ import annotations

import logging

import redis

from shared import assets
from shared.errors import StorageError
from workers import context
from workers.app import app

log = logging.getLogger(__name__)

_TRANSIENT = (StorageError, redis.ConnectionError, redis.TimeoutError)


@app.task(
    name="audioq.maintenance.expire_assets",
    acks_late=True,
    soft_time_limit=300,
    time_limit=360,
    autoretry_for=_TRANSIENT,
    retry_backoff=True,
    max_retries=3,
)
def expire_assets() -> int:
    """Delete assets past their expiry: metadata, objects, and what hangs off them."""
    ctx = context.get()
    n = assets.expire_due(ctx.redis, ctx.storage)
    if n:
        log.info("expired %d assets", n)
    return n


@app.task(
    name="audioq.maintenance.reconcile_storage",
    acks_late=True,
    soft_time_limit=1800,
    time_limit=1900,
    autoretry_for=_TRANSIENT,
    retry_backoff=True,
    max_retries=3,
)
def reconcile_storage() -> int:
    """Delete S3 objects that no live asset owns (past a grace period)."""
    ctx = context.get()
    n = assets.reconcile(ctx.redis, ctx.storage, ctx.settings)
    if n:
        log.info("reconciled away %d orphan objects", n)
    return n
