"""Which workers are online, on which queues, and whether they have the
models their queues need: each worker's main process records itself here
every few seconds (``workers/app.py``); the API's ``/readyz``, the operator
CLI (``audioq queues``, ``audioq health worker``) and the metrics read it.

| key                     | type | TTL  | meaning                                        |
|-------------------------|------|------|------------------------------------------------|
| aq:fleet:{node}         | hash | 30 s | queues, missing_models, host, pid, seen_at     |
| aq:fleet                | zset | none | node -> last seen (pruned when read)           |
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import redis

from shared import db, operations

#: A worker not seen for this long is offline (it records itself every 10 s).
ONLINE_S = 30


def node_key(node: str) -> str:
    return f"{db.PREFIX}fleet:{node}"


FLEET = f"{db.PREFIX}fleet"


@dataclass(frozen=True)
class Worker:
    node: str  # Celery node name, e.g. heavy@host
    host: str
    pid: int
    queues: list[str]
    missing_models: list[str]
    seen_at: float

    @property
    def ready(self) -> bool:
        return not self.missing_models


def models_needed(queues: list[str]) -> set[str]:
    """Model files the operations on ``queues`` need (registry ``models``)."""
    return {m for op in operations.OPERATIONS.values() if op.queue in queues for m in op.models}


def missing_models(model_dir: str, queues: list[str]) -> list[str]:
    """The needed model files absent from ``model_dir`` (``audioq models fetch``)."""
    return sorted(m for m in models_needed(queues) if not (Path(model_dir) / m).is_file())


def record(r: redis.Redis, w: Worker) -> None:
    with r.pipeline(transaction=True) as p:
        p.hset(
            node_key(w.node),
            mapping={
                "host": w.host,
                "pid": w.pid,
                "queues": json.dumps(w.queues),
                "missing_models": json.dumps(w.missing_models),
                "seen_at": repr(w.seen_at),
            },
        )
        p.expire(node_key(w.node), ONLINE_S)
        p.zadd(FLEET, {w.node: w.seen_at})
        p.execute()


def forget(r: redis.Redis, node: str) -> None:
    with r.pipeline(transaction=True) as p:
        p.delete(node_key(node))
        p.zrem(FLEET, node)
        p.execute()


def online(r: redis.Redis, now: float | None = None) -> list[Worker]:
    """Workers seen within :data:`ONLINE_S`."""
    t = db.now() if now is None else now
    r.zremrangebyscore(FLEET, "-inf", t - ONLINE_S)
    out = []
    for node in r.zrange(FLEET, 0, -1):
        h = r.hgetall(node_key(node))
        if not h:
            continue
        out.append(
            Worker(
                node=node,
                host=h.get("host", ""),
                pid=int(h.get("pid") or 0),
                queues=json.loads(h.get("queues") or "[]"),
                missing_models=json.loads(h.get("missing_models") or "[]"),
                seen_at=float(h.get("seen_at") or 0),
            )
        )
    return out
