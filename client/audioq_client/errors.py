"""The one error the client raises for an API answer that is not a success."""

from __future__ import annotations


class AudioqError(Exception):
    """An error answer of the API: its HTTP ``status``, stable ``code`` (e.g.
    ``insufficient_credits``, ``job_not_found``) and ``message`` (a sentence a
    person can act on); ``body`` is the whole error document."""

    def __init__(self, status: int, message: str, code: str = "", body: dict | None = None) -> None:
        super().__init__(f"{status} {code}: {message}" if code else f"{status}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body = body or {}
