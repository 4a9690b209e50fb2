"""The backing services a request handler uses, attached once per app."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from celery import Celery
from flask import Flask, current_app

from shared import db, queue
from shared.settings import Settings
from shared.storage import Storage


@dataclass
class Services:
    settings: Settings
    redis: redis.Redis
    storage: Storage
    celery: Celery  # a client: the web side only sends tasks, by name


def init_app(app: Flask, settings: Settings) -> None:
    storage = Storage(settings)
    app.extensions["audioq"] = Services(settings, db.connect(settings), storage, queue.make_celery(settings))


def get() -> Services:
    return current_app.extensions["audioq"]
