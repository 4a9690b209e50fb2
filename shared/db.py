"""The Redis connection and the one table of every key the application writes.

Application state lives in ``AUDIOQ_REDIS_URL``; Celery's broker lives in
``AUDIOQ_BROKER_URL`` (by default the next numbered database), so the two
never share a keyspace. Celery keeps no results: job state is here only.

| key pattern                      | type   | TTL                 | written by                     |
|----------------------------------|--------|---------------------|--------------------------------|
| aq:apikey:{sha256(key)}          | string | none                | keys.create (-> key id)        |
| aq:key:{key_id}                  | hash   | none                | keys.create / revoke / rotate  |
|   fields: id name plan created_at revoked test hash webhook_secret                    |
|   webhook_secret_previous webhook_secret_previous_until (keys.rotate_webhook_secret)  |
| aq:keys                          | zset   | none                | keys.create (id by created_at) |
| aq:credits:{key_id}              | string | none                | keys.create / credit, jobs     |
| aq:asset:{asset_id}              | hash   | none (swept)        | assets.register / expire       |
| aq:owner:{key_id}:assets         | zset   | none                | assets.register (by created_at)|
| aq:owner:{key_id}:sha:{sha256}   | string | none (swept)        | assets.register (dedup)        |
| aq:expiry                        | zset   | none                | assets.register (by expires_at)|
| aq:job:{job_id}                  | hash   | job TTL once final  | jobs.submit / transitions      |
|   fields: id owner op status progress options asset_id sha256 created_at started_at   |
|   finished_at result error cost billed refunded cache trace_id attempts callback_url  |
|   token (current attempt) heartbeat_at deadline (first start + hard limit + 60 s)     |
|   queue recoveries worker (host:pid of the last start)                                 |
|   cb_attempts cb_last_status cb_last_error cb_delivered_at (jobs.record_callback)      |
| aq:owner:{key_id}:jobs           | zset   | none (pruned lazily)| jobs.submit (by created_at)    |
| aq:jobs:active                   | zset   | none                | jobs (id by deadline)          |
| aq:jobs:all                      | zset   | none (pruned lazily)| jobs.submit (by created_at)    |
| aq:queued:{queue}, aq:m:*        | see shared/metrics.py (fleet-wide counters, waiting jobs)     |
| aq:jobs:running                  | zset   | none                | jobs.start/heartbeat (by beat) |
| aq:jobs:pending-sends            | hash   | none                | maintenance (job id -> token)  |
| aq:worker:{node}:draining        | string | 10 min              | worker shutdown (hand back)    |
| aq:rate:{key_id}                 | hash   | time to refill      | ratelimit.take (tokens, at)    |
| aq:uploads:{key_id}              | zset   | 61 s, renewed       | ratelimit upload slots (token  |
|                                  |        |                     |   -> expiry; renewed mid-body) |
| aq:owner:{key_id}:inflight:{q}   | zset   | none                | jobs (queued+running on q)     |
| aq:fp:{key_id}:{asset_id}        | string | asset's remaining life | fingerprints.add (landmarks)|
| aq:fpidx:{key_id}                | zset   | longest member's life | fingerprints.add (by expiry) |
| aq:owner:{key_id}:tasks          | zset   | none (pruned lazily)| tasks dialect (job ids)        |
| aq:cache:{sha256}:{digest}       | string | source asset's life | jobs.complete (result JSON)    |
| aq:cacheidx:{sha256}             | set    | source asset's life | jobs.complete (cache keys)     |
| aq:idem:{key_id}:{idem key}      | string | 24 h                | jobs.submit ("job_id|fp")      |
| aq:jobdone:{job_id}              | pubsub | -                   | job transitions (wakes waiters)|
|   (channel name: job_done_channel)                                                     |

Times are stored as Unix seconds (float); the API renders them as ISO 8601 UTC.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

import redis

from shared.errors import ApiError
from shared.settings import Settings

PREFIX = "aq:"


def apikey_key(key_hash: str) -> str:
    return f"{PREFIX}apikey:{key_hash}"


def key_key(key_id: str) -> str:
    return f"{PREFIX}key:{key_id}"


KEYS_INDEX = f"{PREFIX}keys"


def credits_key(key_id: str) -> str:
    return f"{PREFIX}credits:{key_id}"


def asset_key(asset_id: str) -> str:
    return f"{PREFIX}asset:{asset_id}"


def owner_assets_key(key_id: str) -> str:
    return f"{PREFIX}owner:{key_id}:assets"


def owner_sha_key(key_id: str, sha256: str) -> str:
    return f"{PREFIX}owner:{key_id}:sha:{sha256}"


EXPIRY_INDEX = f"{PREFIX}expiry"


def job_key(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}"


def owner_jobs_key(key_id: str) -> str:
    return f"{PREFIX}owner:{key_id}:jobs"


ACTIVE_JOBS = f"{PREFIX}jobs:active"
ALL_JOBS = f"{PREFIX}jobs:all"
RUNNING_JOBS = f"{PREFIX}jobs:running"
PENDING_SENDS = f"{PREFIX}jobs:pending-sends"


def rate_key(key_id: str) -> str:
    """The key's request token bucket (shared.ratelimit)."""
    return f"{PREFIX}rate:{key_id}"


