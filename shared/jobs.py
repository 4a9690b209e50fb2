"""Jobs: the state machine, credits, result cache and idempotency, in Redis.

Statuses: ``queued -> running -> completed | failed``, and ``cancelled`` from
either of the first two. Every transition is one Lua script, so the rules hold
under concurrency and redelivery:

* **Submit** checks the Idempotency-Key, reserves the credits (never below
  zero) and writes the job record, atomically. Credits are taken here, once:
  a redelivered task never charges again.
* **Start** is allowed from ``queued`` and ``running`` (a redelivered task
  restarts a job whose worker died) and refused otherwise, so a finished or
  cancelled job is never redone.
* **Finish** (completed/failed) only from ``queued``/``running``; a failure that
  is not the caller's fault refunds the reservation, at most once.
* **Cancel** from ``queued`` refunds; from ``running`` it stops the job
  without a refund (the work has begun); finished jobs cannot be cancelled.

Waiters are woken through pub/sub on :func:`shared.db.job_done_channel`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from shared import db, ids
from shared.errors import ApiError
from shared.operations import Operation

FINAL = ("completed", "failed", "cancelled")
IDEMPOTENCY_TTL_S = 24 * 3600
NOT_FOUND = "Cannot find job"


@dataclass(frozen=True)
class Job:
    id: str
    owner: str
    op: str
    status: str
    progress: float
    options: dict[str, Any]
    asset_id: str
    sha256: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    cost: int
    billed: bool
    refunded: bool
    cache: str  # "hit" | "miss"
    trace_id: str
    attempts: int
    callback_url: str = ""  # POSTed the finished document (signed), if set

    @classmethod
    def from_hash(cls, h: Mapping[str, str]) -> Job:
        def opt_float(k: str) -> float | None:
            return float(h[k]) if h.get(k) else None

        def opt_json(k: str) -> Any:
            return json.loads(h[k]) if h.get(k) else None

        return cls(
            id=h["id"],
            owner=h["owner"],
            op=h["op"],
            status=h["status"],
            progress=float(h.get("progress") or 0),
            options=opt_json("options") or {},
            asset_id=h["asset_id"],
            sha256=h["sha256"],
            created_at=float(h["created_at"]),
            started_at=opt_float("started_at"),
            finished_at=opt_float("finished_at"),
            result=opt_json("result"),
            error=opt_json("error"),
            cost=int(h.get("cost") or 0),
            billed=h.get("billed") == "1",
            refunded=h.get("refunded") == "1",
            cache=h.get("cache", "miss"),
            trace_id=h.get("trace_id", ""),
            attempts=int(h.get("attempts") or 0),
            callback_url=h.get("callback_url", ""),
        )

    @property
    def finished(self) -> bool:
        return self.status in FINAL

    @property
    def credits_used(self) -> int:
        return 0 if (self.refunded or not self.billed) else self.cost

    @property
    def latency_ms(self) -> int | None:
        if self.finished_at is None:
            return None
        return int(round((self.finished_at - self.created_at) * 1000))


def new_id() -> str:
    return "job_" + ids.asset_id()[4:]


# --------------------------------------------------------------------------- submit

_SUBMIT = """
-- KEYS: credits, job, owner jobs zset, idempotency key, active zset
-- ARGV: cost, billed, job id, created_at, fingerprint, use idem (0/1),
--       deadline ('' = none), then job field/value pairs
if ARGV[6] == '1' then
  local prev = redis.call('GET', KEYS[4])
  if prev then
    local sep = string.find(prev, '|', 1, true)
    local pid, pfp = string.sub(prev, 1, sep - 1), string.sub(prev, sep + 1)
    if pfp == ARGV[5] then return {2, pid} end
    return {3, pid}
  end
end
local cost = tonumber(ARGV[1])
local bal = tonumber(redis.call('GET', KEYS[1]) or '0')
if ARGV[2] == '1' and cost > 0 then
  if bal < cost then return {0, tostring(bal)} end
  bal = redis.call('DECRBY', KEYS[1], cost)
