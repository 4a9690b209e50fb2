"""The OpenAPI 3.1 document of the API, built from the operation registry.

Pure: :func:`document` takes the settings (costs, public URL) and returns a
dict; ``web/api/docs.py`` serves it. Processing routes, their options,
costs, answers and result schemas come from ``shared/operations.py``; every
other route is one :class:`Route` entry in :data:`ROUTES` (adding a route to
the API means adding its entry there: ``tests/test_openapi.py`` fails while a
Flask route is undocumented or a documented path does not exist).
"""

from __future__ import annotations

from dataclasses import dataclass

from shared import operations, results
from shared.results import INTEGER, LINK, STRING, Schema, array, obj
from shared.settings import Settings

# ----------------------------------------------------------------- helpers


def ref(kind: str, name: str) -> dict:
    return {"$ref": f"#/components/{kind}/{name}"}


def schema(name: str) -> dict:
    return ref("schemas", name)


def json_content(s: dict, example: object = None) -> dict:
    media: dict = {"schema": s}
    if example is not None:
        media["example"] = example
    return {"application/json": media}


def ok(description: str, s: dict, *, headers: tuple[str, ...] = ()) -> dict:
    out: dict = {"description": description, "content": json_content(s)}
    if headers:
        out["headers"] = {h: ref("headers", h) for h in headers}
    return out


def param(name: str) -> dict:
    return ref("parameters", name)


# Error responses every authenticated route can give, and per-route extras.
AUTH_ERRORS = ("401", "429", "503")
DATE_TIME: Schema = {"type": "string", "format": "date-time"}
NULLABLE_DATE_TIME: Schema = {"type": ["string", "null"], "format": "date-time"}
ASSET_ID: Schema = {"type": "string", "pattern": "^afa_[A-Za-z0-9_-]{20,}$", "examples": ["afa_8Yt3kq..."]}
JOB_ID: Schema = {"type": "string", "examples": ["job_Q2f9..."]}
EVENT_TYPES = ("job.completed", "job.failed", "job.cancelled")


@dataclass(frozen=True)
class Route:
    """One documented route (the processing routes come from the registry)."""

    method: str
    path: str  # OpenAPI template: /v1/jobs/{job_id}
    operation_id: str
    summary: str
    tag: str
    responses: dict
    errors: tuple[str, ...] = ()  # statuses of components/responses beyond AUTH_ERRORS
    parameters: tuple[str | dict, ...] = ()  # names in components/parameters, or parameters
    body: dict | None = None
    description: str = ""
    public: bool = False  # no API key needed

    def operation(self) -> dict:
        errs = self.errors if self.public else AUTH_ERRORS + self.errors
        op: dict = {
            "operationId": self.operation_id,
            "summary": self.summary,
            "tags": [self.tag],
            "parameters": [param(p) if isinstance(p, str) else p for p in ("XRequestId", *self.parameters)],
            "responses": {
                **self.responses,
                **{s: ref("responses", s) for s in sorted(errs)},
                "default": ref("responses", "default"),
            },
        }
        if self.description:
            op["description"] = self.description
        if self.body is not None:
            op["requestBody"] = self.body
        if self.public:
            op["security"] = []
        return op


# ------------------------------------------------------------- the routes


def _get(path: str, operation_id: str, summary: str, tag: str, params: tuple[str, ...], body: dict) -> Route:
    """A read: 200 with ``body``; 400 for bad paging, 404 for an unknown id."""
    return Route(
        "get",
        path,
        operation_id,
        summary,
        tag,
        parameters=params,
        responses={"200": ok(summary, body)},
        errors=("400",) if "Limit" in params else ("404",),
    )


def _listing(path: str, operation_id: str, summary: str, tag: str, page: dict) -> Route:
    """A newest-first listing with ``?limit=`` and ``?cursor=``."""
    return _get(path, operation_id, summary, tag, ("Limit", "Cursor"), page)


def _read(path: str, operation_id: str, summary: str, tag: str, id_param: str, document: str) -> Route:
    """One of the caller's resources by id (another tenant's is a 404 too)."""
    return _get(path, operation_id, summary, tag, (id_param,), schema(document))


_RAW_AUDIO = {
    "audio/*": {"schema": {"type": "string", "contentMediaType": "audio/*"}},
    "application/octet-stream": {
        "schema": {"type": "string", "contentMediaType": "application/octet-stream"}
    },
}

