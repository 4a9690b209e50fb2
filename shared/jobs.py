"""Jobs: the state machine, credits, result cache and idempotency, in Redis.

Statuses: ``queued -> running -> completed | failed``, and ``cancelled`` from
either of the first two; a running job whose worker was lost goes back to
``queued`` for another attempt. Every transition is one Lua script, so the
rules hold under concurrency and redelivery:

* **Submit** checks the Idempotency-Key and the caller's cap of jobs in
  flight on the operation's queue, reserves the credits (never below zero)
  and writes the job record, atomically. Credits are taken here, once: no
  later attempt or redelivery charges again.
* **Attempts and tokens.** Every message that runs a job carries the job's
  current *attempt token*. Start refuses a message whose token is not the
  job's (a stale redelivery of an attempt that was already replaced), so a
  job never runs twice at once. Start is allowed from ``queued`` and from
  ``running`` with the same token (the broker redelivered the message of a
  process that died), counts the attempt, and refuses past the bound
  (``exhausted``: the job keeps crashing its worker).
* **Heartbeat.** A running attempt refreshes ``heartbeat_at`` every few
  seconds, whatever its progress. :func:`recover_stalled` finds running jobs
  whose heartbeat is older than the bound (the worker is gone: killed, out of
  memory, its machine lost, its message dropped) and puts them back to
  ``queued`` with a new token, or fails them, refunded, once attempts are
  exhausted. The first deadline (hard time limit after the first start) is
  kept across attempts.
* **Finish** (completed/failed) only from ``queued``/``running``, and from a
  worker only with the current token; a failure that is not the caller's
  fault refunds the reservation, at most once.
* **Cancel** from ``queued`` refunds; from ``running`` it stops the job,
  without a refund while its worker is alive (the work has begun) and with
  one when its heartbeat is stale (nothing is working on it).
* **Progress** only rises: a new attempt reports the maximum so far.

Waiters are woken through pub/sub on :func:`shared.db.job_done_channel`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from shared import db, ids, metrics
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
    token: str = ""  # the current attempt's token (see the module docstring)
    test: bool = False  # submitted with a test-mode key (never charged)
    heartbeat_at: float | None = None
    worker: str = ""  # host:pid of the last start
    # How the callback delivery went (see record_callback).
    callback_attempts: int = 0
    callback_last_status: int | None = None
    callback_last_error: str = ""
    callback_delivered_at: float | None = None

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
            token=h.get("token", ""),
            test=h.get("test") == "1",
            heartbeat_at=opt_float("heartbeat_at"),
            worker=h.get("worker", ""),
            callback_attempts=int(h.get("cb_attempts") or 0),
            callback_last_status=int(h["cb_last_status"]) if h.get("cb_last_status") else None,
            callback_last_error=h.get("cb_last_error", ""),
            callback_delivered_at=opt_float("cb_delivered_at"),
        )

    @property
    def finished(self) -> bool:
        return self.status in FINAL

    @property
    def credits_used(self) -> int:
        return 0 if (self.refunded or not self.billed) else self.cost

    @property
    def callback_status(self) -> dict[str, Any] | None:
        """``{attempts, last_status, last_error, delivered_at}`` (times as
        Unix seconds), or None when the job has no callback URL."""
        if not self.callback_url:
            return None
        return {
            "attempts": self.callback_attempts,
            "last_status": self.callback_last_status,
            "last_error": self.callback_last_error or None,
            "delivered_at": self.callback_delivered_at,
        }

    @property
    def latency_ms(self) -> int | None:
        if self.finished_at is None:
            return None
        return int(round((self.finished_at - self.created_at) * 1000))


def new_id() -> str:
    return "job_" + ids.asset_id()[4:]


def new_token() -> str:
    return ids.secret()[:16]


# --------------------------------------------------------------------------- submit

_SUBMIT = (
    metrics.LUA
    + """
