"""API keys and their credit balances.

A key is shown once, at creation; Redis holds only its SHA-256 (the keys are
256-bit random tokens, so a fast hash is enough: there is nothing to
brute-force). Each key has an id (``key_...``) that operators use to refer to
it and that owns assets and jobs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import redis

from shared import db, ids
from shared.errors import ApiError
from shared.settings import Settings


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    plan: str
    created_at: float
    revoked: bool
    test: bool = False  # test mode: never charged, short clips, low rate, 1 h assets

    def to_dict(self, credits: int | None = None) -> dict:
        d: dict[str, object] = {
            "id": self.id,
            "name": self.name,
            "plan": self.plan,
            "test": self.test,
            "created_at": db.iso(self.created_at),
            "revoked": self.revoked,
        }
        if credits is not None:
            d["credits"] = credits
        return d


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _from_hash(h: dict) -> ApiKey:
    return ApiKey(
        id=h["id"],
        name=h.get("name", ""),
        plan=h["plan"],
        created_at=float(h["created_at"]),
        revoked=h.get("revoked") == "1",
        test=h.get("test") == "1",
    )


def create(
    r: redis.Redis, settings: Settings, *, plan: str, credits: int, name: str, test: bool = False
) -> tuple[str, ApiKey]:
    """Create a key; returns (the secret key, its record). The secret is not
    stored. A ``test`` key is never charged and has the test-mode limits."""
    if plan not in settings.plans:
        raise ApiError(400, f"Unknown plan {plan!r}; choose one of {', '.join(settings.plans)}")
    if credits < 0:
        raise ApiError(400, "Credits must be zero or more")
    secret = ids.api_key(test)
    rec = ApiKey(id=ids.key_id(), name=name, plan=plan, created_at=db.now(), revoked=False, test=test)
    with r.pipeline(transaction=True) as p:
        p.set(db.apikey_key(hash_key(secret)), rec.id)
        p.hset(
            db.key_key(rec.id),
            mapping={
                "id": rec.id,
                "name": name,
                "plan": plan,
                "created_at": repr(rec.created_at),
                "revoked": "0",
                "test": "1" if test else "0",
                "hash": hash_key(secret),
                "webhook_secret": ids.webhook_secret(),
            },
        )
        p.zadd(db.KEYS_INDEX, {rec.id: rec.created_at})
        p.set(db.credits_key(rec.id), credits)
        p.execute()
    return secret, rec


def authenticate(r: redis.Redis, secret: str) -> ApiKey | None:
    """The live key for a presented secret, or None (unknown or revoked)."""
    key_id = r.get(db.apikey_key(hash_key(secret)))
    if not key_id:
        return None
    rec = get(r, key_id)
    if rec is None or rec.revoked:
        return None
    return rec


def get(r: redis.Redis, key_id: str) -> ApiKey | None:
    h = r.hgetall(db.key_key(key_id))
    return _from_hash(h) if h else None


def webhook_secret(r: redis.Redis, key_id: str) -> str:
    """The key's current secret for signing callbacks (see shared.webhooks)."""
    return r.hget(db.key_key(key_id), "webhook_secret") or ""


@dataclass(frozen=True)
class WebhookSecrets:
    current: str
    previous: str  # "" when there is none, or it is no longer valid
    previous_valid_until: float | None

    @property
    def signing(self) -> list[str]:
        """Every secret a delivery is signed with, the current one first."""
        return [s for s in (self.current, self.previous) if s]


def webhook_secrets(r: redis.Redis, key_id: str, now: float | None = None) -> WebhookSecrets:
    """The current secret and, within its grace period after a rotation, the
    previous one (both sign deliveries until then)."""
    cur, prev, until = r.hmget(
        db.key_key(key_id), "webhook_secret", "webhook_secret_previous", "webhook_secret_previous_until"
    )
    t = db.now() if now is None else now
    if not prev or not until or float(until) <= t:
        return WebhookSecrets(cur or "", "", None)
    return WebhookSecrets(cur or "", prev, float(until))


_ROTATE = """
local cur = redis.call('HGET', KEYS[1], 'webhook_secret')
if not cur then return 0 end
redis.call('HSET', KEYS[1], 'webhook_secret', ARGV[1], 'webhook_secret_previous', cur,
           'webhook_secret_previous_until', ARGV[2])
return 1
"""


def rotate_webhook_secret(
    r: redis.Redis, key_id: str, *, grace_s: float, now: float | None = None
) -> WebhookSecrets:
    """Give the key a new webhook secret; the one it replaces still signs
    deliveries (beside the new one) for ``grace_s`` seconds, so receivers can
    switch without missing any. Rotating again within that time replaces the
    previous secret with the one being retired (only two are ever valid)."""
    t = db.now() if now is None else now
    new, until = ids.webhook_secret(), t + grace_s
    if not r.eval(_ROTATE, 1, db.key_key(key_id), new, repr(until)):
        raise ApiError(404, f"Cannot find key {key_id}", "key_not_found")
    return webhook_secrets(r, key_id, now=t)


def list_all(r: redis.Redis) -> list[tuple[ApiKey, int]]:
    out = []
    for key_id in r.zrange(db.KEYS_INDEX, 0, -1):
        rec = get(r, key_id)
        if rec is not None:
            out.append((rec, balance(r, key_id)))
    return out


def revoke(r: redis.Redis, key_id: str) -> ApiKey:
    rec = get(r, key_id)
    if rec is None:
        raise ApiError(404, f"Cannot find key {key_id}", "key_not_found")
    h = r.hget(db.key_key(key_id), "hash")
    with r.pipeline(transaction=True) as p:
        p.hset(db.key_key(key_id), "revoked", "1")
        if h:
            p.delete(db.apikey_key(h))
        p.execute()
    return get(r, key_id)  # type: ignore[return-value]


_ADD_CREDITS = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local new = cur + tonumber(ARGV[1])
if new < 0 then return {0, cur} end
redis.call('SET', KEYS[1], new)
return {1, new}
"""


def add_credits(r: redis.Redis, key_id: str, amount: int) -> int:
    """Add (or, with a negative amount, remove) credits; never below zero."""
    if get(r, key_id) is None:
        raise ApiError(404, f"Cannot find key {key_id}", "key_not_found")
    ok, new = r.eval(_ADD_CREDITS, 1, db.credits_key(key_id), int(amount))
    if not ok:
        raise ApiError(400, f"Key {key_id} has only {new} credits")
    return int(new)


def balance(r: redis.Redis, key_id: str) -> int:
    return int(r.get(db.credits_key(key_id)) or 0)


def can_upload(r: redis.Redis, settings: Settings, key: ApiKey) -> bool:
    """Uploading is free but needs a positive balance, unless the key is not
    billed (enterprise plan, test keys)."""
    if not settings.limits(key).billed:
        return True
    return balance(r, key.id) > 0
