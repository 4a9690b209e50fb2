"""Per-process handles to the backing services, created on first use
(after the prefork pool forks, so no connection is shared across processes)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import redis

from shared import db
from shared.settings import Settings
from shared.storage import Storage


@dataclass
class Context:
    settings: Settings
    redis: redis.Redis
    storage: Storage


@functools.cache
def get() -> Context:
    settings = Settings.from_env()
    return Context(settings, db.connect(settings), Storage(settings))