-- KEYS: credits, job, owner jobs zset, idempotency key, active zset,
--       the owner's in-flight zset of the operation's queue, the queue's
--       waiting zset, every job (zset by created_at)
-- ARGV: cost, billed, job id, created_at, fingerprint, use idem (0/1),
--       deadline ('' = a cache hit, born completed), in-flight cap ('' = none),
--       op, then job field/value pairs
if ARGV[6] == '1' then
  local prev = redis.call('GET', KEYS[4])
  if prev then
    local sep = string.find(prev, '|', 1, true)
    local pid, pfp = string.sub(prev, 1, sep - 1), string.sub(prev, sep + 1)
    if pfp == ARGV[5] then return {2, pid} end
    return {3, pid}
  end
end
if ARGV[8] ~= '' and redis.call('ZCARD', KEYS[6]) >= tonumber(ARGV[8]) then
  return {4, tostring(redis.call('ZCARD', KEYS[6]))}
end
local cost = tonumber(ARGV[1])
local bal = tonumber(redis.call('GET', KEYS[1]) or '0')
if ARGV[2] == '1' and cost > 0 then
  if bal < cost then return {0, tostring(bal)} end
  bal = redis.call('DECRBY', KEYS[1], cost)
  m_credits('charged', cost)
end
local fields = {}
for i = 10, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[2], unpack(fields))
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
redis.call('ZADD', KEYS[8], ARGV[4], ARGV[3])
m_count(ARGV[9], 'submitted', 1)
if ARGV[7] ~= '' then
  redis.call('ZADD', KEYS[5], ARGV[7], ARGV[3])
  redis.call('ZADD', KEYS[6], ARGV[4], ARGV[3])
  redis.call('ZADD', KEYS[7], ARGV[4], ARGV[3])
else
  m_count(ARGV[9], 'cache_hit', 1)
end
if ARGV[6] == '1' then
  redis.call('SET', KEYS[4], ARGV[3] .. '|' .. ARGV[5], 'EX', IDEM_TTL)
end
return {1, tostring(bal)}
""".replace("IDEM_TTL", str(IDEMPOTENCY_TTL_S))
)


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
    in_flight_cap: int | None = None,
    extra: Mapping[str, str] | None = None,
) -> Submitted:
    """Create a job, reserving its credits; or return the Idempotency-Key's
    original job. With ``cached_result`` the job is born completed and free.
    ``in_flight_cap``: at most this many of the owner's jobs queued or
    running on the operation's queue (429 beyond). ``extra``: more fields of
    the record (e.g. ``test``)."""
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
        "token": new_token(),
        "queue": op.queue,
        **(extra or {}),
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
        8,
        db.credits_key(owner),
        db.job_key(job_id),
        db.owner_jobs_key(owner),
        idem_key,
        db.ACTIVE_JOBS,
        db.in_flight_key(owner, op.queue),
        metrics.queued_key(op.queue),
        db.ALL_JOBS,
        str(cost if not hit else 0),
        "1" if billed else "0",
        job_id,
        repr(t),
        fingerprint(op, sha256, {**options, "callback_url": callback_url}, asset_id),
        "1" if idempotency_key else "0",
        "" if hit else repr(t + queue_timeout_s),
        "" if (hit or in_flight_cap is None) else str(in_flight_cap),
        op.name,
        *flat,
    )
    code = int(code)
    if code == 0:
        raise ApiError(400, "Insufficient credits", "insufficient_credits")
    if code == 4:
        raise ApiError(
            429,
            f"You have {value} jobs queued or running on the {op.queue} queue, the most your plan "
            f"allows at once ({in_flight_cap}); wait for one to finish. Nothing was charged",
            "too_many_jobs",
            headers={"Retry-After": "5"},
        )
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


def list_all(
    r: redis.Redis,
    *,
    limit: int = 50,
    status: str | None = None,
    op: str | None = None,
    owner: str | None = None,
) -> list[Job]:
    """Every owner's jobs, newest first, filtered (for operators). Records
    that expired drop out of the index as they are met."""
    out: list[Job] = []
    start, step = 0, 500
    while len(out) < limit:
        ids_ = r.zrevrange(db.ALL_JOBS, start, start + step - 1)
        if not ids_:
            break
        start += len(ids_)
        with r.pipeline(transaction=False) as p:
            for i in ids_:
                p.hgetall(db.job_key(i))
            hashes = p.execute()
        gone = [i for i, h in zip(ids_, hashes, strict=True) if not h]
        if gone:
            r.zrem(db.ALL_JOBS, *gone)
            start -= len(gone)
        for h in hashes:
            if not h:
                continue
            job = Job.from_hash(h)
            if (status and job.status != status) or (op and job.op != op) or (owner and job.owner != owner):
                continue
            out.append(job)
            if len(out) == limit:
                break
    return out


# --------------------------------------------------------------------------- transitions

_START = (
    metrics.LUA
    + """
