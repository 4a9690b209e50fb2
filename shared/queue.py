"""The Celery configuration, in one place, for both sides.

``workers.app`` builds the worker's app from it; the web side builds a
client-only app from it to enqueue by task name (it never imports workers).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
from celery import Celery

from shared import db, fleet, metrics, operations
from shared.settings import Settings

#: The Celery queues: analysis and heavy from the registry, and maintenance.
QUEUES = tuple(sorted({op.queue for op in operations.OPERATIONS.values()} | {"maintenance"}))
# kombu's Redis transport keeps a queue's messages in one list per priority step.
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def make_celery(settings: Settings, include: list[str] | None = None) -> Celery:
    app = Celery("audioq", broker=settings.effective_broker_url, include=include or [])
    app.conf.update(
        # JSON only: tasks take ids, never bytes or pickled objects.
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # Job state lives in the application Redis; Celery keeps no results,
        # so there is one source of truth.
        task_ignore_result=True,
        # Acknowledged only when finished: if a worker process dies, the task
        # is redelivered (tasks are safe to run twice).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # Longer than any task's hard time limit, or the broker would hand a
        # still-running task to a second worker.
        broker_transport_options={"visibility_timeout": max(2 * 3600, 2 * operations.longest_time_limit())},
        broker_connection_retry_on_startup=True,
        task_default_queue="analysis",
        task_routes={"audioq.maintenance.*": {"queue": "maintenance"}},
        worker_hijack_root_logger=False,
        # Each pool process warms up (JIT compilation) before taking work; the
        # default 4 s allowance for a child to come up is too short for that.
        worker_proc_alive_timeout=120,
        # Flower needs task events.
        worker_send_task_events=True,
        task_send_sent_event=True,
        timezone="UTC",
    )
    return app


def enqueue(app: Celery, op: operations.Operation, job_id: str, token: str, trace_id: str) -> None:
    """Send an attempt of a job to its queue (``token``: the attempt's, see
    ``shared/jobs.py``), with the operation's time limits."""
    app.send_task(
        op.task,
        args=[job_id, token],
        queue=op.queue,
        soft_time_limit=op.soft_time_limit,
        time_limit=op.time_limit,
        headers={"trace_id": trace_id},
    )


CALLBACK_TASK = "audioq.callbacks.deliver_callback"


def notify(app: Celery, job_id: str) -> None:
    """Queue the delivery of a finished job's callback (retried on its own)."""
    app.send_task(CALLBACK_TASK, args=[job_id], queue="maintenance")


INDEX_TASK = "audioq.identify.index_asset"


def index_asset(app: Celery, asset_id: str) -> None:
    """Queue fingerprinting a new asset for identify."""
    app.send_task(INDEX_TASK, args=[asset_id], queue="analysis")


@dataclass(frozen=True)
class QueueStats:
    queue: str
    depth: int  # messages waiting in the broker
    jobs_waiting: int  # jobs queued (not yet started) on it
    oldest_age_s: float  # how long the oldest waiting job has waited
    workers_online: int


def broker_client(settings: Settings) -> redis.Redis:
    """The broker's Redis (the design uses Redis as the broker)."""
    return redis.Redis.from_url(settings.effective_broker_url, socket_connect_timeout=2, socket_timeout=5)


def stats(r: redis.Redis, broker: redis.Redis, now: float | None = None) -> list[QueueStats]:
    """Depth, waiting jobs, oldest wait and workers online, per queue: what an
    operator (``audioq queues``) and an autoscaler (``/metrics``) look at."""
    t = db.now() if now is None else now
    with broker.pipeline(transaction=False) as p:
        for q in QUEUES:
            for suffix in _PRIORITY_SUFFIXES:
                p.llen(q + suffix)
        lengths = p.execute()
    online = fleet.online(r, now=t)
    out = []
    for i, q in enumerate(QUEUES):
        depth = sum(lengths[i * len(_PRIORITY_SUFFIXES) : (i + 1) * len(_PRIORITY_SUFFIXES)])
        out.append(
            QueueStats(
                queue=q,
                depth=int(depth),
                jobs_waiting=metrics.queued_count(r, q),
                oldest_age_s=metrics.oldest_queued_age(r, q, t),
                workers_online=sum(1 for w in online if q in w.queues),
            )
        )
    return out
