"""The HTTP front end: ``gunicorn 'web:create_app()'``. It never runs DSP."""

from __future__ import annotations

import logging

from flask import Flask

from shared.settings import Settings
from web import errors, services
from web.api import assets, health


def create_app(config: Settings | dict | None = None) -> Flask:
    """Build the app. ``config`` is a Settings object, or a dict of Settings
    fields overriding the environment (tests use this), or None."""
    if isinstance(config, Settings):
        settings = config
    else:
        settings = Settings.from_env()
        if config:
            settings = settings.replace(**config)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    services.init_app(app, settings)
    errors.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(assets.bp)
    return app
