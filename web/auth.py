"""API-key authentication (``x-api-key: KEY`` or ``Authorization: Bearer KEY``)
and the key's request rate limit, checked before anything else is done."""

from __future__ import annotations

from flask import g, request

from shared import keys, ratelimit
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
    svc = services.get()
    rec = keys.authenticate(svc.redis, secret)
    if rec is None:
        raise ApiError(401, "Unknown or revoked API key", "invalid_api_key", headers=CHALLENGE)
    g.key = rec
    limits = svc.settings.limits(rec)
    decision = ratelimit.take(svc.redis, rec.id, limits.rate_per_s, limits.burst)
    g.rate_limit = decision
    if not decision.allowed:
        raise ApiError(
            429,
            f"Too many requests: the {limits.name} plan allows {limits.rate_per_s:g} requests per "
            f"second with bursts of {limits.burst}; retry in {decision.retry_after_s} s. "
            "Nothing was charged",
            "rate_limited",
            headers=decision.headers(),
        )
