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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

ANALYSIS_SR = features.ANALYSIS_SR  # why 22.05 kHz: see workers/dsp/features.py


class JobCancelled(Exception):
    """The job was cancelled while it ran: stop quietly."""


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

    def progress(self, fraction: float) -> None:
        """Report progress in [0, 1]; raises JobCancelled if the job was cancelled."""
        if not jobs.set_progress(context.get().redis, self.job.id, fraction):
            raise JobCancelled(self.job.id)

    def store_file(self, filename: str, path: Path, content_type: str) -> dict:
        """Keep a file the job wrote as a derived object of its asset; returns
        the reference to put in the result (shown as a link)."""
        op = operations.get(self.job.op)
        name = outputs.object_name(self.asset.id, op.name, op.output_digest(self.job.options), filename)
        return outputs.put_file(context.get().storage, name, path, content_type)


Compute = Callable[[Audio, dict, JobContext], dict]


def job_task(op_name: str) -> Callable[[Compute], Any]:
    """Register ``compute`` as the Celery task of operation ``op_name``."""
    op = operations.get(op_name)

    def decorate(compute: Compute):
        @shared_task(
            name=op.task,
            bind=True,
            queue=op.queue,
            acks_late=True,
            soft_time_limit=op.soft_time_limit,
            time_limit=op.time_limit,
            autoretry_for=TRANSIENT,
            retry_backoff=True,
            retry_backoff_max=30,
            max_retries=3,
        )
        def task(self, job_id: str) -> None:
            final_try = self.request.retries >= self.max_retries
            run_job(op, compute, job_id, final_try=final_try, notify=self.app)

        task.__doc__ = compute.__doc__
        task.compute = compute  # type: ignore[attr-defined]  # benchmarks and tests call it directly
        return task

    return decorate


def run_job(
    op: operations.Operation,
    compute: Compute,
    job_id: str,
    *,
    final_try: bool = True,
    notify: Celery | None = None,
) -> None:
    """Run one job: the lifecycle described in the module docstring.
    ``notify``: the app that queues the callback of a finished job (the
    task's own app; None to skip, as in-process tests do)."""
    ctx = context.get()
    r = ctx.redis
    state = jobs.start(r, job_id, hard_limit_s=op.time_limit, worker=f"{socket.gethostname()}:{os.getpid()}")
    if state != "ok":
        log.info("job %s is %s: nothing to do", job_id, state)
        return
    job = jobs.get_any(r, job_id)
    logs.trace_id.set(job.trace_id or "-")
    try:
        _run(op, compute, job, final_try)
    finally:
        if notify is not None and job.callback_url and jobs.get_any(r, job_id).finished:
            queue.notify(notify, job_id)


def _run(op: operations.Operation, compute: Compute, job: jobs.Job, final_try: bool) -> None:
    ctx = context.get()
    r = ctx.redis
    job_id = job.id
    ttl = ctx.settings.job_ttl_s
    try:
        try:
            asset = assets.get(r, job.owner, job.asset_id)
        except ApiError:
            raise ApiError(
                410, "The source asset expired before the job could run", "asset_expired"
            ) from None
        with tempfile.TemporaryDirectory(prefix="audioq-job-") as d:
            workdir = Path(d)
            src = workdir / "source"
            try:
                ctx.storage.download(asset.object_name, str(src))
            except ObjectNotFound:
                raise ApiError(
                    500, "The source audio is missing from storage; the job was not charged"
                ) from None
            result = compute(Audio(src, audio_info(asset)), job.options, JobContext(job, asset, workdir))
        jobs.complete(r, job, result, ttl=ttl, cache_ttl=int(asset.expires_at - db.now()), op=op)
    except JobCancelled:
        log.info("job %s was cancelled while running", job_id)
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
        )
        raise
    except TRANSIENT:
        if final_try:
            jobs.fail(
                r,
                job,
                ApiError(503, "A backing service was unavailable; the job was not charged. Try again"),
                refund=True,
                ttl=ttl,
            )
        raise  # autoretry_for retries it; the job stays running meanwhile
    except DspError as e:
        # The audio or the options the caller sent cannot be processed: the
        # caller's side, so not refunded.
        code = "invalid_option" if isinstance(e, OptionOutOfRange) else "unprocessable_audio"
        jobs.fail(r, job, ApiError(422, e.message, code), refund=False, ttl=ttl)
        raise
    except ApiError as e:
        # 422: the input itself cannot be processed (the caller's side); anything
        # else is ours and refunded.
        jobs.fail(r, job, e, refund=e.status != 422, ttl=ttl)
        raise
    except Exception:
        log.exception("job %s failed", job_id)
        jobs.fail(
            r,
            job,
            ApiError(500, "The job failed on our side and was not charged; it has been logged"),
            refund=True,
            ttl=ttl,
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
