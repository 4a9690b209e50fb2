"""The tasks dialect: ``POST /tasks``, ``GET /tasks/{id}``, ``GET /tasks``.

A task asks for stems of one source (an asset, or audio fetched from a
``url``) in one or more formats: ``targets: [{model, formats}]``. All targets
share one separation run: a job of the internal operation ``tasks/separate``
whose id is the task id. It runs the 2-stem separation when only ``vocals``
and ``instrumental`` are asked for, the 4-stem one otherwise, and costs what
the v1 route with that many stems costs.
"""

from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from shared import assets, db, documents, jobs, operations, urlfetch
from shared.errors import ApiError
from web import auth, params, services, uploads
from web.api.jobs import NOT_GIVEN, callback_target, json_body
from web.submit import submit_job

bp = Blueprint("tasks", __name__)
bp.before_request(auth.require_key)

OP = "tasks/separate"
FIELDS = ("assetId", "url", "targets", "callbackUrl", "callback_url")
NOT_FOUND = "Cannot find task"


def _invalid(field: str, message: str) -> ApiError:
    """A malformed field of the task request, named in ``field``."""
    return ApiError(400, message, "invalid_field", field=field)


def _targets(raw: object) -> dict[str, list[str]]:
    example = 'e.g. "targets": [{"model": "vocals", "formats": ["wav"]}]'
    if not isinstance(raw, list) or not raw:
        raise _invalid("targets", f"'targets' must be a non-empty list of {{model, formats}}; {example}")
    out: dict[str, list[str]] = {}
    for i, t in enumerate(raw):
        where = f"targets[{i}]"
        if not isinstance(t, dict):
            raise _invalid(where, f"{where} must be an object with 'model' and 'formats'; {example}")
        extra = sorted(set(t) - {"model", "formats"})
        if extra:
            raise _invalid(where, f"{where} has an unknown field {extra[0]!r}; allowed: model, formats")
        model, formats = t.get("model"), t.get("formats")
        if model not in operations.TASK_MODELS:
            raise _invalid(
                f"{where}.model", f"{where}.model must be one of {', '.join(operations.TASK_MODELS)}"
            )
        if model in out:
            raise _invalid(
                f"{where}.model", f"{where}.model {model!r} is asked for twice; list its formats once"
            )
        if not isinstance(formats, list) or not formats:
            raise _invalid(f"{where}.formats", f'{where}.formats must be a non-empty list, e.g. ["wav"]')
        for f in formats:
            if f not in operations.FORMATS:
                raise _invalid(
                    f"{where}.formats",
                    f"{where}.formats: {f!r} is not one of {', '.join(operations.FORMATS)}",
                )
        if len(set(formats)) != len(formats):
            raise _invalid(f"{where}.formats", f"{where}.formats lists a format twice")
        out[model] = list(formats)
    return out


def _fetch(url: object) -> assets.Asset:
    """Stream the audio at ``url`` into an asset of the caller (deduplicated)."""
    if not isinstance(url, str) or not url:
        raise _invalid("url", "'url' must be a non-empty http(s) URL string")
    svc = services.get()
    plan = svc.settings.limits(g.key)
    uploads.admit()  # credits (the JSON request itself is far below the size limit)
    with urlfetch.open_url(
        url,
        allow=svc.settings.fetch_allowlist,
        timeout_s=svc.settings.fetch_timeout_s,
        max_bytes=plan.max_upload_bytes,
    ) as resp:
        asset, _ = uploads.store(uploads.fetched(resp), name=resp.name)
    return asset


@bp.post("/tasks")
def create_task():
    svc = services.get()
    if (request.mimetype or "") != "application/json":
        raise ApiError(415, "Send the task as application/json")
    body = json_body()
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise _invalid(
            unknown[0], f"Unknown field {unknown[0]!r}; allowed: assetId, url, targets, callbackUrl"
        )
    if ("assetId" in body) == ("url" in body):
        raise _invalid("assetId", "Give exactly one of 'assetId' and 'url'")
    if "callbackUrl" in body and "callback_url" in body:
        raise _invalid("callbackUrl", "Give the callback URL once: 'callbackUrl' or 'callback_url'")
    targets = _targets(body.get("targets"))
    field = "callback_url" if "callback_url" in body else "callbackUrl"
    callback_url = callback_target(body.get(field, NOT_GIVEN), field)
    op = operations.get(OP)
    options = op.parse_options({"targets": operations.format_targets(targets)})
    if "assetId" in body:
        if not isinstance(body["assetId"], str):
            raise _invalid("assetId", "'assetId' must be a string")
        asset = assets.get(svc.redis, g.key.id, body["assetId"])
    else:
        asset = _fetch(body["url"])
    sub = submit_job(op, asset, options, callback_url=callback_url)
    svc.redis.zadd(db.owner_tasks_key(g.key.id), {sub.job.id: sub.job.created_at})
    doc = documents.task_document(svc.redis, svc.storage, sub.job)
    headers = {"Location": f"{svc.settings.public_url}/tasks/{sub.job.id}"}
    if sub.replay:
        headers["Idempotent-Replayed"] = "true"
    return jsonify(doc), 200 if sub.replay else 201, headers


def _task(task_id: str) -> jobs.Job:
    svc = services.get()
    try:
        job = jobs.get(svc.redis, g.key.id, task_id)
    except ApiError:
        raise ApiError(404, NOT_FOUND, "task_not_found") from None
    if job.op != OP:
        raise ApiError(404, NOT_FOUND, "task_not_found")
    return job


@bp.get("/tasks/<task_id>")
def get_task(task_id: str):
    svc = services.get()
    return jsonify(documents.task_document(svc.redis, svc.storage, _task(task_id)))


@bp.get("/tasks")
def list_tasks():
    """Newest first, ``?limit=`` and ``?cursor=`` (the last id seen) as for
    ``GET /assets``; a plain list, like the dialect's other listings."""
    svc = services.get()
    limit, cursor = params.pagination()
    hashes, _ = db.newest_first(
        svc.redis, db.owner_tasks_key(g.key.id), db.job_key, limit=limit, cursor=cursor, what="task id"
    )
    return jsonify([documents.task_document(svc.redis, svc.storage, jobs.Job.from_hash(h)) for h in hashes])
