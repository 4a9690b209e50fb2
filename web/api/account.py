"""``GET /v1/account``: the caller's key, plan, balance and webhook secret."""

from __future__ import annotations

from flask import Blueprint, g, jsonify

from shared import keys
from web import auth, services

bp = Blueprint("account", __name__)
bp.before_request(auth.require_key)


@bp.get("/v1/account")
def account():
    r = services.get().redis
    return jsonify(
        {
            **g.key.to_dict(credits=keys.balance(r, g.key.id)),
            # Callbacks are signed with this: X-Audioq-Signature (see the README).
            "webhook_secret": keys.webhook_secret(r, g.key.id),
        }
    )