ROUTES: tuple[Route, ...] = (
    Route(
        "post",
        "/v1/assets/upload",
        "uploadAsset",
        "Upload audio as raw bytes",
        "assets",
        description="Streams the body to storage while hashing it, then probes it as audio. "
        "The same bytes uploaded again by the same key return the existing asset (200) with its "
        "expiry moved to a full lifetime from now.",
        parameters=("AssetName",),
        body={"required": True, "content": _RAW_AUDIO},
        responses={
            "201": ok("Stored", schema("AssetUploaded")),
            "200": ok(
                "The same bytes were uploaded before: that asset, expiry extended", schema("AssetUploaded")
            ),
        },
        errors=("400", "408", "413", "415"),
    ),
    _listing("/v1/assets", "listAssets", "List your assets, newest first", "assets", schema("AssetPage")),
    _read("/v1/assets/{asset_id}", "getAsset", "Asset metadata", "assets", "AssetId", "Asset"),
    Route(
        "post",
        "/assets",
        "uploadTasksAsset",
        "Upload audio as multipart/form-data field 'file' (tasks dialect)",
        "tasks dialect",
        body={
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "contentMediaType": "application/octet-stream"}
                        },
                    }
                }
            },
        },
        responses={
            "201": ok("Stored", schema("TasksAssetLink")),
            "200": ok("Deduplicated: the existing asset", schema("TasksAssetLink")),
        },
        errors=("400", "408", "413", "415"),
    ),
    _listing(
        "/assets",
        "listTasksAssets",
        "List your assets, newest first (tasks dialect)",
        "tasks dialect",
        array(schema("TasksAsset")),
    ),
    _read(
        "/assets/{asset_id}",
        "getTasksAsset",
        "Asset with a presigned link to the original (tasks dialect)",
        "tasks dialect",
        "AssetId",
        "TasksAssetDetail",
    ),
    _listing("/v1/jobs", "listJobs", "List your jobs, newest first", "jobs", schema("JobPage")),
    _read("/v1/jobs/{job_id}", "getJob", "Job status, progress and result", "jobs", "JobId", "Job"),
    Route(
        "delete",
        "/v1/jobs/{job_id}",
        "cancelJob",
        "Cancel a queued (refunded) or running job",
        "jobs",
        parameters=("JobId",),
        responses={"200": ok("The cancelled job", schema("Job"))},
        errors=("404", "409"),
    ),
    Route(
        "post",
        "/tasks",
        "createTask",
        "Stems of one source in one or more formats (tasks dialect)",
        "tasks dialect",
        description="All targets share one separation run: 2 stems when only vocals/instrumental "
        "are asked for, 4 otherwise, billed as the v1 route with as many stems.",
        parameters=("IdempotencyKey",),
        body={"required": True, "content": json_content(schema("TaskRequest"))},
        responses={
            "201": ok("Accepted", schema("Task"), headers=("Location",)),
            "200": ok(
                "Idempotency-Key replay: the original task", schema("Task"), headers=("Idempotent-Replayed",)
            ),
        },
        errors=("400", "404", "413", "415", "422", "504"),
    ),
    _listing(
        "/tasks",
        "listTasks",
        "List your tasks, newest first (tasks dialect)",
        "tasks dialect",
        array(schema("Task")),
    ),
    _read(
        "/tasks/{task_id}",
        "getTask",
        "Task status and outputs (tasks dialect)",
        "tasks dialect",
        "TaskId",
        "Task",
    ),
    Route(
        "get",
        "/v1/account",
        "getAccount",
        "Your key: plan, credits and the webhook secret that signs callbacks",
        "account",
        responses={"200": ok("The account", schema("Account"))},
    ),
    Route(
        "post",
        "/v1/account/webhook-secret",
        "rotateWebhookSecret",
        "Rotate the webhook secret; the previous one keeps signing for AUDIOQ_WEBHOOK_SECRET_GRACE_S",
        "account",
        description="Deliveries carry one webhook-signature per valid secret until the previous "
        "secret's grace period ends, so receivers can switch without losing a delivery.",
        responses={
            "200": ok(
                "The new secret",
                obj({"webhook_secret": STRING, "previous_valid_until": DATE_TIME}),
            )
        },
    ),
    Route(
        "get",
        "/v1/jobs/{job_id}/events",
        "streamJobEvents",
        "Live progress of a job as server-sent events",
        "jobs",
        description="`retry: 1000`, then `event: progress` (data `{job_id, status, progress}`, id "
        "`{status}-{progress}`) on every change and `: keep-alive` comments every "
        "AUDIOQ_EVENTS_HEARTBEAT_S; when the job ends, `event: done` with the job document, then the "
        "stream closes. After AUDIOQ_EVENTS_MAX_S it closes with a comment: reconnect, sending "
        "`Last-Event-ID` to skip states already seen.",
        parameters=(
            "JobId",
            {"name": "Last-Event-ID", "in": "header", "required": False, "schema": STRING},
        ),
        responses={
            "200": {
                "description": "The event stream",
                "content": {"text/event-stream": {"schema": STRING}},
            }
        },
        errors=("404",),
    ),
    Route(
        "get",
        "/healthz",
        "getHealth",
        "Liveness: the process answers",
        "operations",
        public=True,
        responses={"200": ok("Alive", obj({"status": {"const": "ok"}}))},
    ),
    Route(
        "get",
        "/readyz",
        "getReadiness",
        "Readiness: Redis, S3 and the broker answer; workers online per queue",
        "operations",
        public=True,
        responses={"200": ok("Ready", schema("Readiness"))},
        errors=("503",),
    ),
    Route(
        "get",
        "/metrics",
        "getMetrics",
        "Prometheus metrics (text exposition format)",
        "operations",
        public=True,
        responses={"200": {"description": "Metrics", "content": {"text/plain": {"schema": STRING}}}},
    ),
    Route(
        "get",
        "/openapi.json",
        "getOpenApi",
        "This document",
        "operations",
        public=True,
        responses={"200": ok("OpenAPI 3.1", {"type": "object"})},
    ),
)


