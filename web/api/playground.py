"""The playground: a static page, served by the API itself, where a person
drops a file and sees and hears what the API found (docs/playground.md).

The page needs no key; every call it makes to the API sends the key the
person typed (kept in the browser's localStorage, never in a URL)."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, redirect

STATIC = Path(__file__).resolve().parent.parent / "static" / "playground"

bp = Blueprint("playground", __name__, static_folder=str(STATIC), static_url_path="/playground/static")

# The key sits in localStorage, so the page allows scripts from itself only;
# media and fetches may go to the S3 origin that presigned links point at.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob: http: https:; connect-src 'self' http: https:; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@bp.get("/")
def root():
    return redirect("/playground", code=302)


@bp.get("/playground")
def page():
    resp = bp.send_static_file("index.html")
    resp.headers["Content-Security-Policy"] = _CSP
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Cache-Control"] = "no-cache"
    return resp
