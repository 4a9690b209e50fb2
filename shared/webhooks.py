"""Signed webhook callbacks: ``POST`` a JSON document to a client's URL.

Two signature schemes ride on every delivery; receivers check either.

**Standard Webhooks** (https://www.standardwebhooks.com, symmetric ``v1``)::

    webhook-id: job_...             # the same on every retry: drop duplicates with it
    webhook-timestamp: 1764750000   # unix seconds of this attempt
    webhook-signature: v1,<base64>  [v1,<base64> ...]

each ``<base64>`` the HMAC-SHA256 of ``"{webhook-id}.{webhook-timestamp}.{body}"``
(the raw body bytes) keyed with the secret's bytes: the secret is
``whsec_`` + base64 of 32 random bytes, and the key is the base64-decoded
part after the prefix — what the standard's libraries do, so they verify
our deliveries as they are. The header lists several signatures during a
rotation (:func:`shared.keys.rotate_webhook_secret`): one per secret still
valid, the newest first; a receiver accepts the delivery if any of them
matches one of its secrets. The signed timestamp is what defeats replays:
:func:`verify_standard` refuses one older (or newer) than a tolerance.

**Legacy** (kept for existing receivers)::

    X-Audioq-Signature: sha256=<hex>
    X-Audioq-Delivery: <the webhook-id>

``<hex>`` is the lower-case hex HMAC-SHA256 of the raw body keyed with the
whole secret string (``whsec_...`` included) as UTF-8 — GitHub's
``X-Hub-Signature-256`` scheme. It covers the body only (no timestamp) and
is made with the current secret only, so rotating the secret breaks it at
once for a receiver that still holds the old one; prefer the standard
headers.

Delivery is one attempt per :func:`deliver` call; the retry policy lives in
the caller's Celery task (``workers/tasks/callbacks.py`` retries by hand with
exponential backoff, honouring ``Retry-After``, up to a bound). The address
guard of :mod:`shared.urlfetch` applies (scheme, non-public addresses,
allowlist, pinned connection, deadline); redirects are not followed — a 3xx
is returned like any other final answer.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import hmac
import ssl
import time
from collections.abc import Mapping, Sequence

from shared import urlfetch

SIGNATURE_HEADER = "X-Audioq-Signature"
DELIVERY_HEADER = "X-Audioq-Delivery"
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
STANDARD_SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"
TOLERANCE_S = 300  # the standard's default: a delivery older or newer than 5 min is refused
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


class WebhookVerificationError(Exception):
    """A delivery that does not verify: a header missing or malformed, its
    timestamp outside the tolerance, or no signature matching a secret."""


def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret: the base64 after ``whsec_``, decoded leniently
    (padding added) as the standard's libraries do, so a receiver using one of
    them with the same secret computes the same signatures."""
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX) + "==")
    except (binascii.Error, ValueError):
        return b""


def sign_standard(msg_id: str, timestamp: int, body: bytes, secret: str) -> str:
    """``"v1,<base64 HMAC-SHA256 of '{msg_id}.{timestamp}.{body}'>"``."""
    signed = f"{msg_id}.{int(timestamp)}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(secret_key(secret), signed, hashlib.sha256).digest()).decode()


def standard_headers(msg_id: str, timestamp: int, body: bytes, secrets_: Sequence[str]) -> dict[str, str]:
    """The three Standard Webhooks headers, one signature per secret."""
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(int(timestamp)),
        STANDARD_SIGNATURE_HEADER: " ".join(sign_standard(msg_id, timestamp, body, s) for s in secrets_),
    }


def verify_standard(
    body: bytes,
    headers: Mapping[str, str],
    secrets_: str | Sequence[str],
    *,
    tolerance_s: float = TOLERANCE_S,
    now: float | None = None,
) -> None:
    """Check a delivery: ``webhook-timestamp`` within ``tolerance_s`` seconds
    of ``now`` (default: the clock) and a ``v1`` signature in
    ``webhook-signature`` that one of ``secrets_`` made over ``body`` (the raw
    bytes received). Raises :class:`WebhookVerificationError` otherwise.
    Header names are matched case-insensitively. Pure: no I/O."""
    h = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp, sigs = h.get(ID_HEADER), h.get(TIMESTAMP_HEADER), h.get(STANDARD_SIGNATURE_HEADER)
    if not (msg_id and stamp and sigs):
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        ts = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    t = time.time() if now is None else now
    if ts < t - tolerance_s:
        raise WebhookVerificationError("webhook-timestamp is too old (a replay?)")
    if ts > t + tolerance_s:
        raise WebhookVerificationError("webhook-timestamp is in the future")
    candidates = [secrets_] if isinstance(secrets_, str) else list(secrets_)
    expected = [sign_standard(msg_id, ts, body, s).encode() for s in candidates if s]
    for given in sigs.split():
        if not given.startswith("v1,"):
            continue  # another scheme (v1a: asymmetric): not ours to check
        g = given.encode("utf-8", "replace")
        if any(hmac.compare_digest(g, e) for e in expected):
            return
    raise WebhookVerificationError("no signature matches the secret")


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
    secret: str | Sequence[str],
    *,
    allow: Sequence[str],
    timeout_s: float = 10,
    delivery_id: str | None = None,
    user_agent: str = "audioq-webhooks",
    field: str = "callback_url",
    tls: ssl.SSLContext | None = None,
    now: float | None = None,
) -> int:
    """POST ``body`` (a JSON document) to ``url``, signed; one attempt.

    ``secret``: the current secret, or every secret still valid, the current
    one first (each signs ``webhook-signature``; the legacy header uses the
    first). ``delivery_id`` is the ``webhook-id`` (default: derived from the
    body, equally stable across retries); ``now`` the attempt's time
    (default: the clock).

    Returns the receiver's status when the outcome is final: 2xx (delivered)
    or any other status that retrying will not change (3xx, 4xx other than
    408 and 429). Raises :class:`DeliveryError` for what is worth retrying:
    connection and DNS failures, TLS errors, ``timeout_s`` (seconds, for
    the whole exchange) passed, 5xx, 408, 429. Raises ApiError(400) when the
    URL is refused (scheme, or it now resolves to a non-public address) —
    final, do not retry. ``field`` names the URL in messages; ``tls`` as in
    :func:`shared.urlfetch.open_url`.
    """
    secrets_ = [secret] if isinstance(secret, str) else (list(secret) or [""])
    msg_id = delivery_id or hashlib.sha256(body).hexdigest()[:32]
    headers = {
        "Content-Type": "application/json",
        "User-Agent": user_agent,
        SIGNATURE_HEADER: sign(body, secrets_[0]),
        DELIVERY_HEADER: msg_id,
        **standard_headers(msg_id, int(time.time() if now is None else now), body, secrets_),
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
