"""Receiving audio bytes in a request: limits, credits, then the asset store.

Shared by the assets routes and the processing routes that accept raw audio.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import g, request

from shared import assets, keys, queue
from shared.errors import ApiError
from web import metrics, services

MB = 1024 * 1024
log = logging.getLogger(__name__)


def too_large(max_bytes: int) -> ApiError:
    return ApiError(413, f"The upload is larger than your plan allows ({max_bytes // MB} MB)")


def admit(*, overhead: int = 0) -> None:
    """Before reading a byte: refuse a declared size over the plan's limit
    (``overhead``: framing allowed on top of the file, for multipart) and a
    caller without credits."""
    svc = services.get()
    plan = svc.settings.limits(g.key)
    declared = request.content_length
    if declared is not None and declared > plan.max_upload_bytes + overhead:
        raise too_large(plan.max_upload_bytes)
    if not keys.can_upload(svc.redis, svc.settings, g.key):
        raise ApiError(400, "Insufficient credits", "insufficient_credits")


def store(read: Callable[[int], bytes], *, name: str = "", query: bool = False) -> tuple[assets.Asset, bool]:
    """Stream the body into an asset of the caller (deduplicated); call
    :func:`admit` first. A new asset joins the caller's identify catalogue
    (fingerprinted in the background), unless it is itself an identify
    ``query`` clip."""
    svc = services.get()
    asset, created = assets.store_upload(svc.redis, svc.storage, svc.settings, g.key, read, name=name)
    metrics.UPLOAD_BYTES.inc(asset.size_bytes)
    if created and query:
        assets.mark_query(svc.redis, asset.id)
    elif created:
        try:
            queue.index_asset(svc.celery, asset.id)
        except Exception:  # the identify job indexes what is missing itself
            log.warning("could not queue fingerprinting of %s", asset.id)
    return asset, created


def is_audio_body(mimetype: str) -> bool:
    return mimetype.startswith("audio/") or mimetype == "application/octet-stream"
