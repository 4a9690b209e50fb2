"""Per-process handles to the backing services, created on first use
(after the prefork pool forks, so no connection is shared across processes).

``workers.app`` configures the settings it read; code run outside a worker
(tests, benchmarks) gets settings from the environment on first use.
"""

from __future__ import annotations

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


_settings: Settings | None = None
_context: Context | None = None


def configure(settings: Settings) -> None:
    global _settings
    _settings = settings
    reset()


def reset() -> None:
    """Forget this process's connections (after a fork: never inherit them)."""
    global _context
    _context = None


def get() -> Context:
    global _context, _settings
    if _context is None:
        if _settings is None:
            _settings = Settings.from_env()
        _context = Context(_settings, db.connect(_settings), Storage(_settings))
    return _context
