"""The job lifecycle every processing task shares.

A task module declares only the computation::

    @job_task("bpm")
    def analyze_tempo(audio: Audio, options: dict, ctx: JobContext) -> dict:
        return tempo.estimate_tempo(audio.mono(), audio.analysis_sr).to_dict()

and ``job_task`` turns it into a Celery task named, queued and time-limited
as the operation's registry entry says. Tasks are declared with
``shared_task``: importing this module builds no Celery app and reads no
environment, so the computations can be imported (and benchmarked) alone;
``workers.app`` builds the one app and the tasks attach to it. The task takes a job id, checks the
job's state before acting (a finished or cancelled job is not redone; a
redelivered one restarts), downloads and decodes the source once, calls the
computation, stores the result, and always leaves a final state: failures
that are not the caller's fault are refunded, then re-raised.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import redis
import soxr
from celery import Celery, shared_task
from celery.exceptions import SoftTimeLimitExceeded

from shared import assets, audio, db, jobs, logs, operations, outputs, queue
from shared.errors import ApiError, ObjectNotFound, StorageError
from workers import codec, context
from workers.dsp import features
from workers.dsp.errors import DspError, OptionOutOfRange

log = logging.getLogger(__name__)

TRANSIENT = (StorageError, redis.ConnectionError, redis.TimeoutError)
T = TypeVar("T")

ANALYSIS_SR = features.ANALYSIS_SR  # why 22.05 kHz: see workers/dsp/features.py


class JobCancelled(Exception):
    """The job was cancelled, or handed to another attempt, while this one
    ran: stop quietly."""


class HandBack(Exception):
    """The worker is shutting down: give the job back to the queue."""


class Attempt:
    """One running attempt of a job: its token, and a heartbeat thread that
    keeps the job's ``heartbeat_at`` fresh every ``interval_s`` whatever the
    computation is doing (numba and onnxruntime release the GIL, so a busy
    job still beats). It learns from the heartbeat whether the attempt should
    stop (cancelled, or given to another attempt), and from the worker's
    draining flag whether to hand the job back."""

    def __init__(self, r: redis.Redis, job_id: str, token: str, interval_s: float, drain_key: str) -> None:
        self.r = r
        self.job_id = job_id
        self.token = token
        self.interval_s = interval_s
        self.drain_key = drain_key
        self.stopped = threading.Event()  # the job is no longer this attempt's
        self.draining = threading.Event()  # the worker is shutting down
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> Attempt:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join(timeout=5)

    def _beat(self) -> None:
        while not self._done.wait(self.interval_s):
            try:
                if not jobs.heartbeat(self.r, self.job_id, self.token):
                    self.stopped.set()
                if self.drain_key and self.r.exists(self.drain_key):
                    self.draining.set()
            except redis.RedisError as e:  # a Redis outage: beat again next time
                log.warning("heartbeat of %s failed: %s", self.job_id, e)

    def check(self) -> None:
        if self.stopped.is_set():
            raise JobCancelled(self.job_id)
        if self.draining.is_set():
            raise HandBack(self.job_id)


class Audio:
    """The job's source audio, decoded once; derived views computed on demand."""

    analysis_sr = ANALYSIS_SR

    def __init__(self, path: Path, info: audio.AudioInfo) -> None:
        self.path = path
        self.info = info
        # Decoded views live on the instance, so they die with it when the
        # job ends (a cache on the class would keep the last jobs' arrays).
        self._native: tuple[np.ndarray, int] | None = None
        self._mono: dict[int, np.ndarray] = {}

    @property
    def native(self) -> tuple[np.ndarray, int]:
        """(samples (frames, channels) float32, sample rate) as stored."""
        if self._native is None:
            self._native = codec.decode(self.path, self.info)
        return self._native

    def mono(self, sr: int = ANALYSIS_SR) -> np.ndarray:
        """Downmixed float32 mono at ``sr`` Hz (soxr, high quality)."""
        if sr not in self._mono:
            x, native_sr = self.native
            # A matrix-vector product downmixes ~10x faster than mean(axis=1).
            y = x @ np.full(x.shape[1], 1.0 / x.shape[1], np.float32) if x.shape[1] > 1 else x[:, 0]
            if native_sr != sr:
                y = soxr.resample(y, native_sr, sr, quality="HQ").astype(np.float32, copy=False)
            self._mono[sr] = np.ascontiguousarray(y, dtype=np.float32)
        return self._mono[sr]


