"""``/openapi.json`` (built from the operation registry) and ``/docs``."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from shared import operations
from web import services

bp = Blueprint("docs", __name__)

_ERROR = {"$ref": "#/components/schemas/Error"}


def _errors(*codes: int) -> dict:
    return {
        str(c): {"description": "error", "content": {"application/json": {"schema": _ERROR}}} for c in codes
    }


def _json(description: str, schema: dict | None = None) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema or {"type": "object"}}},
    }


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


def spec() -> dict:
    settings = services.get().settings
    paths: dict = {
        "/v1/assets/upload": {
            "post": {
                "summary": "Upload audio as raw bytes (deduplicated per key by SHA-256)",
                "requestBody": {"content": {"audio/*": {}, "application/octet-stream": {}}},
                "parameters": [{"name": "name", "in": "query", "schema": {"type": "string"}}],
                "responses": {
                    "201": _json("created"),
                    "200": _json("the same bytes were uploaded before: that asset, expiry extended"),
                    **_errors(400, 401, 413, 415),
                },
            }
        },
        "/v1/assets": {"get": {"summary": "List assets, newest first", "responses": {"200": _json("page")}}},
        "/v1/assets/{id}": {
            "get": {"summary": "Asset metadata", "responses": {"200": _json("asset"), **_errors(404)}}
        },
        "/assets": {
            "post": {
                "summary": "Upload audio as multipart/form-data field 'file'",
                "responses": {
                    "201": _json("created"),
                    "200": _json("deduplicated"),
                    **_errors(400, 413, 415),
                },
            },
            "get": {"summary": "List assets", "responses": {"200": _json("array")}},
        },
        "/assets/{id}": {
            "get": {"summary": "Asset with a presigned link", "responses": {"200": _json("asset")}}
        },
        "/v1/jobs": {"get": {"summary": "List jobs, newest first", "responses": {"200": _json("page")}}},
        "/v1/jobs/{id}": {
            "get": {
                "summary": "Job status, progress and result",
                "responses": {"200": _json("job"), **_errors(404)},
            },
            "delete": {
                "summary": "Cancel a queued (refunded) or running job",
                "responses": {"200": _json("job"), **_errors(404, 409)},
            },
        },
        "/tasks": {
            "post": {
                "summary": "Stems task: {assetId | url, targets: [{model, formats}], callbackUrl?} "
                "(models vocals, instrumental, drums, bass, other; formats wav, flac, mp3)",
                "requestBody": {"content": {"application/json": {}}},
                "responses": {
                    "201": _json("task"),
                    "200": _json("Idempotency-Key replay"),
                    **_errors(400, 401, 404, 413, 415, 422, 504),
                },
            },
            "get": {"summary": "List tasks, newest first", "responses": {"200": _json("array")}},
        },
        "/tasks/{id}": {
            "get": {"summary": "Task status and outputs", "responses": {"200": _json("task"), **_errors(404)}}
        },
        "/v1/account": {
            "get": {
                "summary": "Your key: plan, credits and the webhook secret that signs callbacks",
                "responses": {"200": _json("account")},
            }
        },
        "/healthz": {"get": {"summary": "Liveness", "responses": {"200": _json("ok")}}},
        "/readyz": {
            "get": {"summary": "Redis and S3 reachable", "responses": {"200": _json("ready"), **_errors(503)}}
        },
    }
    for op in operations.OPERATIONS.values():
        if not op.public:
            continue
        props = {"asset_id": {"type": "string"}} | {n: _option_schema(o) for n, o in op.options.items()}
        paths[f"/v1/{op.name}"] = {
            "post": {
                "summary": f"{op.name} ({settings.cost(op, {})} credits; "
                + ("answers synchronously by default)" if op.sync else "answers 202 at once)"),
                "parameters": [
                    {
                        "name": "Prefer",
                        "in": "header",
                        "schema": {"type": "string"},
                        "example": "respond-async",
                    },
                    {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}},
                ]
                + [{"name": n, "in": "query", "schema": _option_schema(o)} for n, o in op.options.items()],
                "requestBody": {
                    "content": {
                        "application/json": {"schema": {"type": "object", "properties": props}},
                        "audio/*": {},
                        "application/octet-stream": {},
                    }
                },
                "responses": {
                    "200": _json("finished within the wait: the result fields, job_id, asset_id, _meta"),
                    "202": _json("accepted: poll Location"),
                    **_errors(400, 401, 404, 413, 415, 422),
                },
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "audioq", "version": "1"},
        "servers": [{"url": settings.public_url}],
        "security": [{"apiKey": []}, {"bearer": []}],
        "components": {
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["statusCode", "error", "message"],
                    "properties": {
                        "statusCode": {"type": "integer"},
                        "error": {"type": "string"},
                        "message": {"type": "string"},
                    },
                }
            },
        },
        "paths": paths,
    }


@bp.get("/openapi.json")
def openapi():
    return jsonify(spec())


_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>audioq API</title>
<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
code{background:#f3f3f3;padding:0 .2em}td,th{padding:.2rem .6rem;text-align:left;vertical-align:top}</style>
</head><body><h1>audioq API</h1>
<p>Send your key as <code>x-api-key: KEY</code> or <code>Authorization: Bearer KEY</code>.
Every error is <code>{"statusCode", "error", "message"}</code>. The machine-readable
description is <a href="/openapi.json">/openapi.json</a>.</p><table><tr><th>route</th><th>what</th></tr>
"""


@bp.get("/docs")
def docs():
    rows = []
    for path, methods in spec()["paths"].items():
        for method, d in methods.items():
            rows.append(f"<tr><td><code>{method.upper()} {path}</code></td><td>{d['summary']}</td></tr>")
    return Response(_PAGE + "\n".join(rows) + "</table></body></html>", mimetype="text/html")
