"""Structured logs for the API, the workers and beat: every record carries the
current ``trace_id`` (and the job id in workers), bound per request or per
task and cleared afterwards.

``AUDIOQ_LOG_FORMAT=text`` (default) writes ``key=value``-style lines;
``json`` writes one JSON object per line (python-json-logger) with
``time``, ``level``, ``logger``, ``message``, ``trace_id``, ``job_id`` and any
``extra`` fields a call passes (the access log's ``method``, ``route``,
``status``, ``duration_ms``, ``key_id``).
"""

from __future__ import annotations

import contextvars
import logging
import uuid

from pythonjsonlogger.json import JsonFormatter

trace_id: contextvars.ContextVar[str] = contextvars.ContextVar("trace_id", default="-")
job_id: contextvars.ContextVar[str] = contextvars.ContextVar("job_id", default="-")

FORMAT = "%(asctime)s %(levelname)s %(name)s trace=%(trace_id)s job=%(job_id)s %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(trace_id)s %(job_id)s"


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.trace_id = trace_id.get()
        record.job_id = job_id.get()
        return True


def setup(level: str, fmt: str = "text") -> None:
    """Configure the root logger once per process."""
    root = logging.getLogger()
    if any(getattr(h, "_audioq", False) for h in root.handlers):
        return
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                JSON_FIELDS,
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                timestamp=False,
            )
        )
    else:
        handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(_ContextFilter())
    handler._audioq = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)


def new_trace_id() -> str:
    return uuid.uuid4().hex