-- KEYS: job, active zset, running zset, the queue's waiting zset
-- ARGV: job id, now, hard limit s, worker, token, max attempts, busy window s
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 'missing' end
if st ~= 'queued' and st ~= 'running' then return st end
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[5] then return 'stale' end
-- Running with this token: the broker redelivered the message of a process
-- that died. Unless its heartbeat is still fresh: then the attempt is alive
-- and this is a duplicate message (the caller retries it later).
if st == 'running' and tonumber(redis.call('HGET', KEYS[1], 'heartbeat_at') or '0')
   > tonumber(ARGV[2]) - tonumber(ARGV[7]) then
  return 'busy'
end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
if attempts >= tonumber(ARGV[6]) then return 'exhausted' end
redis.call('HSET', KEYS[1], 'status', 'running', 'worker', ARGV[4], 'heartbeat_at', ARGV[2],
           'attempts', attempts + 1)
redis.call('ZREM', KEYS[4], ARGV[1])
local op = redis.call('HGET', KEYS[1], 'op')
if not redis.call('HGET', KEYS[1], 'started_at') then
  redis.call('HSET', KEYS[1], 'started_at', ARGV[2])
  m_observe('wait', op, tonumber(ARGV[2]) - tonumber(redis.call('HGET', KEYS[1], 'created_at')))
end
if attempts > 0 then redis.call('HINCRBY', 'REDELIVERIES', op, 1) end
-- The first deadline holds across attempts: a restart never extends it.
if not redis.call('HGET', KEYS[1], 'deadline') then
  local deadline = tonumber(ARGV[2]) + tonumber(ARGV[3]) + 60
  redis.call('HSET', KEYS[1], 'deadline', deadline)
  redis.call('ZADD', KEYS[2], deadline, ARGV[1])
end
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
return 'ok'
""".replace("REDELIVERIES", metrics.REDELIVERIES)
)

_BEAT = """
-- KEYS: job, running zset; ARGV: job id, token, now, progress ('' = unchanged)
if redis.call('HGET', KEYS[1], 'status') ~= 'running'
   or redis.call('HGET', KEYS[1], 'token') ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], 'heartbeat_at', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
if ARGV[4] ~= '' and tonumber(ARGV[4]) > tonumber(redis.call('HGET', KEYS[1], 'progress') or '0') then
  redis.call('HSET', KEYS[1], 'progress', ARGV[4])
end
return 1
"""

_FINISH = (
    metrics.LUA
    + """
-- KEYS: job, active zset, credits, done channel, running zset, in-flight zset,
--       the queue's waiting zset
-- ARGV: job id, status, now, field (result|error), json, refund (0/1), ttl,
--       token ('' = any: the sweeper and the API)
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 'missing' end
if st ~= 'queued' and st ~= 'running' then return st end
if ARGV[8] ~= '' and redis.call('HGET', KEYS[1], 'token') ~= ARGV[8] then return 'stale' end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'finished_at', ARGV[3], ARGV[4], ARGV[5])
if ARGV[2] == 'completed' then redis.call('HSET', KEYS[1], 'progress', '1') end
if ARGV[6] == '1' and redis.call('HGET', KEYS[1], 'billed') == '1'
   and redis.call('HGET', KEYS[1], 'refunded') ~= '1' then
  local cost = tonumber(redis.call('HGET', KEYS[1], 'cost'))
  redis.call('INCRBY', KEYS[3], cost)
  redis.call('HSET', KEYS[1], 'refunded', '1')
  m_credits('refunded', cost)
