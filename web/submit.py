"""Turning a validated request into a job: shared by the v1 processing
routes and the tasks dialect."""

from __future__ import annotations

from flask import g, request

from shared import assets, jobs, operations, queue
from shared.errors import ApiError
from web import services

QUEUE_DOWN = "The job queue is unavailable; nothing was charged. Try again shortly"


def submit_job(
    op: operations.Operation,
    asset: assets.Asset,
    options: dict,
    *,
    callback_url: str = "",
) -> jobs.Submitted:
    """Reserve credits and record the job (or answer it from the cache, or
    replay the Idempotency-Key's job), then queue it; a queue that cannot be
    reached fails the job with a refund (503)."""
    svc = services.get()
    plan = svc.settings.limits(g.key)
    sub = jobs.submit(
        svc.redis,
        owner=g.key.id,
        op=op,
        options=options,
        asset_id=asset.id,
        sha256=asset.sha256,
        cost=svc.settings.cost(op, options),
        billed=plan.billed,
        trace_id=g.trace_id,
        queue_timeout_s=svc.settings.job_queue_timeout_s,
        job_ttl_s=svc.settings.job_ttl_s,
        idempotency_key=request.headers.get("Idempotency-Key") or None,
        cached_result=jobs.cached(svc.redis, op, asset.sha256, options, asset.id),
        callback_url=callback_url,
        in_flight_cap=plan.in_flight.get(op.queue),
        extra={"test": "1"} if plan.test else None,
    )
    job = sub.job
    if sub.replay:
        return sub
    try:
        if job.status == "queued":
            queue.enqueue(svc.celery, op, job.id, job.token, g.trace_id)
        elif callback_url:  # answered from the cache: the callback is still owed
            queue.notify(svc.celery, job.id)
    except Exception as e:  # broker unreachable: nothing will run it
        jobs.fail(
            svc.redis,
            job,
            ApiError(503, QUEUE_DOWN, "queue_unavailable"),
            refund=True,
            ttl=svc.settings.job_ttl_s,
        )
        raise ApiError(503, QUEUE_DOWN, "queue_unavailable") from e
    return sub
