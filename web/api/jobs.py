"""Processing routes (``POST /v1/{operation}``) and the jobs resource.

Every processing request becomes a job. A route per registry entry is added
at import, so a new operation needs no new code here. The answer is 200 with
the result when the job finishes within the wait (fast operations wait up to
``AUDIOQ_SYNC_WAIT_S`` by default, long ones not at all; ``Prefer`` changes
it), else 202 with ``Location`` to poll.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator

from flask import Blueprint, Response, g, jsonify, request
from redis import RedisError

from shared import assets, db, documents, jobs, operations, outputs, queue, urlfetch
from shared.errors import ApiError
from web import auth, params, services, uploads
from web.submit import submit_job

bp = Blueprint("jobs", __name__)
bp.before_request(auth.require_key)

MAX_JSON_BYTES = 64 * 1024


# ------------------------------------------------------------------ input


def json_body() -> dict:
    if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
        raise ApiError(413, f"JSON bodies are limited to {MAX_JSON_BYTES // 1024} KB")
    raw = request.stream.read(MAX_JSON_BYTES + 1)
    if len(raw) > MAX_JSON_BYTES:
        raise ApiError(413, f"JSON bodies are limited to {MAX_JSON_BYTES // 1024} KB")
    try:
        body = json.loads(raw or b"{}")
    except ValueError as e:
        raise ApiError(400, f"Malformed JSON body: {e}", "invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, 'The JSON body must be an object, e.g. {"asset_id": "afa_..."}', "invalid_json")
    return body


# A field that was not sent at all (a JSON null or "" is sent, and refused).
NOT_GIVEN = object()


def callback_target(raw: object, field: str = "callback_url") -> str:
    """A callback URL, checked like any outbound URL (http(s), no private
    addresses unless allowlisted); "" when none was given (``NOT_GIVEN``)."""
    if raw is NOT_GIVEN:
        return ""
    if not isinstance(raw, str):
        raise ApiError(400, f"{field} must be a string (an http or https URL)", "invalid_url")
    if not raw:
        raise ApiError(400, f"{field} is empty: give an http or https URL, or leave it out", "invalid_url")
    urlfetch.check_url(raw, services.get().settings.fetch_allowlist, field=field)
    return raw


def _query() -> dict[str, str]:
    """The query string as a dict; a parameter given twice is refused rather
    than one of its values silently dropped."""
    for name, values in request.args.lists():
        if len(values) > 1:
            raise _given_twice(name, "the query string twice")
    return request.args.to_dict()


def _given_twice(name: str, where: str) -> ApiError:
    message = f"Give {name} once, not in {where}"
    if name in ("asset_id", "callback_url"):
        return ApiError(400, message, "invalid_field", field=name)
    return ApiError(400, message, "invalid_option", option=name)


def _input(op: operations.Operation) -> tuple[assets.Asset, dict, str]:
    """The source asset, the validated options and the callback URL, from
    either input form. All are checked before any audio is stored."""
    svc = services.get()
    query = _query()
    query_asset = query.pop("asset_id", None)
    callback = query.pop("callback_url", NOT_GIVEN)
    mimetype = request.mimetype or ""
    has_body = (request.content_length or 0) > 0 or request.headers.get("Transfer-Encoding")
    if mimetype == "application/json":
        body = json_body()
        twice = sorted(set(body) & set(request.args))
        if twice:
            raise _given_twice(twice[0], "both the JSON body and the query string")
        asset_id = body.pop("asset_id", query_asset)
        callback = body.pop("callback_url", callback)
        if not isinstance(asset_id, str) or not asset_id:
            raise ApiError(
                400,
                'Send {"asset_id": "afa_..."} (a string) or the audio bytes themselves',
                "invalid_field",
                field="asset_id",
            )
        options = op.parse_options({**query, **body})
        return assets.get(svc.redis, g.key.id, asset_id), options, callback_target(callback)
    if uploads.is_audio_body(mimetype) and has_body:
        if query_asset is not None:
            raise ApiError(
                400, "Send either audio bytes or an asset_id, not both", "invalid_field", field="asset_id"
            )
        options = op.parse_options(query)
        callback_url = callback_target(callback)
        uploads.admit()
        asset, _ = uploads.store(uploads.body(), query=op.query_input)
        return asset, options, callback_url
    if not has_body and query_asset:
        options = op.parse_options(query)
        return assets.get(svc.redis, g.key.id, query_asset), options, callback_target(callback)
    if not has_body:
        raise ApiError(400, 'Send the audio bytes, or JSON {"asset_id": "afa_..."}', "missing_input")
    raise ApiError(
        415, "Send audio bytes (Content-Type audio/* or application/octet-stream) or application/json"
    )


# ------------------------------------------------------------------ output


def _meta(job: jobs.Job, remaining: int, **extra: object) -> dict:
    return {
        "cache": job.cache,
        "latency_ms": int(round((time.monotonic() - g.started) * 1000)),
        "credits_used": job.credits_used,
        "credits_remaining": remaining,
        "trace_id": job.trace_id,
        **extra,
    }


def job_document(job: jobs.Job) -> dict:
    svc = services.get()
    return documents.job_document(svc.redis, svc.storage, job)


def _poll_url(job_id: str) -> str:
    return f"{services.get().settings.public_url}/v1/jobs/{job_id}"


def _respond(op: operations.Operation, sub: jobs.Submitted, asset: assets.Asset, applied: list[str]):
    job = sub.job
    remaining = jobs.balance(services.get().redis, job.owner)
    expires_at = db.iso(asset.expires_at)
    headers = {"Preference-Applied": ", ".join(applied)} if applied else {}
    if sub.replay:
        headers["Idempotent-Replayed"] = "true"
    if job.status == "completed":
        svc = services.get()
        result = outputs.render(job.result or {}, svc.storage, int(asset.expires_at - db.now()))
        body = {
            **result,
            **({"test": True} if job.test else {}),
            "job_id": job.id,
            "asset_id": job.asset_id,
            "asset_expires_at": expires_at,
            "_meta": _meta(job, remaining),
        }
        return jsonify(body), 200, headers
    if job.status in ("failed", "cancelled"):
        err = (
            ApiError.from_dict(job.error or {})
            if job.status == "failed"
            else ApiError(409, "The job was cancelled", "job_cancelled")
        )
        err.headers.update(headers)  # a replayed failure is still a replay
        raise err
    body = {
        **({"test": True} if job.test else {}),
        "job_id": job.id,
        "op": job.op,
        "status": job.status,
        "poll_url": _poll_url(job.id),
        "asset_id": job.asset_id,
        "asset_expires_at": expires_at,
        "_meta": _meta(job, remaining, credits_reserved=job.cost if job.billed else 0),
    }
    return jsonify(body), 202, {**headers, "Location": _poll_url(job.id), "Retry-After": str(op.poll_s)}


# ------------------------------------------------------------------ routes


def submit(op_name: str):
    op = operations.get(op_name)
    svc = services.get()
    asset, options, callback_url = _input(op)
    wait_s, applied = params.prefer_wait(svc.settings.sync_wait_s if op.sync else 0.0)
    sub = submit_job(op, asset, options, callback_url=callback_url)
    if not sub.job.finished and wait_s > 0:
        sub = dataclasses.replace(sub, job=jobs.wait(svc.redis, sub.job.id, wait_s))
    return _respond(op, sub, asset, applied)


for _op in operations.OPERATIONS.values():
    if not _op.public:
        continue
    bp.add_url_rule(
        f"/v1/{_op.name}",
        endpoint=f"submit_{_op.name.replace('/', '_').replace('-', '_')}",
        view_func=submit,
        methods=["POST"],
        defaults={"op_name": _op.name},
    )


@bp.get("/v1/jobs")
def list_jobs():
    limit, cursor = params.pagination()
    page, next_cursor = jobs.list_for_owner(services.get().redis, g.key.id, limit=limit, cursor=cursor)
    return jsonify({"items": [job_document(j) for j in page], "next_cursor": next_cursor, "count": len(page)})


@bp.get("/v1/jobs/<job_id>")
def get_job(job_id: str):
    return jsonify(job_document(jobs.get(services.get().redis, g.key.id, job_id)))


def _sse(event: str, data: dict, event_id: str) -> str:
    return f"id: {event_id}\nevent: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _state_id(job: jobs.Job) -> str:
    return f"{job.status}-{job.progress:.4f}"


@bp.get("/v1/jobs/<job_id>/events")
def job_events(job_id: str):
    """Server-sent events: ``progress`` ``{job_id, status, progress}`` now and
    on every change, then ``done`` with the job document once it has ended,
    then the stream closes. Comment lines keep an idle stream alive; a stream
    also closes after AUDIOQ_EVENTS_MAX_S, and the client reconnects (with
    ``Last-Event-ID``: a state it has already seen is not sent again)."""
    svc = services.get()
    job = jobs.get(svc.redis, g.key.id, job_id)  # 404 (JSON) before the stream starts
    seen = request.headers.get("Last-Event-ID", "")
    r, storage, settings = svc.redis, svc.storage, svc.settings

    def stream() -> Iterator[str]:
        last = seen
        yield "retry: 1000\n\n"  # reconnect after a second when the stream closes early
        try:
            for state in jobs.watch(
                r, job.id, max_s=settings.events_max_s, heartbeat_s=settings.events_heartbeat_s
            ):
                if state is None:
                    yield ": keep-alive\n\n"
                    continue
                sid = _state_id(state)
                if sid != last:
                    last = sid
                    yield _sse(
                        "progress",
                        {"job_id": state.id, "status": state.status, "progress": round(state.progress, 4)},
                        sid,
                    )
                if state.finished:
                    yield _sse("done", documents.job_document(r, storage, state), sid)
                    return
        except RedisError:
            # The headers are gone already: no error body is possible, so say
            # why in a comment and end; the client's reconnect gets a 503.
            yield ": job state unavailable; reconnect\n\n"
            return
        yield ": time limit of this stream reached; reconnect to follow the job further\n\n"

    return Response(
        stream(),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@bp.delete("/v1/jobs/<job_id>")
def cancel_job(job_id: str):
    svc = services.get()
    job = jobs.get(svc.redis, g.key.id, job_id)
    was = jobs.cancel(svc.redis, job, ttl=svc.settings.job_ttl_s, stale_s=svc.settings.job_stale_s)
    if was in ("was_queued", "was_stalled") and job.callback_url:
        queue.notify(svc.celery, job.id)  # a live worker sends it when it stops
    return jsonify(job_document(jobs.get(svc.redis, g.key.id, job_id)))