# ----------------------------------------------------- processing routes


def _option_schema(opt: operations.Option) -> dict:
    kind = {float: "number", int: "integer", str: "string", bool: "boolean"}[opt.type]
    s: dict = {"type": kind, "default": opt.default}
    if opt.min is not None:
        s["minimum"] = opt.min
    if opt.max is not None:
        s["maximum"] = opt.max
    if opt.choices:
        s["enum"] = list(opt.choices)
    if opt.help:
        s["description"] = opt.help
    return s


def result_name(op: operations.Operation) -> str:
    """``bpm`` -> ``BpmResult``, ``separate/2stem`` -> ``Separate2stemResult``."""
    parts = op.name.replace("/", "-").split("-")
    return "".join(p[:1].upper() + p[1:] for p in parts) + "Result"


def _credits(n: int) -> str:
    return f"{n} credit" + ("" if n == 1 else "s")


def _submit_route(op: operations.Operation, settings: Settings) -> Route:
    options = {n: _option_schema(o) for n, o in op.options.items()}
    answers = "answers 200 with the result (waits up to AUDIOQ_SYNC_WAIT_S)" if op.sync else "answers 202"
    body = obj(
        {
            "asset_id": {**ASSET_ID, "description": "required unless given as the asset_id query parameter"},
            "callback_url": {"type": "string", "format": "uri", "description": "POSTed the job when it ends"},
            **options,
        },
        optional=("asset_id", "callback_url", *options),
        additionalProperties=False,
    )
    example = {"asset_id": "afa_8Yt3kqLw0cVb2mZr4TnA"} | {n: o.default for n, o in op.options.items()}
    return Route(
        "post",
        f"/v1/{op.name}",
        "submit" + result_name(op).removesuffix("Result"),
        f"{op.name}: {_credits(settings.cost(op, {}))}, {answers}",
        "processing",
        description=f'Send the audio bytes, or JSON `{{"asset_id"}}` plus options (options may also be '
        f"query parameters). Queue `{op.queue}`. `Prefer: respond-async` forces the 202, "
        "`Prefer: wait=N` (N <= 60) waits up to N seconds.",
        parameters=(
            "Prefer",
            "IdempotencyKey",
            {
                "name": "asset_id",
                "in": "query",
                "description": "the source asset, when no body is sent",
                "schema": ASSET_ID,
            },
            {
                "name": "callback_url",
                "in": "query",
                "description": "POSTed the job document when it ends",
                "schema": {"type": "string", "format": "uri"},
            },
            *({"name": n, "in": "query", "schema": s} for n, s in options.items()),
        ),
        body={"required": False, "content": {**json_content(body, example), **_RAW_AUDIO}},
        responses={
            "200": ok(
                "Finished within the wait: the result's fields, job_id, asset_id, _meta",
                {"allOf": [schema(result_name(op)), schema("Answer")]},
                headers=("Preference-Applied", "Idempotent-Replayed"),
            ),
            "202": ok(
                "Accepted: poll Location (Retry-After says when)",
                schema("Accepted"),
                headers=("Location", "Retry-After", "Preference-Applied", "Idempotent-Replayed"),
            ),
        },
        errors=("400", "404", "408", "409", "413", "415", "422"),
    )


