"""API-key authentication: ``x-api-key: KEY`` or ``Authorization: Bearer KEY``."""

from __future__ import annotations

from flask import g, request

from shared import keys
from shared.errors import ApiError
from web import services

# RFC 6750: a 401 names the scheme the client should use.
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="audioq"'}


def presented_key() -> str | None:
    key = request.headers.get("x-api-key", "").strip()
    if key:
        return key
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def require_key() -> None:
    """A blueprint ``before_request`` hook: sets ``g.key`` or raises 401."""
    secret = presented_key()
    if not secret:
        raise ApiError(
            401,
            "Missing API key: send it as 'x-api-key: KEY' or 'Authorization: Bearer KEY'",
            "missing_api_key",
            headers=CHALLENGE,
        )
    rec = keys.authenticate(services.get().redis, secret)
    if rec is None:
        raise ApiError(401, "Unknown or revoked API key", "invalid_api_key", headers=CHALLENGE)
    g.key = rec