@dataclass
class JobContext:
    job: jobs.Job
    asset: assets.Asset
    workdir: Path
    attempt: Attempt | None = None

    def progress(self, fraction: float) -> None:
        """Report progress in [0, 1] (never lowered: the job shows the maximum
        of all its attempts). Raises JobCancelled if the job was cancelled or
        given to another attempt, HandBack if the worker is shutting down."""
        if self.attempt is not None:
            self.attempt.check()
            token = self.attempt.token
        else:
            token = self.job.token
        ok = transient_retry(lambda: jobs.set_progress(context.get().redis, self.job.id, token, fraction))
        if not ok:
            raise JobCancelled(self.job.id)

    def store_file(self, filename: str, path: Path, content_type: str) -> dict:
        """Keep a file the job wrote as a derived object of its asset; returns
        the reference to put in the result (shown as a link)."""
        op = operations.get(self.job.op)
        name = outputs.object_name(self.asset.id, op.name, op.output_digest(self.job.options), filename)
        return transient_retry(lambda: outputs.put_file(context.get().storage, name, path, content_type))


Compute = Callable[[Audio, dict, JobContext], dict]


def job_task(op_name: str) -> Callable[[Compute], Any]:
    """Register ``compute`` as the Celery task of operation ``op_name``.

    Reliability, stated here for every job task: acknowledged late (a lost
    process's message is redelivered: safe, see ``shared/jobs.py``), time
    limits from the registry, no Celery-level autoretry — transient failures
    are retried in the process over :data:`TRANSIENT_WINDOW_S`, a duplicate
    message of a live attempt is retried later, and attempts are bounded by
    ``AUDIOQ_JOB_MAX_ATTEMPTS``."""
    op = operations.get(op_name)

    def decorate(compute: Compute):
        @shared_task(
            name=op.task,
            bind=True,
            queue=op.queue,
            acks_late=True,
            soft_time_limit=op.soft_time_limit,
            time_limit=op.time_limit,
            max_retries=None,  # only 'busy' retries, bounded by the job's own life
        )
        def task(self, job_id: str, token: str = "") -> None:
            outcome = run_job(op, compute, job_id, token, app=self.app, worker=self.request.hostname or "")
            if outcome == "busy":
                raise self.retry(countdown=context.get().settings.job_busy_window_s)

        task.__doc__ = compute.__doc__
        task.compute = compute  # type: ignore[attr-defined]  # benchmarks and tests call it directly
        return task

    return decorate


#: How long transient failures of Redis or S3 inside a job are retried
#: (bounded exponential backoff) before the job fails, refunded.
TRANSIENT_WINDOW_S = 90.0


def transient_retry(fn: Callable[[], T], window_s: float | None = None) -> T:
    """``fn()``, retried on a transient Redis/S3 failure with backoff 1, 2, 4,
    ... 15 s until ``window_s`` (default :data:`TRANSIENT_WINDOW_S`) has passed."""
    deadline = time.monotonic() + (TRANSIENT_WINDOW_S if window_s is None else window_s)
    delay = 1.0
    while True:
        try:
            return fn()
        except TRANSIENT as e:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("transient failure (%s); retrying in %.0f s", e, delay)
            time.sleep(delay)
            delay = min(15.0, delay * 2)