# ------------------------------------------------------------ components

_ERROR = obj(
    {
        "statusCode": {"type": "integer", "minimum": 400, "maximum": 599},
        "error": {"type": "string", "description": "the status's reason phrase"},
        "message": {"type": "string", "description": "a sentence a person can act on"},
        "code": {"type": "string", "description": "stable, for programs (docs/api.md lists them)"},
        "option": {"type": "string", "description": "invalid_option / unknown_option: the option's name"},
        "field": {"type": "string", "description": "invalid_field: the request field, e.g. targets[0].model"},
    },
    optional=("option", "field"),
    examples=[
        {"statusCode": 404, "error": "Not Found", "message": "Cannot find asset", "code": "asset_not_found"},
        {
            "statusCode": 400,
            "error": "Bad Request",
            "message": "Option 'fmin' of pitch must be at least 30.0",
            "code": "invalid_option",
            "option": "fmin",
        },
    ],
)

_META = obj(
    {
        "cache": {"type": "string", "enum": ["hit", "miss"]},
        "latency_ms": {"type": ["integer", "null"]},
        "credits_used": INTEGER,
        "credits_remaining": INTEGER,
        "trace_id": STRING,
        "credits_reserved": {**INTEGER, "description": "on a 202: what the job holds until it ends"},
    },
    optional=("credits_reserved",),
)


def _callback_status(attempts: str, last_status: str, last_error: str, delivered_at: str) -> dict:
    """How the callback's delivery went, or null without a callback URL (the
    tasks dialect spells the same fields in camelCase)."""
    return {
        "anyOf": [
            obj(
                {
                    attempts: INTEGER,
                    last_status: {"type": ["integer", "null"]},
                    last_error: {"type": ["string", "null"]},
                    delivered_at: NULLABLE_DATE_TIME,
                }
            ),
            {"type": "null"},
        ],
        "description": "how the callback's delivery went (null when no callback URL was given)",
    }


_CALLBACK_STATUS = _callback_status("attempts", "last_status", "last_error", "delivered_at")

_TEST = {"type": "boolean", "const": True, "description": "submitted with a test-mode key"}
_OP_NAMES = [op.name for op in operations.OPERATIONS.values()]


def _job_schema() -> dict:
    by_op = [
        {
            "if": {"properties": {"op": {"const": op.name}}},
            "then": {"properties": {"result": {"anyOf": [schema(result_name(op)), {"type": "null"}]}}},
        }
        for op in operations.OPERATIONS.values()
    ]
    return obj(
        {
            "test": _TEST,
            "job_id": JOB_ID,
            "op": {"type": "string", "enum": _OP_NAMES},
            "status": {"type": "string", "enum": ["queued", "running", "completed", "failed", "cancelled"]},
            "progress": results.UNIT,
            "created_at": DATE_TIME,
            "started_at": NULLABLE_DATE_TIME,
            "finished_at": NULLABLE_DATE_TIME,
            "asset_id": STRING,
            "asset_expires_at": NULLABLE_DATE_TIME,
            "result": {
                "type": ["object", "null"],
                "description": "the operation's result once completed (its schema: <Op>Result)",
            },
            "error": {"anyOf": [schema("Error"), {"type": "null"}]},
            "_meta": schema("Meta"),
            "callback_status": _CALLBACK_STATUS,
        },
        optional=("test", "callback_status"),
        allOf=by_op,
        examples=[
            {
                "job_id": "job_Q2f9xYb3LmN0pRt5vWz7aC1d",
                "op": "bpm",
                "status": "completed",
                "progress": 1.0,
                "created_at": "2026-12-03T08:30:00Z",
                "started_at": "2026-12-03T08:30:00Z",
                "finished_at": "2026-12-03T08:30:01Z",
                "asset_id": "afa_8Yt3kqLw0cVb2mZr4TnA",
                "asset_expires_at": "2026-12-10T08:29:58Z",
                "result": {"tempo": 120.0, "confidence": 0.82, "alternatives": []},
                "error": None,
                "_meta": {
                    "cache": "miss",
                    "latency_ms": 912,
                    "credits_used": 1,
                    "credits_remaining": 999,
                    "trace_id": "5b0c5d5e9a7f4c1b8e2d3f4a5b6c7d8e",
                },
            }
        ],
    )


