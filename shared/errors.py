"""The project's one error type.

Everything a client can cause, and every failure of a backing service that the
API reports, is an ``ApiError``: an HTTP status, a sentence a person can act
on, and a stable machine-readable ``code``. The web layer renders it as
``{"statusCode", "error", "message", "code", ...details}``.

Codes are part of the API contract (docs/api.md lists them): clients branch on
``code``, people read ``message``. Where no specific code is given, the
status's generic one applies (:data:`STATUS_CODES`).
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus

#: The generic code of each status, used when a raise site names none.
STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    410: "gone",
    411: "length_required",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "rate_limited",
    431: "headers_too_large",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "timeout",
}


class ApiError(Exception):
    """An error with an HTTP status, a human-readable message and a stable code.

    ``details`` are extra fields of the error body (e.g. ``option="fmin"`` for
    ``invalid_option``); ``headers`` go on the response (``Retry-After``,
    ``WWW-Authenticate``...)."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        **details: object,
    ) -> None:
        super().__init__(message)
        self.status = int(status)
        self.message = message
        self.code = code or STATUS_CODES.get(self.status, "error")
        self.headers = dict(headers or {})
        self.details = details

    @property
    def reason(self) -> str:
        try:
            return HTTPStatus(self.status).phrase
        except ValueError:
            return "Error"

    def to_dict(self) -> dict:
        return {
            "statusCode": self.status,
            "error": self.reason,
            "message": self.message,
            "code": self.code,
            **self.details,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> ApiError:
        """The inverse of :meth:`to_dict` (a failed job's recorded error)."""
        err = cls(
            int(d.get("statusCode", 500)),  # type: ignore[call-overload]
            str(d.get("message", "The job failed")),
            str(d["code"]) if d.get("code") else None,
        )
        err.details = {k: v for k, v in d.items() if k not in ("statusCode", "error", "message", "code")}
        return err

    def __repr__(self) -> str:
        return f"ApiError({self.status}, {self.message!r}, {self.code!r})"


class StorageError(ApiError):
    """The object store failed or is unreachable (503 to clients)."""

    def __init__(self, message: str = "Object storage is unavailable, try again shortly") -> None:
        super().__init__(503, message, "storage_unavailable")


class ObjectNotFound(ApiError):
    """An object that should be in the bucket is not (not a transient failure)."""

    def __init__(self, name: str) -> None:
        super().__init__(404, f"Cannot find stored object {name}", "object_not_found")
        self.name = name
