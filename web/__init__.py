"""The HTTP front end: ``gunicorn 'web:create_app()'``. It never runs DSP."""

from __future__ import annotations

import logging
import re
import time

from flask import Flask, g, request

from shared import logs
from shared.settings import Settings
from web import errors, metrics, services, uploads
from web.api import account, assets, docs, health, jobs, playground, tasks

_SANE_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")
access = logging.getLogger("audioq.access")


def _access_log(resp) -> None:
    """One line per request: method, route template, status, duration, the
    key's id (never the key) and the trace id (from the log context)."""
    ms = (time.monotonic() - g.get("started", time.monotonic())) * 1000
    key = g.get("key")
    key_id = key.id if key is not None else "-"
    route = metrics.route_label()
    access.info(
        "%s %s %s %.1fms key=%s",
        request.method,
        route,
        resp.status_code,
        ms,
        key_id,
        extra={
            "method": request.method,
            "route": route,
            "status": resp.status_code,
            "duration_ms": round(ms, 1),
            "key_id": key_id,
        },
    )


def create_app(config: Settings | dict | None = None) -> Flask:
    """Build the app. ``config`` is a Settings object, or a dict of Settings
    fields overriding the environment (tests use this), or None."""
    if isinstance(config, Settings):
        settings = config
    else:
        settings = Settings.from_env()
        if config:
            settings = settings.replace(**config)
    logs.setup(settings.log_level, settings.log_format)

    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    services.init_app(app, settings)
    errors.init_app(app)
    uploads.init_app(app)
    metrics.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(docs.bp)
    app.register_blueprint(assets.bp)
    app.register_blueprint(jobs.bp)
    app.register_blueprint(tasks.bp)
    app.register_blueprint(account.bp)
    app.register_blueprint(playground.bp)

    @app.before_request
    def _bind_trace_id() -> None:
        # A caller's X-Request-Id is kept (if sane) so logs join up across systems.
        given = request.headers.get("X-Request-Id", "")
        g.trace_id = given if _SANE_ID.fullmatch(given) else logs.new_trace_id()
        g.started = time.monotonic()
        logs.trace_id.set(g.trace_id)

    @app.after_request
    def _send_trace_id(resp):
        resp.headers["X-Trace-Id"] = g.get("trace_id", "")
        decision = g.get("rate_limit")
        if decision is not None:
            for k, v in decision.headers().items():
                resp.headers.setdefault(k, v)
        _access_log(resp)
        logs.trace_id.set("-")
        return resp

    return app