_TASK_STATUS = {"type": "string", "enum": ["queued", "processing", "completed", "failed"]}
_MODEL = {"type": "string", "enum": list(operations.TASK_MODELS)}
_FORMAT = {"type": "string", "enum": list(operations.FORMATS)}

_TASK = obj(
    {
        "id": JOB_ID,
        "status": _TASK_STATUS,
        "progress": results.UNIT,
        "assetId": STRING,
        "createdAt": DATE_TIME,
        "finishedAt": NULLABLE_DATE_TIME,
        "targets": array(
            obj(
                {
                    "model": _MODEL,
                    "status": _TASK_STATUS,
                    "output": array(obj({"format": _FORMAT, "link": LINK})),
                }
            )
        ),
        "separationModel": STRING,
        "error": schema("Error"),
        "callbackStatus": _callback_status("attempts", "lastStatus", "lastError", "deliveredAt"),
    },
    optional=("separationModel", "error", "callbackStatus"),
)

_TASK_REQUEST = obj(
    {
        "assetId": ASSET_ID,
        "url": {
            "type": "string",
            "format": "uri",
            "description": "http(s) audio to fetch (public addresses only)",
        },
        "targets": {
            "type": "array",
            "minItems": 1,
            "items": obj(
                {
                    "model": _MODEL,
                    "formats": {"type": "array", "minItems": 1, "uniqueItems": True, "items": _FORMAT},
                },
                additionalProperties=False,
            ),
        },
        "callbackUrl": {"type": "string", "format": "uri"},
        "callback_url": {"type": "string", "format": "uri", "description": "the same as callbackUrl"},
    },
    optional=("assetId", "url", "callbackUrl", "callback_url"),
    additionalProperties=False,
    oneOf=[{"required": ["assetId"]}, {"required": ["url"]}],
    examples=[
        {
            "assetId": "afa_8Yt3kqLw0cVb2mZr4TnA",
            "targets": [{"model": "vocals", "formats": ["wav", "mp3"]}],
            "callbackUrl": "https://example.com/hooks/audioq",
        }
    ],
)

_ASSET_FIELDS: dict[str, Schema] = {
    "asset_id": ASSET_ID,
    "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
    "size_bytes": INTEGER,
    "content_type": {"type": "string", "description": "what the prober found, e.g. audio/mpeg"},
    "format": STRING,
    "duration_s": results.SECONDS,
}

