"""Signed webhook callbacks: ``POST`` a JSON document to a client's URL.

Signature format (what receivers implement)::

    X-Audioq-Signature: sha256=<hex>

``<hex>`` is the lower-case hex HMAC-SHA256 of the raw request body — the
bytes exactly as received, before any JSON parsing — keyed with the API
key's webhook secret encoded as UTF-8. It is the scheme of GitHub's
``X-Hub-Signature-256``, so existing receiver code works. Receivers should
compare in constant time (``hmac.compare_digest``); :func:`verify` does.

Other headers:

* ``X-Audioq-Delivery``: an id for the delivery, the same on every retry of
  it, so a receiver can drop duplicates (at-least-once delivery). The
  caller passes one (the job id is a good choice); by default it is derived
  from the body, which is equally stable across retries.
* No timestamp header: the signature covers the body only, as the design
  contract states, and an unsigned timestamp would prove nothing. Replay
  protection comes from the signed body itself — the job document carries
  its ``job_id`` and ``finished_at``, so a receiver can refuse a job it has
  already handled or a document older than it cares for.

Delivery is one attempt per :func:`deliver` call; the retry policy lives in
the caller's Celery task (``workers/tasks/callbacks.py`` retries by hand with
exponential backoff, honouring ``Retry-After``, up to a bound). The address
guard of :mod:`shared.urlfetch` applies (scheme, non-public addresses,
allowlist, pinned connection, deadline); redirects are not followed — a 3xx
is returned like any other final answer.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import ssl
import time
from collections.abc import Sequence

from shared import urlfetch

SIGNATURE_HEADER = "X-Audioq-Signature"
DELIVERY_HEADER = "X-Audioq-Delivery"
_PREFIX = "sha256="


class DeliveryError(Exception):
    """A transient delivery failure worth retrying: network error, timeout,
    5xx, 408 or 429. ``status`` is the HTTP status if there was one;
    ``retry_after`` the seconds the receiver asked us to wait (Retry-After),
    if it did."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after


def sign(body: bytes, secret: str) -> str:
    """``"sha256=<hex HMAC-SHA256 of body keyed with secret>"``."""
    return _PREFIX + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header: str | None) -> bool:
    """Whether ``header`` is the signature of ``body`` under ``secret``
    (constant-time comparison; False for a missing or malformed header)."""
    if not header or not secret:
        return False
    expected = sign(body, secret).encode("ascii")
    given = header.strip().encode("utf-8", "replace")
    return hmac.compare_digest(expected, given)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def deliver(
    url: str,
    body: bytes,
    secret: str,
    *,
    allow: Sequence[str],
    timeout_s: float = 10,
    delivery_id: str | None = None,
    user_agent: str = "audioq-webhooks",
    field: str = "callback_url",
    tls: ssl.SSLContext | None = None,
) -> int:
    """POST ``body`` (a JSON document) to ``url``, signed; one attempt.

    Returns the receiver's status when the outcome is final: 2xx (delivered)
    or any other status that retrying will not change (3xx, 4xx other than
    408 and 429). Raises :class:`DeliveryError` for what is worth retrying:
    connection and DNS failures, TLS errors, ``timeout_s`` (seconds, for
    the whole exchange) passed, 5xx, 408, 429. Raises ApiError(400) when the
    URL is refused (scheme, or it now resolves to a non-public address) —
    final, do not retry. ``field`` names the URL in messages; ``tls`` as in
    :func:`shared.urlfetch.open_url`.
    """
    headers = {
        "Content-Type": "application/json",
        "User-Agent": user_agent,
        SIGNATURE_HEADER: sign(body, secret),
        DELIVERY_HEADER: delivery_id or hashlib.sha256(body).hexdigest()[:32],
        "Connection": "close",
    }
    try:
        ex = urlfetch.exchange(
            "POST",
            url,
            allow=allow,
            deadline=urlfetch.Deadline(timeout_s),
            headers=headers,
            body=body,
            field=field,
            tls=tls,
        )
    except urlfetch.FetchFailed as e:
        raise DeliveryError(f"Delivering to {field} failed: {e.message}") from None
    try:
        status = ex.response.status
        if status >= 500 or status in (408, 429):
            raise DeliveryError(
                f"Delivering to {field} failed: the receiver answered {status}",
                status=status,
                retry_after=_retry_after(ex.response.getheader("Retry-After")),
            )
        return status
    finally:
        ex.close()
