"""Opaque identifiers and secrets (URL-safe, from ``secrets``)."""

from __future__ import annotations

import base64
import secrets


def asset_id() -> str:
    """``afa_`` + 24 random URL-safe characters (144 bits)."""
    return "afa_" + secrets.token_urlsafe(18)


def key_id() -> str:
    return "key_" + secrets.token_urlsafe(9)


def api_key(test: bool = False) -> str:
    """The secret a client presents: ``aq_`` (``aq_test_`` for a test-mode
    key, so one is recognisable in a config file) + 43 characters (256 bits)."""
    return ("aq_test_" if test else "aq_") + secrets.token_urlsafe(32)


def secret() -> str:
    return secrets.token_hex(32)


def webhook_secret() -> str:
    """``whsec_`` + base64 of 32 random bytes: the Standard Webhooks format
    (24 to 64 bytes, base64, the prefix naming what it is)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")