_SCHEMAS: dict[str, dict] = {
    "Error": _ERROR,
    "Meta": _META,
    "Job": _job_schema(),
    "JobPage": obj(
        {"items": array(schema("Job")), "next_cursor": {"type": ["string", "null"]}, "count": INTEGER}
    ),
    "Answer": obj(
        {
            "test": _TEST,
            "job_id": JOB_ID,
            "asset_id": STRING,
            "asset_expires_at": DATE_TIME,
            "_meta": schema("Meta"),
        },
        optional=("test",),
        description="What a finished request carries beside the result's fields",
    ),
    "Accepted": obj(
        {
            "test": _TEST,
            "job_id": JOB_ID,
            "op": {"type": "string", "enum": _OP_NAMES},
            "status": {"type": "string", "enum": ["queued", "running"]},
            "poll_url": {"type": "string", "format": "uri"},
            "asset_id": STRING,
            "asset_expires_at": DATE_TIME,
            "_meta": schema("Meta"),
        },
        optional=("test",),
    ),
    "AssetUploaded": obj({**_ASSET_FIELDS, "expires_at": DATE_TIME}),
    "Asset": obj(
        {
            **_ASSET_FIELDS,
            "sample_rate": INTEGER,
            "channels": INTEGER,
            "name": STRING,
            "created_at": DATE_TIME,
            "expires_at": DATE_TIME,
        }
    ),
    "AssetPage": obj(
        {"items": array(schema("Asset")), "next_cursor": {"type": ["string", "null"]}, "count": INTEGER}
    ),
    "TasksAsset": obj({"id": ASSET_ID, "format": STRING, "name": STRING}),
    "TasksAssetLink": obj({"id": ASSET_ID, "format": STRING, "name": STRING, "link": LINK}),
    "TasksAssetDetail": obj(
        {"id": ASSET_ID, "mimeType": STRING, "format": STRING, "name": STRING, "link": LINK}
    ),
    "Task": _TASK,
    "TaskRequest": _TASK_REQUEST,
    "Account": obj(
        {
            "id": STRING,
            "name": STRING,
            "plan": {"type": "string", "enum": ["basic", "pro", "enterprise"]},
            "test": {"type": "boolean"},
            "created_at": DATE_TIME,
            "revoked": {"type": "boolean"},
            "credits": INTEGER,
            "webhook_secret": {
                "type": "string",
                "description": "signs callbacks (Standard Webhooks, whsec_ + base64; X-Audioq-Signature)",
            },
            "webhook_secret_previous_valid_until": {
                **NULLABLE_DATE_TIME,
                "description": "after a rotation, the previous secret also signs until then",
            },
        },
        optional=("webhook_secret_previous_valid_until",),
    ),
    "Readiness": obj(
        {
            "status": {"const": "ready"},
            "redis": STRING,
            "s3": STRING,
            "broker": STRING,
            "workers": {
                "type": "object",
                "additionalProperties": obj({"online": INTEGER, "missing_models": INTEGER}),
            },
        }
    ),
    "WebhookEvent": {
        "description": "The job's document (the v1 job document, or the task document for a task) "
        "with the event's type",
        "allOf": [
            obj({"type": {"type": "string", "enum": list(EVENT_TYPES)}}),
            {"anyOf": [schema("Job"), schema("Task")]},
        ],
    },
}


def _header(description: str, s: Schema | None = None, *, required: bool = False) -> dict:
    out: dict = {"description": description, "schema": s or STRING}
    if required:  # wherever the header is listed, it is always sent
        out["required"] = True
    return out


_HEADERS = {
    "Location": _header(
        "Absolute URL of the job (or task) to poll", {"type": "string", "format": "uri"}, required=True
    ),
    "Retry-After": _header(
        "Seconds to wait before polling (or retrying)", {"type": "integer", "minimum": 1}, required=True
    ),
    "Preference-Applied": _header("The Prefer preferences honoured (RFC 7240)"),
    "Idempotent-Replayed": _header(
        "true when this answer replays the original job of an Idempotency-Key",
        {"type": "string", "enum": ["true"]},
    ),
    "WWW-Authenticate": _header('The scheme to use: Bearer realm="audioq"', required=True),
    "Allow": _header("The methods this URL allows"),
    "X-Trace-Id": _header("The request's trace id (X-Request-Id if it was sane)"),
}


def _error(description: str, *headers: str) -> dict:
    return ok(description, schema("Error"), headers=headers)


_RESPONSES = {
    "400": _error(
        "Bad request: malformed JSON, an invalid or unknown option (`option` names it), "
        "insufficient_credits, ..."
    ),
    "401": _error("missing_api_key or invalid_api_key", "WWW-Authenticate"),
    "404": _error("No such asset, job, task or route (another tenant's looks missing)"),
    "408": _error(
        "request_timeout: the upload's body arrived slower than the minimum rate; nothing was stored"
    ),
    "409": _error("job_finished (cancelling an ended job) or job_cancelled (waiting on a cancelled one)"),
    "413": _error(
        "payload_too_large (over the plan's upload size, or a JSON body over 64 KB) or audio_too_long"
    ),
    "415": _error("unsupported_media_type: a wrong Content-Type, or bytes that are not decodable audio"),
    "422": _error(
        "unprocessable_audio, idempotency_key_reused, fetch_failed, option combinations out of range"
    ),
    "429": _error(
        "rate_limited, too_many_jobs or too_many_uploads (uploads of the key receiving at once); "
        "nothing was charged",
        "Retry-After",
    ),
    "503": _error("A backing service is unavailable; nothing was charged, retry"),
    "504": _error("fetch_timeout or job_timeout"),
    "default": _error("Any other error, same shape"),
}

