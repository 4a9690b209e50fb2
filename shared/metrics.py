"""Fleet-wide counters and histograms, kept in Redis.

Why in Redis: job outcomes, run times, queue waits, credits and storage
happen on many worker hosts and API processes; each transition already runs
one Lua script on the application Redis, so the same script counts it,
exactly once, whatever the number of hosts (a per-process Prometheus
registry on each worker would need every worker scraped and summed, and
loses counts when a process dies). The API's ``/metrics`` reads these keys
(``web/metrics.py``) beside its own per-process request metrics.

| key                 | type | fields                                                    |
|---------------------|------|-----------------------------------------------------------|
| aq:m:jobs           | hash | "{op}|{status}" -> count (submitted, cache_hit, completed, failed, cancelled) |
| aq:m:redeliveries   | hash | op -> attempts after the first (crash, lost worker)       |
| aq:m:credits        | hash | charged, refunded                                         |
| aq:m:run:{op}       | hash | bucket upper bound -> count, "sum", "count" (run seconds)  |
| aq:m:wait:{op}      | hash | as run: seconds from submit to first start                |
| aq:m:storage        | hash | assets, asset_bytes (gauges); expiry_sweeps,              |
|                     |      | expired_objects, reconcile_orphans (counters)             |
| aq:queued:{queue}   | zset | job id -> when it (re)entered the queue                  |
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from shared import db

JOBS = f"{db.PREFIX}m:jobs"
REDELIVERIES = f"{db.PREFIX}m:redeliveries"
CREDITS = f"{db.PREFIX}m:credits"
STORAGE = f"{db.PREFIX}m:storage"

# Histogram buckets (upper bounds, seconds). Run times span a 0.1 s cached
# analysis to a 30-minute separation; waits span an idle fleet to a backlog.
RUN_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)


def run_key(op: str) -> str:
    return f"{db.PREFIX}m:run:{op}"


def wait_key(op: str) -> str:
    return f"{db.PREFIX}m:wait:{op}"


def queued_key(queue: str) -> str:
    return f"{db.PREFIX}queued:{queue}"


def _lua_list(values: tuple[float, ...]) -> str:
    return "{" + ", ".join(repr(float(v)) for v in values) + "}"


#: Functions the job scripts call (prepended to each). Keys are built here
#: from the prefix, as the expiry script does: one Redis, not a cluster.
LUA = (
    """
local function m_count(op, status, n)
  redis.call('HINCRBY', 'JOBS', op .. '|' .. status, n)
end
local function m_observe(kind, op, v)
  local bounds = kind == 'run' and RUN or WAIT
  local key = 'PREFIXm:' .. kind .. ':' .. op
  local slot = '+Inf'
  for _, b in ipairs(bounds) do
    if v <= b then slot = tostring(b); break end
  end
  redis.call('HINCRBY', key, slot, 1)
  redis.call('HINCRBY', key, 'count', 1)
  redis.call('HINCRBYFLOAT', key, 'sum', v)
end
local function m_credits(field, n)
  if n > 0 then redis.call('HINCRBY', 'CREDITS', field, n) end
end
""".replace("JOBS", JOBS)
    .replace("CREDITS", CREDITS)
    .replace("PREFIX", db.PREFIX)
    .replace("RUN", _lua_list(RUN_BUCKETS))
    .replace("WAIT", _lua_list(WAIT_BUCKETS))
)


def bump_storage(r: redis.Redis, **deltas: float) -> None:
    """Add to the storage counters and gauges (``assets``, ``asset_bytes``,
    ``expiry_sweeps``, ``expired_objects``, ``reconcile_orphans``)."""
    with r.pipeline(transaction=False) as p:
        for field, n in deltas.items():
            if n:
                p.hincrbyfloat(STORAGE, field, n)
        p.execute()


@dataclass(frozen=True)
class Histogram:
    buckets: list[tuple[float, int]]  # (upper bound, cumulative count), +Inf last
    count: int
    sum: float


def _slot(bound: float) -> str:
    """A bucket's field name as the script writes it: Lua 5.1's tostring,
    i.e. C's %.14g ("1", not "1.0")."""
    return format(float(bound), ".14g")


def _histogram(h: dict[str, str], bounds: tuple[float, ...]) -> Histogram:
    cumulative, out = 0, []
    for b in (*bounds, float("inf")):
        cumulative += int(h.get("+Inf" if b == float("inf") else _slot(b), 0))
        out.append((b, cumulative))
    return Histogram(out, int(h.get("count", 0)), float(h.get("sum", 0.0)))


@dataclass(frozen=True)
class Snapshot:
    jobs: dict[tuple[str, str], int]  # (op, status) -> count
    redeliveries: dict[str, int]
    credits: dict[str, int]
    run: dict[str, Histogram]
    wait: dict[str, Histogram]
    storage: dict[str, float]


def snapshot(r: redis.Redis, ops: list[str]) -> Snapshot:
    """Everything in one round trip."""
    with r.pipeline(transaction=False) as p:
        p.hgetall(JOBS)
        p.hgetall(REDELIVERIES)
        p.hgetall(CREDITS)
        p.hgetall(STORAGE)
        for op in ops:
            p.hgetall(run_key(op))
            p.hgetall(wait_key(op))
        jobs_h, redel, credits, storage, *hists = p.execute()
    jobs: dict[tuple[str, str], int] = {}
    for k, v in jobs_h.items():
        op, _, status = k.rpartition("|")
        jobs[(op, status)] = int(v)
    return Snapshot(
        jobs=jobs,
        redeliveries={k: int(v) for k, v in redel.items()},
        credits={k: int(v) for k, v in credits.items()},
        run={op: _histogram(hists[2 * i], RUN_BUCKETS) for i, op in enumerate(ops)},
        wait={op: _histogram(hists[2 * i + 1], WAIT_BUCKETS) for i, op in enumerate(ops)},
        storage={k: float(v) for k, v in storage.items()},
    )


def oldest_queued_age(r: redis.Redis, queue: str, now: float) -> float:
    """Seconds the oldest job waiting on ``queue`` has waited (0 when none)."""
    first = r.zrange(queued_key(queue), 0, 0, withscores=True)
    return max(0.0, now - float(first[0][1])) if first else 0.0


def queued_count(r: redis.Redis, queue: str) -> int:
    return int(r.zcard(queued_key(queue)))
