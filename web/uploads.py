"""Receiving audio bytes in a request: limits, credits, then the asset store.

Shared by the assets routes and the processing routes that accept raw audio.

Two guards keep slow clients from holding the API's connections (issue 11):

* **Upload slots.** A key has at most its plan's ``concurrent_uploads``
  uploads receiving at once, counted in Redis so the limit holds across API
  processes (:mod:`shared.ratelimit`); one more is ``429 too_many_uploads``
  before a byte of its body is read. The slot is taken by :func:`admit` and
  released when the request ends, whatever the outcome (``teardown_request``).
* **Body deadline.** Once ``upload_grace_s`` has passed, a body must have
  arrived at an average of at least ``upload_min_bytes_per_s`` since the
  upload began; a read that cannot keep that pace is cut off (a gevent
  timeout around the blocking read, so a client dripping a byte now and then
  is caught too) and answered ``408 request_timeout``; the partial upload is
  aborted like any refused upload.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import TypeVar

import redis
from flask import Flask, g, request

from shared import assets, keys, offload, queue, ratelimit
from shared.errors import ApiError
from shared.storage import Readable
from web import metrics, services

MB = 1024 * 1024
T = TypeVar("T")
log = logging.getLogger(__name__)

# Reads of the client's body are at most this large (gunicorn receives up to
# 1 MB per recv(): reading as much at once saves copying its buffer).
_READ_BYTES = 1024 * 1024


def too_large(max_bytes: int) -> ApiError:
    return ApiError(413, f"The upload is larger than your plan allows ({max_bytes // MB} MB)")


def admit(*, overhead: int = 0) -> None:
    """Before reading a byte: refuse a declared size over the plan's limit
    (``overhead``: framing allowed on top of the file, for multipart), a
    caller without credits, and one more upload than the key may have
    receiving at once (429); otherwise hold an upload slot for this request."""
    svc = services.get()
    plan = svc.settings.limits(g.key)
    declared = request.content_length
    if declared is not None and declared > plan.max_upload_bytes + overhead:
        raise too_large(plan.max_upload_bytes)
    if not keys.can_upload(svc.redis, svc.settings, g.key):
        raise ApiError(400, "Insufficient credits", "insufficient_credits")
    token = secrets.token_hex(8)
    if not ratelimit.take_upload_slot(svc.redis, g.key.id, token, plan.concurrent_uploads):
        wait = ratelimit.UPLOAD_RETRY_AFTER_S
        raise ApiError(
            429,
            f"Too many uploads at once: the {plan.name} plan allows {plan.concurrent_uploads} uploads "
            f"of one key receiving at the same time; retry in {wait} s, after one has finished",
            "too_many_uploads",
            headers={"Retry-After": str(wait)},
        )
    g.upload_slot = token


def release_slot(_exc: BaseException | None = None) -> None:
    token = g.pop("upload_slot", None)
    if token is None:
        return
    try:
        ratelimit.release_upload_slot(services.get().redis, g.key.id, token)
    except redis.RedisError as e:  # the slot's TTL frees it in a minute
        log.warning("could not release an upload slot of %s: %s", g.key.id, e)


def init_app(app: Flask) -> None:
    app.teardown_request(release_slot)


class _Receiver:
    """``read(n)`` of an upload's source that renews the upload slot while
    bytes arrive and, for a client's body, enforces the minimum average rate."""

    def __init__(self, source: Readable, *, deadline: bool) -> None:
        svc = services.get()
        self._source = source
        self._read = source.read
        self._redis = svc.redis
        self._key_id = g.key.id
        self._slot = g.get("upload_slot")
        self._min_rate = svc.settings.upload_min_bytes_per_s if deadline else 0
        self._grace = svc.settings.upload_grace_s
        self._started = self._renewed = time.monotonic()
        self._received = 0

    def read(self, n: int = -1) -> bytes:
        return self._pull(n, self._read)

    def readinto(self, buf: memoryview) -> int:
        """Up to ``len(buf)`` bytes into ``buf``, where the source can (a
        request body under gunicorn, ``ops/gunicorn_worker.py``); a copy otherwise."""
        view = memoryview(buf)
        into = getattr(self._source, "readinto", None)

        def fetch(want: int) -> int:
            if into is None:
                chunk = self._read(want)
                view[: len(chunk)] = chunk
                return len(chunk)
            # As gunicorn's own read does: all ``want`` bytes (unless the body
            # ends), so that what follows handles few, large chunks.
            got = 0
            while got < want:
                n = into(view[got:want])
                if not n:
                    break
                got += n
            return got

        return self._pull(len(view), fetch)

    def _pull(self, n: int | None, fetch: Callable[[int], T]) -> T:
        want = _READ_BYTES if n is None or n < 0 else min(n, _READ_BYTES)
        if self._min_rate:
            # gunicorn returns a read only once all of it arrived, and the
            # deadline is checked per read: reads grow with what the client
            # has sent, so a client dripping bytes is caught at the end of the
            # grace period, while one sending fast is read 1 MB at a time.
            want = min(want, max(offload.MIN_BYTES, self._received))
        now = time.monotonic()
        if self._slot and now - self._renewed > ratelimit.UPLOAD_SLOT_TTL_S / 3:
            ratelimit.renew_upload_slot(self._redis, self._key_id, self._slot)
            self._renewed = now
        if self._min_rate and offload.under_gevent():
            got = self._by_deadline(fetch, want, now)
        else:
            got = fetch(want)
        self._received += got if isinstance(got, int) else len(got)  # type: ignore[arg-type]
        return got

    def _by_deadline(self, fetch: Callable[[int], T], want: int, now: float) -> T:
        import gevent

        # The moment these bytes are late: when a client sending at exactly
        # the minimum rate since the start would have delivered them.
        due = self._started + max(self._grace, (self._received + want) / self._min_rate)
        timer = gevent.Timeout(max(0.001, due - now))
        timer.start()
        try:
            return fetch(want)
        except gevent.Timeout as t:
            if t is not timer:
                raise
            raise ApiError(
                408,
                f"The upload arrived too slowly: after {self._grace:g} s a body must average at least "
                f"{self._min_rate // 1024} KB/s, and {self._received} bytes came in "
                f"{time.monotonic() - self._started:.0f} s. Nothing was stored; send it again",
                "request_timeout",
            ) from None
        finally:
            timer.close()


def body() -> Readable:
    """The request body, under the body deadline; call :func:`admit` first."""
    return _Receiver(request.stream, deadline=True)


def fetched(source: Readable) -> Readable:
    """A fetched ``url`` input (its own time limit applies, not the body deadline)."""
    return _Receiver(source, deadline=False)


def store(source: Readable, *, name: str = "", query: bool = False) -> tuple[assets.Asset, bool]:
    """Stream ``source`` (:func:`body` or :func:`fetched`) into an asset of the
    caller (deduplicated); call :func:`admit` first. A new asset joins the
    caller's identify catalogue (fingerprinted in the background), unless it
    is itself an identify ``query`` clip."""
    svc = services.get()
    asset, created = assets.store_upload(svc.redis, svc.storage, svc.settings, g.key, source, name=name)
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
