"""``/openapi.json`` (web/openapi.py, built from the operation registry),
``/docs`` (Swagger UI, vendored under web/static/swagger-ui: nothing is
loaded from elsewhere, so the page works offline) and the getting-started
guide it links to."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, jsonify

from shared.errors import ApiError
from web import openapi, services

STATIC = Path(__file__).resolve().parent.parent / "static" / "swagger-ui"
GUIDE = Path(__file__).resolve().parents[2] / "docs" / "getting-started.md"

bp = Blueprint("docs", __name__, static_folder=str(STATIC), static_url_path="/docs/static")

# Same-origin only: the page proves it needs nothing from a CDN. Swagger UI
# sets style attributes and draws icons from data: URIs.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>audioq API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" type="image/png" href="/docs/static/favicon-32x32.png">
<link rel="stylesheet" href="/docs/static/swagger-ui.css">
<link rel="stylesheet" href="/docs/static/docs.css">
</head><body>
<nav class="aq-links">
<a href="/docs/getting-started.md">Getting started</a> (curl: key, upload, run, poll, download, webhooks) ·
<a href="/openapi.json">openapi.json</a> ·
the Python client: <code>client/README.md</code> · the reference: <code>docs/api.md</code>
</nav>
<div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/docs/static/docs.js"></script>
</body></html>
"""


def spec() -> dict:
    return openapi.document(services.get().settings)


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(spec())


@bp.get("/docs")
def docs():
    resp = Response(_PAGE, mimetype="text/html")
    resp.headers["Content-Security-Policy"] = _CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


@bp.get("/docs/getting-started.md")
def getting_started():
    if not GUIDE.is_file():
        raise ApiError(404, "The getting-started guide is not installed with this server", "not_found")
    return Response(GUIDE.read_text(encoding="utf-8"), mimetype="text/plain")
