"""The JSON documents that describe a job: the v1 job document and the
tasks-dialect task document. Shared by the API (GET routes) and the workers
(callbacks POST the same document the API would show)."""

from __future__ import annotations

from shared import db, jobs, operations, outputs
from shared.storage import Storage

# The tasks dialect's status words.
TASK_STATUS = {
    "queued": "queued",
    "running": "processing",
    "completed": "completed",
    "failed": "failed",
    "cancelled": "failed",
}


def _expires(r, job: jobs.Job) -> float | None:
    raw = r.hget(db.asset_key(job.asset_id), "expires_at")
    return float(raw) if raw else None


def _links(r, storage: Storage, job: jobs.Job, value):
    """The result with links valid until the source asset expires."""
    expires_at = _expires(r, job)
    if value is None or expires_at is None:
        return value
    return outputs.render(value, storage, int(expires_at - db.now()))


def callback_status(job: jobs.Job, camel: bool = False) -> dict | None:
    """The callback delivery's state, times in ISO 8601 (None without a callback URL)."""
    st = job.callback_status
    if st is None:
        return None
    st = {**st, "delivered_at": db.iso(st["delivered_at"])}
    if camel:
        names = {"last_status": "lastStatus", "last_error": "lastError", "delivered_at": "deliveredAt"}
        return {names.get(k, k): v for k, v in st.items()}
    return st


def job_document(r, storage: Storage, job: jobs.Job) -> dict:
    return {
        **({"test": True} if job.test else {}),
        "job_id": job.id,
        "op": job.op,
        "status": job.status,
        "progress": round(job.progress, 4),
        "created_at": db.iso(job.created_at),
        "started_at": db.iso(job.started_at),
        "finished_at": db.iso(job.finished_at),
        "asset_id": job.asset_id,
        "asset_expires_at": db.iso(_expires(r, job)),
        "result": _links(r, storage, job, job.result),
        "error": job.error,
        "callback_status": callback_status(job),
        "_meta": {
            "cache": job.cache,
            "latency_ms": job.latency_ms,
            "credits_used": job.credits_used,
            "credits_remaining": jobs.balance(r, job.owner),
            "trace_id": job.trace_id,
        },
    }


def task_document(r, storage: Storage, job: jobs.Job) -> dict:
    status = TASK_STATUS[job.status]
    files = (_links(r, storage, job, job.result) or {}).get("targets", {})
    targets = [
        {
            "model": model,
            "status": status,
            "output": [{"format": f, "link": files[model][f]} for f in fmts if f in files.get(model, {})],
        }
        for model, fmts in operations.parse_targets(str(job.options.get("targets", ""))).items()
    ]
    doc = {
        "id": job.id,
        "status": status,
        "progress": round(job.progress, 4),
        "assetId": job.asset_id,
        "createdAt": db.iso(job.created_at),
        "finishedAt": db.iso(job.finished_at),
        "targets": targets,
        "callbackStatus": callback_status(job, camel=True),
    }
    if job.result and "model" in job.result:
        doc["separationModel"] = job.result["model"]
    if job.status in ("failed", "cancelled"):
        doc["error"] = job.error or {
            "statusCode": 409,
            "error": "Conflict",
            "message": "The task was cancelled",
        }
    return doc


def render(r, storage: Storage, job: jobs.Job) -> dict:
    """The document that describes ``job`` in its operation's dialect."""
    if operations.get(job.op).document == "task":
        return task_document(r, storage, job)
    return job_document(r, storage, job)


def event_type(job: jobs.Job) -> str:
    """The webhook event type of a finished job: ``job.completed``,
    ``job.failed`` or ``job.cancelled`` (also for a task, whose own status
    word for a cancelled job is ``failed``)."""
    return f"job.{job.status}"


def webhook_payload(r, storage: Storage, job: jobs.Job) -> dict:
    """What a callback POSTs: the event ``type`` and ``timestamp`` (when the
    job ended) of Standard Webhooks, then the document in the job's dialect,
    without its callback delivery state (which this very delivery changes)."""
    doc = render(r, storage, job)
    doc.pop("callback_status", None)
    doc.pop("callbackStatus", None)
    return {"type": event_type(job), "timestamp": db.iso(job.finished_at), **doc}