def run_job(
    op: operations.Operation,
    compute: Compute,
    job_id: str,
    token: str = "",
    *,
    app: Celery | None = None,
    worker: str = "",
) -> str:
    """Run one attempt of a job: the lifecycle described in the module
    docstring. ``token``: the attempt token the message carried ("" = the
    job's current one, for in-process callers). ``app``: the Celery app that
    queues callbacks and hand-backs (None: in-process tests). Returns 'ok',
    'busy' (retry the message later) or the reason nothing ran."""
    ctx = context.get()
    r = ctx.redis
    settings = ctx.settings
    if not token:
        token = jobs.get_any(r, job_id).token
    state = transient_retry(
        lambda: jobs.start(
            r,
            job_id,
            token,
            queue=op.queue,
            hard_limit_s=op.time_limit,
            worker=f"{worker or socket.gethostname()}:{os.getpid()}",
            max_attempts=settings.job_max_attempts,
            busy_window_s=settings.job_busy_window_s,
        )
    )
    job = jobs.get_any(r, job_id)
    if state == "exhausted":
        err = ApiError(
            500,
            f"The job kept crashing its worker ({job.attempts} attempts, e.g. out of memory); "
            "it was not charged",
            "job_crashed",
        )
        jobs.fail(r, job, err, refund=True, ttl=settings.job_ttl_s)
        _notify(app, job)
        return state
    if state != "ok":
        log.info("job %s: %s, nothing to do", job_id, state)
        return state
    logs.trace_id.set(job.trace_id or "-")
    drain_key = db.draining_key(worker) if worker else ""
    try:
        with Attempt(r, job_id, token, settings.job_heartbeat_s, drain_key) as attempt:
            _run(op, compute, job, attempt, app)
    finally:
        _notify(app, jobs.get_any(r, job_id))
    return "ok"


def _notify(app: Celery | None, job: jobs.Job) -> None:
    if app is not None and job.callback_url and job.finished:
        queue.notify(app, job.id)


def _run(
    op: operations.Operation, compute: Compute, job: jobs.Job, attempt: Attempt, app: Celery | None
) -> None:
    ctx = context.get()
    r = ctx.redis
    job_id = job.id
    ttl = ctx.settings.job_ttl_s
    token = attempt.token
    try:
        try:
            asset = transient_retry(lambda: assets.get(r, job.owner, job.asset_id))
        except ApiError:
            raise ApiError(
                410, "The source asset expired before the job could run", "asset_expired"
            ) from None
        with tempfile.TemporaryDirectory(prefix="audioq-job-") as d:
            workdir = Path(d)
            src = workdir / "source"
            try:
                transient_retry(lambda: ctx.storage.download(asset.object_name, str(src)))
            except ObjectNotFound:
                raise ApiError(
                    500, "The source audio is missing from storage; the job was not charged"
                ) from None
            result = compute(
                Audio(src, audio_info(asset)), job.options, JobContext(job, asset, workdir, attempt)
            )
        attempt.check()
        cache_ttl = int(asset.expires_at - db.now())
        transient_retry(
            lambda: jobs.complete(r, job, result, ttl=ttl, cache_ttl=cache_ttl, op=op, token=token)
        )
    except JobCancelled:
        log.info("job %s was cancelled or given to another attempt while running", job_id)
    except HandBack:
        new = jobs.hand_back(r, job_id, token)
        if new is not None and app is not None:
            queue.enqueue(app, op, job_id, new, job.trace_id)
        log.info("job %s handed back to the queue: the worker is shutting down", job_id)
    except SoftTimeLimitExceeded:
        jobs.fail(
            r,
            job,
            ApiError(
                504,
                f"The job exceeded its time limit of {op.soft_time_limit} s; it was not charged",
                "job_timeout",
            ),
            refund=True,
            ttl=ttl,
            token=token,
        )
        raise
    except TRANSIENT:
        jobs.fail(
            r,
            job,
            ApiError(
                503,
                "A backing service stayed unavailable; the job was not charged. Try again",
                "service_unavailable",
            ),
            refund=True,
            ttl=ttl,
            token=token,
        )
        raise
    except DspError as e:
        # The audio or the options the caller sent cannot be processed: the
        # caller's side, so not refunded.
        code = "invalid_option" if isinstance(e, OptionOutOfRange) else "unprocessable_audio"
        jobs.fail(r, job, ApiError(422, e.message, code), refund=False, ttl=ttl, token=token)
        raise
    except ApiError as e:
        # 422: the input itself cannot be processed (the caller's side); anything
        # else is ours and refunded.
        jobs.fail(r, job, e, refund=e.status != 422, ttl=ttl, token=token)
        raise
    except Exception:
        log.exception("job %s failed", job_id)
        jobs.fail(
            r,
            job,
            ApiError(500, "The job failed on our side and was not charged; it has been logged"),
            refund=True,
            ttl=ttl,
            token=token,
        )
        raise


def audio_info(asset: assets.Asset) -> audio.AudioInfo:
    return audio.AudioInfo(
        format=asset.format,
        mime_type=asset.content_type,
        duration_s=asset.duration_s,
        sample_rate=asset.sample_rate,
        channels=asset.channels,
    )
