"""``GET /v1/account``: the caller's key, plan, balance and webhook secret;
``POST /v1/account/webhook-secret``: rotate that secret."""

from __future__ import annotations

from flask import Blueprint, g, jsonify

from shared import db, keys
from web import auth, services

bp = Blueprint("account", __name__)
bp.before_request(auth.require_key)


@bp.get("/v1/account")
def account():
    r = services.get().redis
    secrets = keys.webhook_secrets(r, g.key.id)
    return jsonify(
        {
            **g.key.to_dict(credits=keys.balance(r, g.key.id)),
            # Callbacks are signed with this (Standard Webhooks; see docs/api.md).
            "webhook_secret": secrets.current,
            # After a rotation, the previous secret still signs deliveries until then.
            "webhook_secret_previous_valid_until": db.iso(secrets.previous_valid_until),
        }
    )


@bp.post("/v1/account/webhook-secret")
def rotate_webhook_secret():
    """A new secret; the old one keeps signing deliveries (beside the new one)
    for AUDIOQ_WEBHOOK_SECRET_GRACE_S (24 h), so receivers switch without a gap."""
    svc = services.get()
    rot = keys.rotate_webhook_secret(svc.redis, g.key.id, grace_s=svc.settings.webhook_secret_grace_s)
    return jsonify({"webhook_secret": rot.current, "previous_valid_until": db.iso(rot.previous_valid_until)})
