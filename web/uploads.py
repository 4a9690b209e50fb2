"""Receiving audio bytes in a request: limits, credits, then the asset store.

Shared by the assets routes and the processing routes that accept raw audio.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import g, request

from shared import assets, keys
from shared.errors import ApiError
from web import services

MB = 1024 * 1024


def too_large(max_bytes: int) -> ApiError:
    return ApiError(413, f"The upload is larger than your plan allows ({max_bytes // MB} MB)")


def admit(*, overhead: int = 0) -> None:
    """Before reading a byte: refuse a declared size over the plan's limit
    (``overhead``: framing allowed on top of the file, for multipart) and a
    caller without credits."""
    svc = services.get()
    plan = svc.settings.plan(g.key.plan)
    declared = request.content_length
    if declared is not None and declared > plan.max_upload_bytes + overhead:
        raise too_large(plan.max_upload_bytes)
    if not keys.can_upload(svc.redis, svc.settings, g.key):
        raise ApiError(400, "Insufficient credits")


def store(read: Callable[[int], bytes], *, name: str = "") -> tuple[assets.Asset, bool]:
    """Stream the body into an asset of the caller (deduplicated); call
    :func:`admit` first."""
    svc = services.get()
    return assets.store_upload(svc.redis, svc.storage, svc.settings, g.key, read, name=name)


def is_audio_body(mimetype: str) -> bool:
    return mimetype.startswith("audio/") or mimetype == "application/octet-stream"
