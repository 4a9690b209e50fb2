"""Assets, in both dialects: ``/v1/assets...`` and ``/assets...``.

Assets are never edited or deleted by clients (they expire): PUT and DELETE
get 405 with an ``Allow`` header.
"""

from __future__ import annotations

from flask import Blueprint, g, jsonify, request
from werkzeug.http import parse_options_header

from shared import assets, db
from shared.errors import ApiError
from web import auth, params, services, uploads
from web.multipart import file_field

bp = Blueprint("assets", __name__)
bp.before_request(auth.require_key)

# Room for multipart boundaries and part headers on top of the file itself.
MULTIPART_OVERHEAD = 64 * 1024


# ----------------------------------------------------------------- v1 dialect


@bp.post("/v1/assets/upload")
def upload_v1():
    if not uploads.is_audio_body(request.mimetype or ""):
        raise ApiError(
            415, "Send the audio file's bytes with Content-Type audio/* or application/octet-stream"
        )
    uploads.admit()
    asset, created = uploads.store(uploads.body(), name=request.args.get("name", ""))
    body = {k: v for k, v in asset.to_v1().items() if k in ("asset_id", "sha256", "size_bytes", "expires_at")}
    body.update(content_type=asset.content_type, format=asset.format, duration_s=round(asset.duration_s, 3))
    return jsonify(body), 201 if created else 200


@bp.get("/v1/assets")
def list_v1():
    limit, cursor = params.pagination()
    page, next_cursor = assets.list_for_owner(services.get().redis, g.key.id, limit=limit, cursor=cursor)
    return jsonify({"items": [a.to_v1() for a in page], "next_cursor": next_cursor, "count": len(page)})


@bp.get("/v1/assets/<asset_id>")
def get_v1(asset_id: str):
    a = assets.get(services.get().redis, g.key.id, asset_id)
    return jsonify(a.to_v1())


# -------------------------------------------------------------- tasks dialect


def _tasks_view(a: assets.Asset, *, link: bool) -> dict:
    d = {"id": a.id, "format": a.format, "name": a.name}
    if link:
        d["link"] = a.presign(services.get().storage, db.now())
    return d


@bp.post("/assets")
def upload_tasks():
    ctype, opts = parse_options_header(request.headers.get("Content-Type", ""))
    if ctype != "multipart/form-data":
        raise ApiError(415, "Send the file as multipart/form-data with a field named 'file'")
    boundary = opts.get("boundary")
    if not boundary:
        raise ApiError(
            400, "Malformed multipart/form-data body: the Content-Type has no boundary", "invalid_multipart"
        )
    uploads.admit(overhead=MULTIPART_OVERHEAD)
    filename, _part_type, chunks = file_field(uploads.body().read, boundary)
    asset, created = uploads.store(assets.IterReader(chunks), name=filename)
    return jsonify(_tasks_view(asset, link=True)), 201 if created else 200


@bp.get("/assets")
def list_tasks():
    limit, cursor = params.pagination()
    page, _ = assets.list_for_owner(services.get().redis, g.key.id, limit=limit, cursor=cursor)
    return jsonify([_tasks_view(a, link=False) for a in page])


@bp.get("/assets/<asset_id>")
def get_tasks(asset_id: str):
    a = assets.get(services.get().redis, g.key.id, asset_id)
    return jsonify({"mimeType": a.content_type, **_tasks_view(a, link=True)})