_PARAMETERS = {
    "XRequestId": {
        "name": "X-Request-Id",
        "in": "header",
        "description": "Your request id, adopted as the trace id when it is 8-64 of [A-Za-z0-9._-] "
        "(returned as X-Trace-Id, carried by every log line)",
        "schema": STRING,
    },
    "Prefer": {
        "name": "Prefer",
        "in": "header",
        "description": "RFC 7240: `respond-async` (answer 202 at once) or `wait=N` (wait up to N <= 60 s)",
        "schema": STRING,
        "examples": {"async": {"value": "respond-async"}, "wait": {"value": "wait=10"}},
    },
    "IdempotencyKey": {
        "name": "Idempotency-Key",
        "in": "header",
        "description": "A retry with the same key and request within 24 h returns the original job "
        "(Idempotent-Replayed: true), charging nothing more",
        "schema": STRING,
    },
    "Limit": {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
    },
    "Cursor": {
        "name": "cursor",
        "in": "query",
        "description": "the last id of the previous page (exclusive)",
        "schema": STRING,
    },
    "AssetName": {
        "name": "name",
        "in": "query",
        "description": "a name to keep with the asset",
        "schema": STRING,
    },
    "AssetId": {"name": "asset_id", "in": "path", "required": True, "schema": STRING},
    "JobId": {"name": "job_id", "in": "path", "required": True, "schema": STRING},
    "TaskId": {"name": "task_id", "in": "path", "required": True, "schema": STRING},
}


def _webhook(event: str) -> dict:
    headers = {
        "webhook-id": "The delivery's id, the same on every retry (drop duplicates by it)",
        "webhook-timestamp": "Unix seconds of the attempt",
        "webhook-signature": "Standard Webhooks: `v1,<base64 HMAC-SHA256 of id.timestamp.body>`",
        "X-Audioq-Signature": "`sha256=<hex HMAC-SHA256 of the raw body>` under your webhook secret",
    }
    return {
        "post": {
            "operationId": "webhook" + "".join(p.capitalize() for p in event.split(".")),
            "summary": f"{event}: a job ended and had a callback_url",
            "parameters": [
                {"name": name, "in": "header", "required": True, "description": d, "schema": STRING}
                for name, d in headers.items()
            ],
            "requestBody": {"required": True, "content": json_content(schema("WebhookEvent"))},
            "responses": {
                "2XX": {"description": "Delivered"},
                "default": {"description": "5xx, 408 and 429 are retried with backoff; others are final"},
            },
        }
    }


def document(settings: Settings) -> dict:
    """The whole OpenAPI 3.1 document."""
    paths: dict[str, dict] = {}
    submit = [_submit_route(op, settings) for op in operations.OPERATIONS.values() if op.public]
    for route in (*ROUTES, *submit):
        paths.setdefault(route.path, {})[route.method] = route.operation()
    result_schemas = {result_name(op): dict(op.result) for op in operations.OPERATIONS.values()}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "audioq",
            "version": "1",
            "summary": "Upload a track once as an asset, then run processing jobs on it",
            "description": "New here? [Getting started](/docs/getting-started.md): a key, an upload, "
            "a job, polling, downloading and webhooks, with curl. The reference with every error code: "
            "docs/api.md. Send your key as `x-api-key: KEY` or `Authorization: Bearer KEY`.",
        },
        "servers": [{"url": settings.public_url}],
        "security": [{"apiKey": []}, {"bearer": []}],
        "tags": [
            {"name": t} for t in ("processing", "jobs", "assets", "tasks dialect", "account", "operations")
        ],
        "paths": paths,
        "webhooks": {event: _webhook(event) for event in EVENT_TYPES},
        "components": {
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer KEY"},
            },
            "schemas": {**_SCHEMAS, **result_schemas},
            "parameters": _PARAMETERS,
            "headers": _HEADERS,
            "responses": _RESPONSES,
        },
    }
