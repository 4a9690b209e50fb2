"""Liveness and readiness."""

from __future__ import annotations

from flask import Blueprint, jsonify

from shared.errors import ApiError
from web import services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    svc = services.get()
    problems = []
    try:
        svc.redis.ping()
    except Exception as e:  # any failure means "not ready", with the reason
        problems.append(f"redis: {type(e).__name__}: {e}")
    try:
        svc.storage.ping()
    except ApiError as e:
        problems.append(f"s3: {e.message}")
    if problems:
        raise ApiError(503, "Not ready: " + "; ".join(problems))
    return jsonify({"status": "ready", "redis": "ok", "s3": "ok"})
