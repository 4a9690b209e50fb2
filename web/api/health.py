"""Liveness (``/healthz``: the process answers) and readiness (``/readyz``:
Redis, S3 and the Celery broker all answer; the workers online, per queue,
and whether they have their models, are reported too)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from shared import fleet
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
    try:
        with svc.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=2)
    except Exception as e:
        problems.append(f"broker: {type(e).__name__}: {e}")
    if problems:
        raise ApiError(503, "Not ready: " + "; ".join(problems), "not_ready")
    workers: dict[str, dict[str, int]] = {}
    for w in fleet.online(svc.redis):
        for q in w.queues:
            entry = workers.setdefault(q, {"online": 0, "missing_models": 0})
            entry["online"] += 1
            entry["missing_models"] += int(not w.ready)
    return jsonify({"status": "ready", "redis": "ok", "s3": "ok", "broker": "ok", "workers": workers})
