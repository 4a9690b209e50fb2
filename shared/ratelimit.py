"""Per-key request rate limits: a token bucket in Redis, so the limit holds
across API processes and hosts.

Each key has a bucket of ``burst`` tokens refilled at ``rate_per_s``; every
authenticated request takes one. A request that finds the bucket empty is
refused (429) before anything is read, stored or charged. One Lua script
reads, refills and takes atomically, with Redis's own clock (``TIME``), so
API hosts with skewed clocks agree.

Why not flask-limiter: its fixed and moving windows let a client send twice
the limit across a window edge, its storage does not refill continuously,
and mapping its headers and errors onto ours took more code than these 30
lines of Lua. The response headers follow the IETF draft
(``RateLimit-Limit``, ``RateLimit-Remaining``, ``RateLimit-Reset``) plus
``Retry-After`` on a 429.

The same module counts each key's uploads receiving at once (upload slots):
a zset of tokens scored by their expiry, taken before a body is read and
released when the request ends, renewed while the body arrives so that only
a dead API process's slots ever expire.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import redis

from shared import db

_TAKE = """
-- KEYS: bucket hash; ARGV: rate per s, burst
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or burst)
local last = tonumber(redis.call('HGET', KEYS[1], 'at') or now)
tokens = math.min(burst, tokens + math.max(0, now - last) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return {allowed, tostring(tokens)}
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int  # the burst: requests that may arrive at once
    remaining: int  # whole tokens left
    reset_s: int  # seconds until the bucket is full again
    retry_after_s: int  # seconds until one request is allowed (0 when allowed)
    rate_per_s: float

    def headers(self) -> dict[str, str]:
        h = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
            "RateLimit-Policy": f"{self.limit};w={max(1, round(self.limit / self.rate_per_s))}",
        }
        if not self.allowed:
            h["Retry-After"] = str(self.retry_after_s)
        return h


def take(r: redis.Redis, key_id: str, rate_per_s: float, burst: int) -> Decision:
    """Take one request's token from the key's bucket."""
    allowed, tokens_s = r.eval(_TAKE, 1, db.rate_key(key_id), rate_per_s, burst)
    tokens = float(tokens_s)
    return Decision(
        allowed=bool(allowed),
        limit=burst,
        remaining=int(tokens),
        reset_s=math.ceil((burst - tokens) / rate_per_s),
        retry_after_s=0 if allowed else max(1, math.ceil((1 - tokens) / rate_per_s)),
        rate_per_s=rate_per_s,
    )


# --------------------------------------------------------------------- uploads

#: A slot not renewed for this long is free again: the safety net for an API
#: process that died mid-upload. Uploads renew theirs every third of it.
UPLOAD_SLOT_TTL_S = 60
#: What a refused upload is told to wait: uploads end at unknown times.
UPLOAD_RETRY_AFTER_S = 5

_TAKE_UPLOAD = """
-- KEYS: the key's upload slots (zset token -> expiry); ARGV: token, limit, ttl
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('EXPIRE', KEYS[1], ttl + 1)
return 1
"""

_RENEW_UPLOAD = """
-- KEYS: the key's upload slots; ARGV: token, ttl
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local ttl = tonumber(ARGV[2])
if redis.call('ZADD', KEYS[1], 'XX', 'CH', now + ttl, ARGV[1]) == 1 then
  redis.call('EXPIRE', KEYS[1], ttl + 1)
end
return 1
"""


def take_upload_slot(r: redis.Redis, key_id: str, token: str, limit: int) -> bool:
    """Count one more upload of the key receiving now, unless it has ``limit``
    already (across every API process); :func:`release_upload_slot` ends it."""
    return bool(r.eval(_TAKE_UPLOAD, 1, db.uploads_key(key_id), token, limit, UPLOAD_SLOT_TTL_S))


def renew_upload_slot(r: redis.Redis, key_id: str, token: str) -> None:
    r.eval(_RENEW_UPLOAD, 1, db.uploads_key(key_id), token, UPLOAD_SLOT_TTL_S)


def release_upload_slot(r: redis.Redis, key_id: str, token: str) -> None:
    r.zrem(db.uploads_key(key_id), token)