end
local fields = {}
for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[2], unpack(fields))
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
if ARGV[7] ~= '' then redis.call('ZADD', KEYS[5], ARGV[7], ARGV[3]) end
if ARGV[6] == '1' then
  redis.call('SET', KEYS[4], ARGV[3] .. '|' .. ARGV[5], 'EX', IDEM_TTL)
end
return {1, tostring(bal)}
""".replace("IDEM_TTL", str(IDEMPOTENCY_TTL_S))


@dataclass(frozen=True)
class Submitted:
    job: Job
    replay: bool  # an Idempotency-Key retry: the original job, nothing charged


def fingerprint(op: Operation, sha256: str, options: Mapping[str, object], asset_id: str) -> str:
    return op.cache_key(sha256, options, asset_id)


def submit(
    r: redis.Redis,
    *,
    owner: str,
    op: Operation,
    options: Mapping[str, object],
    asset_id: str,
    sha256: str,
    cost: int,
    billed: bool,
    trace_id: str,
    queue_timeout_s: int,
    job_ttl_s: int,
    idempotency_key: str | None = None,
    cached_result: dict | None = None,
    callback_url: str = "",
) -> Submitted:
    """Create a job, reserving its credits; or return the Idempotency-Key's
    original job. With ``cached_result`` the job is born completed and free."""
    t = db.now()
    job_id = new_id()
    hit = cached_result is not None
    fields: dict[str, str] = {
        "id": job_id,
        "owner": owner,
        "op": op.name,
        "status": "completed" if hit else "queued",
        "progress": "1" if hit else "0",
        "options": json.dumps(dict(options), sort_keys=True),
        "asset_id": asset_id,
        "sha256": sha256,
        "created_at": repr(t),
        "cost": "0" if hit else str(cost),
        "billed": "1" if (billed and not hit) else "0",
        "refunded": "0",
        "cache": "hit" if hit else "miss",
        "trace_id": trace_id,
        "attempts": "0",
    }
    if callback_url:
        fields["callback_url"] = callback_url
    if hit:
        fields["started_at"] = fields["finished_at"] = repr(t)
        fields["result"] = json.dumps(cached_result)
    flat: list[str] = []
    for k, v in fields.items():
        flat += [k, v]
    idem_key = (
        db.idempotency_key(owner, idempotency_key) if idempotency_key else db.idempotency_key(owner, "-")
    )
    code, value = r.eval(
        _SUBMIT,
        5,
        db.credits_key(owner),
        db.job_key(job_id),
        db.owner_jobs_key(owner),
        idem_key,
        db.ACTIVE_JOBS,
        str(cost if not hit else 0),
        "1" if billed else "0",
        job_id,
        repr(t),
        fingerprint(op, sha256, {**options, "callback_url": callback_url}, asset_id),
        "1" if idempotency_key else "0",
        "" if hit else repr(t + queue_timeout_s),
        *flat,
    )
    code = int(code)
    if code == 0:
        raise ApiError(400, "Insufficient credits", "insufficient_credits")
    if code == 3:
        raise ApiError(
            422,
            "This Idempotency-Key was already used with a different request body",
            "idempotency_key_reused",
        )
    if code == 2:
        return Submitted(get_any(r, value), replay=True)
    if hit:
        r.expire(db.job_key(job_id), job_ttl_s)
    return Submitted(get_any(r, job_id), replay=False)


def balance(r: redis.Redis, owner: str) -> int:
    return int(r.get(db.credits_key(owner)) or 0)


# --------------------------------------------------------------------------- read


def get_any(r: redis.Redis, job_id: str) -> Job:
    h = r.hgetall(db.job_key(job_id))
    if not h:
        raise ApiError(404, NOT_FOUND, "job_not_found")
    return Job.from_hash(h)


def get(r: redis.Redis, owner: str, job_id: str) -> Job:
    """The caller's job, or 404 — another tenant's job looks missing."""
    job = get_any(r, job_id)
    if job.owner != owner:
        raise ApiError(404, NOT_FOUND, "job_not_found")
    return job


def list_for_owner(
    r: redis.Redis, owner: str, *, limit: int, cursor: str | None
) -> tuple[list[Job], str | None]:
    """Newest first; ``cursor`` = last job id of the previous page (exclusive).
    Jobs whose records expired drop out of the index."""
    hashes, next_cursor = db.newest_first(
        r, db.owner_jobs_key(owner), db.job_key, limit=limit, cursor=cursor, what="job_id"
    )
    return [Job.from_hash(h) for h in hashes], next_cursor


# --------------------------------------------------------------------------- transitions

_START = """
-- KEYS: job, active zset; ARGV: job id, now, deadline, worker
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 'missing' end
if st ~= 'queued' and st ~= 'running' then return st end
redis.call('HSET', KEYS[1], 'status', 'running', 'worker', ARGV[4])
if not redis.call('HGET', KEYS[1], 'started_at') then
  redis.call('HSET', KEYS[1], 'started_at', ARGV[2])
