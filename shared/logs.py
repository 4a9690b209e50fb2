"""Structured-enough logs: every record carries the current ``trace_id`` (and
job id in workers), bound per request or per task and cleared afterwards."""

from __future__ import annotations

import contextvars
import logging
import uuid

trace_id: contextvars.ContextVar[str] = contextvars.ContextVar("trace_id", default="-")
job_id: contextvars.ContextVar[str] = contextvars.ContextVar("job_id", default="-")

FORMAT = "%(asctime)s %(levelname)s %(name)s trace=%(trace_id)s job=%(job_id)s %(message)s"


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.trace_id = trace_id.get()
        record.job_id = job_id.get()
        return True


def setup(level: str) -> None:
    """Configure the root logger once per process."""
    root = logging.getLogger()
    if any(getattr(h, "_audioq", False) for h in root.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(_ContextFilter())
    handler._audioq = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)


def new_trace_id() -> str:
    return uuid.uuid4().hex
