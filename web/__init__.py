"""The HTTP front end: ``gunicorn 'web:create_app()'``. It never runs DSP."""

from __future__ import annotations

import re
import time

from flask import Flask, g, request

from shared import logs
from shared.settings import Settings
from web import errors, services
from web.api import account, assets, docs, health, jobs, tasks

_SANE_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")


def create_app(config: Settings | dict | None = None) -> Flask:
    """Build the app. ``config`` is a Settings object, or a dict of Settings
    fields overriding the environment (tests use this), or None."""
    if isinstance(config, Settings):
        settings = config
    else:
        settings = Settings.from_env()
        if config:
            settings = settings.replace(**config)
    logs.setup(settings.log_level)

    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    services.init_app(app, settings)
    errors.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(docs.bp)
    app.register_blueprint(assets.bp)
    app.register_blueprint(jobs.bp)
    app.register_blueprint(tasks.bp)
    app.register_blueprint(account.bp)

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
        logs.trace_id.set("-")
        return resp

    return app
