"""The backing services a request handler uses, attached once per app."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from flask import Flask, current_app

from shared import db
from shared.settings import Settings
from shared.storage import Storage


@dataclass
class Services:
    settings: Settings
    redis: redis.Redis
    storage: Storage


def init_app(app: Flask, settings: Settings) -> None:
    storage = Storage(settings)
    app.extensions["audioq"] = Services(settings, db.connect(settings), storage)


def get() -> Services:
    return current_app.extensions["audioq"]
