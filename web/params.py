"""Request parameters shared by several routes."""

from __future__ import annotations

from flask import request

from shared.errors import ApiError

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_WAIT_S = 60.0


def pagination() -> tuple[int, str | None]:
    """``?limit=`` (1..200, default 50) and ``?cursor=`` (the last id seen)."""
    raw = request.args.get("limit", str(DEFAULT_LIMIT))
    try:
        limit = int(raw)
    except ValueError:
        raise ApiError(400, f"limit must be an integer between 1 and {MAX_LIMIT}", "invalid_limit") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, f"limit must be an integer between 1 and {MAX_LIMIT}", "invalid_limit")
    return limit, request.args.get("cursor") or None


def prefer_wait(default_s: float) -> tuple[float, list[str]]:
    """How long to wait for a job, from ``Prefer`` (RFC 7240).

    ``respond-async`` -> 0 (answer 202 at once); ``wait=N`` -> N seconds,
    at most 60, and it wins over respond-async when both are given. Returns
    (seconds, the preferences applied, for ``Preference-Applied``).
    Unparseable preferences are ignored, as the RFC asks."""
    wait: float | None = None
    applied: list[str] = []
    respond_async = False
    for header in request.headers.getlist("Prefer"):
        for pref in header.split(","):
            token = pref.split(";")[0].strip()
            name, _, value = token.partition("=")
            name = name.strip().lower()
            if name == "respond-async":
                respond_async = True
            elif name == "wait":
                try:
                    wait = min(MAX_WAIT_S, max(0.0, float(value.strip().strip('"'))))
                except ValueError:
                    continue
    if wait is not None:
        applied.append(f"wait={wait:g}")
        return wait, applied
    if respond_async:
        return 0.0, ["respond-async"]
    return default_s, applied
