"""Callback deliveries (queue ``maintenance``): POST a finished job's
document to its ``callback_url`` / ``callbackUrl``, signed with the key's
webhook secrets (Standard Webhooks, plus the legacy header), retried with
exponential backoff on network errors, 5xx, 408 and 429, up to
``AUDIOQ_CALLBACK_ATTEMPTS`` attempts.

Every attempt is counted on the job (``callback_status``). A delivery that
already succeeded is not sent again, so a redelivered message is harmless."""

from __future__ import annotations

import json
import logging

from celery import shared_task

from shared import db, documents, jobs, keys, queue, webhooks
from shared.errors import ApiError
from workers import context

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 600


@shared_task(name=queue.CALLBACK_TASK, bind=True, acks_late=True, max_retries=None)
def deliver_callback(self, job_id: str, document: str | None = None) -> None:
    """``document``: the body of the first attempt, so that every retry sends
    the same bytes (links in it are signed once, valid until the asset expires).
    Each attempt is signed anew: its own timestamp, the secrets valid now."""
    ctx = context.get()
    r = ctx.redis
    try:
        job = jobs.get_any(r, job_id)
    except ApiError:
        return  # the job record expired: nothing left to send
    if not job.callback_url or not job.finished or job.callback_delivered_at is not None:
        return
    if document is None:
        document = json.dumps(documents.webhook_payload(r, ctx.storage, job), separators=(",", ":"))
    body = document.encode()
    attempt = self.request.retries + 1
    try:
        status = webhooks.deliver(
            job.callback_url,
            body,
            keys.webhook_secrets(r, job.owner).signing,
            allow=ctx.settings.fetch_allowlist,
            delivery_id=job.id,
        )
    except webhooks.DeliveryError as e:
        if attempt < ctx.settings.callback_attempts:
            jobs.record_callback(r, job_id, status=e.status, error=f"{e.message}; retrying")
            wait = e.retry_after if e.retry_after is not None else 2 ** (attempt - 1)
            raise self.retry(args=[job_id, document], exc=e, countdown=min(MAX_BACKOFF_S, wait)) from None
        outcome = f"{e.message}; gave up after {attempt} attempts"
        jobs.record_callback(r, job_id, status=e.status, error=outcome)
    except ApiError as e:  # the URL is not allowed (any more): never retried
        outcome = f"not sent: {e.message}"
        jobs.record_callback(r, job_id, status=None, error=outcome)
    else:
        if status < 300:
            outcome = f"delivered: HTTP {status}"
            jobs.record_callback(r, job_id, status=status, delivered_at=db.now())
        else:
            outcome = f"refused by the receiver: HTTP {status}; not retried"
            jobs.record_callback(r, job_id, status=status, error=outcome)
    log.info("callback of %s: %s", job_id, outcome)