end
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 'ok'
"""

_PROGRESS = """
if redis.call('HGET', KEYS[1], 'status') == 'running' then
  redis.call('HSET', KEYS[1], 'progress', ARGV[1])
  return 1
end
return 0
"""

_FINISH = """
-- KEYS: job, active zset, credits, done channel
-- ARGV: job id, status, now, field (result|error), json, refund (0/1), ttl
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 'missing' end
if st ~= 'queued' and st ~= 'running' then return st end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'finished_at', ARGV[3], ARGV[4], ARGV[5])
if ARGV[2] == 'completed' then redis.call('HSET', KEYS[1], 'progress', '1') end
if ARGV[6] == '1' and redis.call('HGET', KEYS[1], 'billed') == '1'
   and redis.call('HGET', KEYS[1], 'refunded') ~= '1' then
  redis.call('INCRBY', KEYS[3], tonumber(redis.call('HGET', KEYS[1], 'cost')))
  redis.call('HSET', KEYS[1], 'refunded', '1')
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[7]))
redis.call('PUBLISH', KEYS[4], ARGV[2])
return 'ok'
"""

_CANCEL = """
-- KEYS: job, active zset, credits, done channel; ARGV: job id, now, ttl
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 'missing' end
if st ~= 'queued' and st ~= 'running' then return st end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', ARGV[2])
if st == 'queued' and redis.call('HGET', KEYS[1], 'billed') == '1' then
  redis.call('INCRBY', KEYS[3], tonumber(redis.call('HGET', KEYS[1], 'cost')))
  redis.call('HSET', KEYS[1], 'refunded', '1')
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
redis.call('PUBLISH', KEYS[4], 'cancelled')
return 'was_' .. st
"""


def start(r: redis.Redis, job_id: str, *, hard_limit_s: int, worker: str) -> str:
    """Mark running; returns 'ok', or the status that forbids running it."""
    t = db.now()
    deadline = t + hard_limit_s + 60
    return r.eval(_START, 2, db.job_key(job_id), db.ACTIVE_JOBS, job_id, repr(t), repr(deadline), worker)


def set_progress(r: redis.Redis, job_id: str, progress: float) -> bool:
    """Record progress in [0, 1]; False when the job is no longer running
    (cancelled: long jobs should stop)."""
    p = min(1.0, max(0.0, float(progress)))
    return bool(r.eval(_PROGRESS, 1, db.job_key(job_id), f"{p:.4f}"))


def _finish(r: redis.Redis, job: Job, status: str, field: str, payload: dict, refund: bool, ttl: int) -> bool:
    out = r.eval(
        _FINISH,
        4,
        db.job_key(job.id),
        db.ACTIVE_JOBS,
        db.credits_key(job.owner),
        db.job_done_channel(job.id),
        job.id,
        status,
        repr(db.now()),
        field,
        json.dumps(payload),
        "1" if refund else "0",
        ttl,
    )
    return out == "ok"


def complete(r: redis.Redis, job: Job, result: dict, *, ttl: int, cache_ttl: int, op: Operation) -> bool:
    """Record the result and cache it (for as long as the source asset lives)."""
    if cache_ttl > 0 and op.cache:
        ck = db.cache_key(op.cache_key(job.sha256, job.options, job.asset_id))
        with r.pipeline(transaction=True) as p:
            p.set(ck, json.dumps(result), ex=cache_ttl)
            p.sadd(db.cache_index_key(job.sha256), ck)
            p.expire(db.cache_index_key(job.sha256), cache_ttl, gt=True)
            p.expire(db.cache_index_key(job.sha256), cache_ttl, nx=True)
            p.execute()
    return _finish(r, job, "completed", "result", result, False, ttl)


def fail(r: redis.Redis, job: Job, error: ApiError, *, refund: bool, ttl: int) -> bool:
    return _finish(r, job, "failed", "error", error.to_dict(), refund, ttl)


def cancel(r: redis.Redis, job: Job, *, ttl: int) -> str:
    """Returns the status the job had ('was_queued' / 'was_running'), or
    raises 409 when it had already finished."""
    out = r.eval(
        _CANCEL,
        4,
        db.job_key(job.id),
        db.ACTIVE_JOBS,
        db.credits_key(job.owner),
        db.job_done_channel(job.id),
        job.id,
        repr(db.now()),
        ttl,
    )
    if out == "missing":
        raise ApiError(404, NOT_FOUND, "job_not_found")
    if not str(out).startswith("was_"):
        raise ApiError(
            409,
            f"The job has already finished ({out}); only queued or running jobs can be cancelled",
            "job_finished",
        )
    return str(out)


def record_callback(r: redis.Redis, job_id: str, outcome: str) -> None:
    """Record how the job's callback delivery went (``callback_status``)."""
    r.hset(db.job_key(job_id), "callback_status", outcome)