end
local op = redis.call('HGET', KEYS[1], 'op')
m_count(op, ARGV[2], 1)
local started = redis.call('HGET', KEYS[1], 'started_at')
if started then m_observe('run', op, tonumber(ARGV[3]) - tonumber(started)) end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[1])
redis.call('ZREM', KEYS[7], ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[7]))
redis.call('PUBLISH', KEYS[4], ARGV[2])
return 'ok'
"""
)

_CANCEL = (
    metrics.LUA
    + """
-- KEYS: job, active zset, credits, done channel, running zset, in-flight zset,
--       the queue's waiting zset
-- ARGV: job id, now, ttl, stale before (heartbeat time)
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 'missing' end
if st ~= 'queued' and st ~= 'running' then return st end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', ARGV[2])
local beat = tonumber(redis.call('HGET', KEYS[1], 'heartbeat_at') or '0')
local refund = st == 'queued' or beat < tonumber(ARGV[4])
if refund and redis.call('HGET', KEYS[1], 'billed') == '1' then
  local cost = tonumber(redis.call('HGET', KEYS[1], 'cost'))
  redis.call('INCRBY', KEYS[3], cost)
  redis.call('HSET', KEYS[1], 'refunded', '1')
  m_credits('refunded', cost)
end
m_count(redis.call('HGET', KEYS[1], 'op'), 'cancelled', 1)
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[1])
redis.call('ZREM', KEYS[7], ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
redis.call('PUBLISH', KEYS[4], 'cancelled')
if st == 'running' and refund then return 'was_stalled' end
return 'was_' .. st
"""
)

_REQUEUE = """
-- KEYS: job, running zset, the queue's waiting zset
-- ARGV: job id, new token, now, stale before ('' = hand back: the running
--       attempt gives the job up itself), old token ('' = any)
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
if ARGV[5] ~= '' and redis.call('HGET', KEYS[1], 'token') ~= ARGV[5] then return 0 end
if ARGV[4] ~= '' and tonumber(redis.call('HGET', KEYS[1], 'heartbeat_at') or '0') >= tonumber(ARGV[4]) then
  return 0
end
if ARGV[4] == '' then
  -- handed back on a graceful shutdown: not an attempt that failed
  redis.call('HINCRBY', KEYS[1], 'attempts', -1)
else
  redis.call('HINCRBY', KEYS[1], 'recoveries', 1)
end
redis.call('HSET', KEYS[1], 'status', 'queued', 'token', ARGV[2], 'worker', '')
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
return 1
"""


def start(
    r: redis.Redis,
    job_id: str,
    token: str,
    *,
    queue: str,
    hard_limit_s: int,
    worker: str,
    max_attempts: int,
    busy_window_s: float,
) -> str:
    """Mark running; returns 'ok', 'stale' (an older attempt's message),
    'busy' (the attempt is alive elsewhere: its heartbeat is younger than
    ``busy_window_s``), 'exhausted' (attempts used up), or the status that
    forbids running it."""
    return r.eval(
        _START,
        4,
        db.job_key(job_id),
        db.ACTIVE_JOBS,
        db.RUNNING_JOBS,
        metrics.queued_key(queue),
        job_id,
        repr(db.now()),
        hard_limit_s,
        worker,
        token,
        max_attempts,
        busy_window_s,
    )


def heartbeat(r: redis.Redis, job_id: str, token: str, progress: float | None = None) -> bool:
    """Refresh the running attempt's heartbeat (and raise its progress, never
    lowering it); False when this attempt should stop: the job was
    cancelled, finished, or handed to another attempt."""
    p = "" if progress is None else f"{min(1.0, max(0.0, float(progress))):.4f}"
    return bool(r.eval(_BEAT, 2, db.job_key(job_id), db.RUNNING_JOBS, job_id, token, repr(db.now()), p))


def set_progress(r: redis.Redis, job_id: str, token: str, progress: float) -> bool:
    """Record progress in [0, 1] (the maximum so far) and a heartbeat; False
    when the attempt should stop (see :func:`heartbeat`)."""
    return heartbeat(r, job_id, token, progress)


def _finish(
    r: redis.Redis,
    job: Job,
    status: str,
    field: str,
    payload: dict,
    refund: bool,
    ttl: int,
    token: str = "",
) -> bool:
    out = r.eval(
        _FINISH,
        7,
        *_end_keys(job),
        job.id,
        status,
        repr(db.now()),
        field,
        json.dumps(payload),
        "1" if refund else "0",
        ttl,
        token,
    )
    return out == "ok"


def _queue_of(job: Job) -> str:
    from shared.operations import OPERATIONS

    op = OPERATIONS.get(job.op)
    return op.queue if op else "analysis"


def _end_keys(job: Job) -> list[str]:
    """The keys a job's end (finish or cancel) touches, in the scripts' order."""
    return [
        db.job_key(job.id),
        db.ACTIVE_JOBS,
        db.credits_key(job.owner),
        db.job_done_channel(job.id),
        db.RUNNING_JOBS,
        db.in_flight_key(job.owner, _queue_of(job)),
        metrics.queued_key(_queue_of(job)),
    ]


def complete(
    r: redis.Redis, job: Job, result: dict, *, ttl: int, cache_ttl: int, op: Operation, token: str = ""
) -> bool:
    """Record the result and cache it (for as long as the source asset lives).
    With ``token``, only while that attempt is still the job's."""
    if cache_ttl > 0 and op.cache:
        ck = db.cache_key(op.cache_key(job.sha256, job.options, job.asset_id))
        with r.pipeline(transaction=True) as p:
            p.set(ck, json.dumps(result), ex=cache_ttl)
            p.sadd(db.cache_index_key(job.sha256), ck)
            p.expire(db.cache_index_key(job.sha256), cache_ttl, gt=True)
            p.expire(db.cache_index_key(job.sha256), cache_ttl, nx=True)
            p.execute()
    return _finish(r, job, "completed", "result", result, False, ttl, token)


def fail(r: redis.Redis, job: Job, error: ApiError, *, refund: bool, ttl: int, token: str = "") -> bool:
    return _finish(r, job, "failed", "error", error.to_dict(), refund, ttl, token)


def cancel(r: redis.Redis, job: Job, *, ttl: int, stale_s: float) -> str:
    """Returns the status the job had ('was_queued' / 'was_running', or
    'was_stalled' for a running job whose worker is gone — refunded), or
    raises 409 when it had already finished."""
    t = db.now()
    out = r.eval(
        _CANCEL,
        7,
        *_end_keys(job),
        job.id,
        repr(t),
        ttl,
        repr(t - stale_s),
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


def hand_back(r: redis.Redis, job_id: str, token: str) -> str | None:
    """The running attempt gives the job back (its worker is shutting down):
    queued again with a new token, the attempt not counted. Returns the new
    token, or None if the attempt no longer owned the job."""
    new = new_token()
    queued = metrics.queued_key(_queue_of(get_any(r, job_id)))
    done = r.eval(
        _REQUEUE, 3, db.job_key(job_id), db.RUNNING_JOBS, queued, job_id, new, repr(db.now()), "", token
    )
    return new if done else None


@dataclass(frozen=True)
class Recovery:
    requeued: list[tuple[str, str]]  # (job id, new token): to send to their queues
    failed: list[str]  # attempts exhausted: failed, refunded


def recover_stalled(
    r: redis.Redis, *, stale_s: float, max_attempts: int, ttl: int, now: float | None = None
) -> Recovery:
    """Running jobs whose heartbeat is older than ``stale_s``: back to queued
    with a new token (the caller sends them to their queues), or failed and
    refunded once ``max_attempts`` were used."""
    t = db.now() if now is None else now
    requeued: list[tuple[str, str]] = []
    failed: list[str] = []
    for job_id in r.zrangebyscore(db.RUNNING_JOBS, "-inf", t - stale_s, start=0, num=1000):
        h = r.hgetall(db.job_key(job_id))
        if not h or h.get("status") != "running":
            r.zrem(db.RUNNING_JOBS, job_id)
            continue
        job = Job.from_hash(h)
        if job.attempts >= max_attempts:
            err = ApiError(
                500,
                f"The job kept crashing its worker ({job.attempts} attempts, e.g. out of memory); "
                "it was not charged",
                "job_crashed",
            )
            if fail(r, job, err, refund=True, ttl=ttl):
                failed.append(job_id)
            continue
        new = new_token()
        queued = metrics.queued_key(_queue_of(job))
        if r.eval(
            _REQUEUE,
            3,
            db.job_key(job_id),
            db.RUNNING_JOBS,
            queued,
            job_id,
            new,
            repr(t),
            repr(t - stale_s),
            "",
        ):
            requeued.append((job_id, new))
    return Recovery(requeued, failed)


def pending_sends(r: redis.Redis) -> list[tuple[str, str]]:
    """Requeued jobs whose message is not sent yet (the broker was down)."""
    out = []
    for job_id, token in r.hgetall(db.PENDING_SENDS).items():
        out.append((job_id, token))
    return out


def mark_pending_send(r: redis.Redis, job_id: str, token: str) -> None:
    r.hset(db.PENDING_SENDS, job_id, token)


def clear_pending_send(r: redis.Redis, job_id: str) -> None:
    r.hdel(db.PENDING_SENDS, job_id)


_RECORD_CALLBACK = """
-- KEYS: job; ARGV: HTTP status ('' = none), error ('' = none), delivered at ('' = not delivered)
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'cb_attempts', 1)
redis.call('HSET', KEYS[1], 'cb_last_status', ARGV[1], 'cb_last_error', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'cb_delivered_at', ARGV[3]) end
return 1
"""


def record_callback(
    r: redis.Redis, job_id: str, *, status: int | None, error: str = "", delivered_at: float | None = None
) -> None:
    """Count one callback attempt and its outcome (``callback_status``): the
    receiver's HTTP status if it answered, an error a person can act on if the
    attempt did not deliver, the time if it did. A job record that expired
    meanwhile is not brought back."""
    r.eval(
        _RECORD_CALLBACK,
        1,
        db.job_key(job_id),
        "" if status is None else str(status),
        error,
        "" if delivered_at is None else repr(delivered_at),
    )


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


def watch(
    r: redis.Redis,
    job_id: str,
    *,
    max_s: float,
    heartbeat_s: float,
    poll_s: float = 0.5,
) -> Iterator[Job | None]:
    """Follow a job: yields it now, then each time its status or progress
    changes, until it has finished (its final state is the last yield) or
    ``max_s`` seconds passed; yields None after ``heartbeat_s`` seconds
    without a change (for keep-alives). Stops if the record disappears.

    It polls two fields every ``poll_s`` seconds — a cheap read — rather than
    holding a pub/sub connection per watcher. ``time.sleep`` is looked up at
    each call, so gevent's patched (cooperative) one is used: a watcher parks
    a greenlet, not a worker."""
    start = time.monotonic()
    last: tuple[str, str] | None = None
    quiet_since = start
    while True:
        status, progress = r.hmget(db.job_key(job_id), "status", "progress")
        if status is None:
            return
        now = time.monotonic()
        if (status, progress) != last:
            last, quiet_since = (status, progress), now
            job = get_any(r, job_id)
            yield job
            if job.finished:
                return
        elif now - quiet_since >= heartbeat_s:
            quiet_since = now
            yield None
        if now - start >= max_s:
            return
        time.sleep(poll_s)


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
