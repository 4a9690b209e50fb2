"""Verify audioq's webhook deliveries (Standard Webhooks, symmetric ``v1``).

Use the raw body bytes exactly as received, before any JSON parsing::

    from audioq_client import verify_webhook, WebhookVerificationError

    try:
        verify_webhook(request_body, request_headers, "whsec_...")
    except WebhookVerificationError:
        return 400

``headers`` must hold ``webhook-id``, ``webhook-timestamp`` and
``webhook-signature`` (any case). Pass the old and the new secret while you
switch after a rotation. Then drop deliveries whose ``webhook-id`` you have
already handled (retries repeat it).

The same scheme as ``shared/webhooks.py`` on the server, repeated here so that
this package installs on its own (the server's tests check them against each
other on real deliveries).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence

TOLERANCE_S = 300


class WebhookVerificationError(Exception):
    """The delivery does not verify (why is in the message)."""


def _key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix("whsec_") + "==")
    except (binascii.Error, ValueError):
        return b""


def sign(msg_id: str, timestamp: int, body: bytes, secret: str) -> str:
    """``v1,<base64 HMAC-SHA256 of "{msg_id}.{timestamp}.{body}">``."""
    mac = hmac.new(_key(secret), f"{msg_id}.{int(timestamp)}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def verify_webhook(
    body: bytes,
    headers: Mapping[str, str],
    secret: str | Sequence[str],
    *,
    tolerance_s: float = TOLERANCE_S,
    now: float | None = None,
) -> None:
    """Raise :class:`WebhookVerificationError` unless the delivery's timestamp
    is within ``tolerance_s`` seconds of ``now`` and one of its signatures was
    made with (one of) ``secret`` over ``body``."""
    h = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp, sigs = h.get("webhook-id"), h.get("webhook-timestamp"), h.get("webhook-signature")
    if not (msg_id and stamp and sigs):
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        ts = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    t = time.time() if now is None else now
    if abs(t - ts) > tolerance_s:
        raise WebhookVerificationError("webhook-timestamp is outside the tolerance (a replay?)")
    secrets = [secret] if isinstance(secret, str) else list(secret)
    expected = [sign(msg_id, ts, body, s).encode() for s in secrets if s]
    for given in sigs.split():
        g = given.encode("utf-8", "replace")
        if given.startswith("v1,") and any(hmac.compare_digest(g, e) for e in expected):
            return
    raise WebhookVerificationError("no signature matches the secret")