def cached(
    r: redis.Redis, op: Operation, sha256: str, options: Mapping[str, object], asset_id: str
) -> dict | None:
    if not op.cache:
        return None
    raw = r.get(db.cache_key(op.cache_key(sha256, options, asset_id)))
    return json.loads(raw) if raw else None


def drop_cache(r: redis.Redis, sha256: str) -> None:
    """Forget every cached result computed from these bytes."""
    idx = db.cache_index_key(sha256)
    members = r.smembers(idx)
    if members:
        r.delete(*members)
    r.delete(idx)


# --------------------------------------------------------------------------- waiting


def wait(r: redis.Redis, job_id: str, timeout_s: float) -> Job:
    """Block up to ``timeout_s`` for the job to finish; returns it either way.

    Subscribes before reading the status, so a finish between the two is not
    missed. Under gevent this parks a greenlet, not a worker."""
    if timeout_s <= 0:
        return get_any(r, job_id)
    pubsub = r.pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(db.job_done_channel(job_id))
        job = get_any(r, job_id)
        deadline = time.monotonic() + timeout_s
        while not job.finished:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            msg = pubsub.get_message(timeout=min(remaining, 1.0))
            if msg is not None or remaining <= 1.0:
                job = get_any(r, job_id)
        return job
    finally:
        pubsub.close()


# --------------------------------------------------------------------------- housekeeping


def fail_overdue(r: redis.Redis, *, ttl: int, now: float | None = None) -> int:
    """Fail (and refund) jobs past their deadline: queued too long, or running
    past their hard time limit (the worker was killed or lost). Returns how many."""
    t = db.now() if now is None else now
    n = 0
    for job_id in r.zrangebyscore(db.ACTIVE_JOBS, "-inf", t, start=0, num=1000):
        h = r.hgetall(db.job_key(job_id))
        if not h:
            r.zrem(db.ACTIVE_JOBS, job_id)
            continue
        job = Job.from_hash(h)
        msg = (
            "The job was not picked up by a worker in time; it was not charged. Try again"
            if job.status == "queued"
            else "The job exceeded its time limit or its worker was lost; it was not charged. Try again"
        )
        if fail(r, job, ApiError(503 if job.status == "queued" else 504, msg), refund=True, ttl=ttl):
            n += 1
        else:
            r.zrem(db.ACTIVE_JOBS, job_id)
    return n
