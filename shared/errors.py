"""The project's one error type.

Everything a client can cause, and every failure of a backing service that the
API reports, is an ``ApiError``: an HTTP status and a sentence a person can act
on. The web layer renders it as ``{"statusCode", "error", "message"}``.
"""

from __future__ import annotations

from http import HTTPStatus


class ApiError(Exception):
    """An error with an HTTP status and a human-readable message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = int(status)
        self.message = message

    @property
    def reason(self) -> str:
        try:
            return HTTPStatus(self.status).phrase
        except ValueError:
            return "Error"

    def to_dict(self) -> dict:
        return {"statusCode": self.status, "error": self.reason, "message": self.message}

    def __repr__(self) -> str:
        return f"ApiError({self.status}, {self.message!r})"


class StorageError(ApiError):
    """The object store failed or is unreachable (503 to clients)."""

    def __init__(self, message: str = "Object storage is unavailable, try again shortly") -> None:
        super().__init__(503, message)


class ObjectNotFound(ApiError):
    """An object that should be in the bucket is not (not a transient failure)."""

    def __init__(self, name: str) -> None:
        super().__init__(404, f"Cannot find stored object {name}")
        self.name = name