def uploads_key(key_id: str) -> str:
    """The key's uploads receiving now (shared.ratelimit upload slots)."""
    return f"{PREFIX}uploads:{key_id}"


def draining_key(worker: str) -> str:
    """Set while the worker (its Celery node name) shuts down: its running
    attempts hand their jobs back."""
    return f"{PREFIX}worker:{worker}:draining"


def in_flight_key(key_id: str, queue: str) -> str:
    """The owner's jobs queued or running on ``queue`` (for the per-plan cap)."""
    return f"{PREFIX}owner:{key_id}:inflight:{queue}"


def owner_tasks_key(key_id: str) -> str:
    """The caller's tasks-dialect tasks (each is a job of op ``tasks/separate``)."""
    return f"{PREFIX}owner:{key_id}:tasks"


def job_done_channel(job_id: str) -> str:
    """Pub/sub channel a job's final transition is published on."""
    return f"{PREFIX}jobdone:{job_id}"


def cache_key(digest: str) -> str:
    return f"{PREFIX}cache:{digest}"


def cache_index_key(sha256: str) -> str:
    return f"{PREFIX}cacheidx:{sha256}"


def idempotency_key(key_id: str, key: str) -> str:
    return f"{PREFIX}idem:{key_id}:{key}"


#: Connections one client may open. A gevent API worker serves up to
#: ``worker_connections`` (ops/gunicorn_conf.py) requests at once, each of
#: which may hold one (a request waiting for its job holds a pub/sub
#: connection): the pool allows as many, and a request finding it exhausted
#: waits for a free connection rather than failing at once.
MAX_CONNECTIONS = 1000
POOL_WAIT_S = 10


def connect(settings: Settings, timeout_s: float | None = None) -> redis.Redis:
    """A client of the application Redis; ``timeout_s`` shortens the socket
    timeouts (for callers that must not block, e.g. a worker's event loop)."""
    pool = redis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_WAIT_S,
        decode_responses=True,
        socket_connect_timeout=timeout_s or 5,
        socket_timeout=timeout_s or 30,
        health_check_interval=30,
    )
    client = redis.Redis(connection_pool=pool)
    client.auto_close_connection_pool = True  # close() releases the pool, as from_url's clients do
    return client


def now() -> float:
    return time.time()


def iso(ts: float | str | None) -> str | None:
    """Unix seconds -> '2026-11-25T08:30:00Z' (None stays None)."""
    if ts is None or ts == "":
        return None
    t = dt.datetime.fromtimestamp(float(ts), tz=dt.UTC)
    return t.isoformat(timespec="seconds").replace("+00:00", "Z")


def newest_first(
    r: redis.Redis,
    index: str,
    record_key: Callable[[str], str],
    *,
    limit: int,
    cursor: str | None,
    keep: Callable[[dict], bool] = lambda h: True,
    what: str = "id",
) -> tuple[list[dict], str | None]:
    """A page of the records an owner index (zset by created_at) points to,
    newest first, after ``cursor`` (the last id of the previous page,
    exclusive). Records that are gone are pruned from the index; ``keep``
    filters the rest (e.g. expired assets). Returns (hashes, next_cursor),
    next_cursor None on the last page."""
    start = 0
    if cursor:
        rank = r.zrevrank(index, cursor)
        if rank is None:
            raise ApiError(
                400, f"Unknown cursor: pass the last {what} of the previous page", "invalid_cursor"
            )
        start = rank + 1
    page: list[dict] = []
    while True:
        ids = r.zrevrange(index, start, start + max(limit, 50) - 1)
        if not ids:
            return page, None
        with r.pipeline(transaction=False) as p:
            for i in ids:
                p.hgetall(record_key(i))
            hashes = p.execute()
        start += len(ids)
        gone = [i for i, h in zip(ids, hashes, strict=True) if not h]
        if gone:
            r.zrem(index, *gone)
        for h in hashes:
            if h and keep(h):
                if len(page) == limit:
                    return page, page[-1]["id"]
                page.append(h)
