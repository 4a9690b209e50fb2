"""The job state machine and the task runner, in-process against real Redis and S3."""

from __future__ import annotations

import pytest
from audiogen import wav
from celery.exceptions import SoftTimeLimitExceeded

from shared import db, jobs, keys, operations
from shared.errors import ApiError
from workers.runner import run_job


@pytest.fixture
def job_on_asset(client, api_key, upload, r, settings):
    """``make(op="lufs", credits=5) -> (key, job)``: a queued job, credits reserved."""

    def make(op_name: str = "lufs", credits: int = 5):
        key = api_key(credits=credits)
        aid = upload(key, wav(1.0, seed=61))
        sha = r.hget(db.asset_key(aid), "sha256")
        op = operations.get(op_name)
        sub = jobs.submit(
            r, owner=key.id, op=op, options=op.parse_options({}), asset_id=aid, sha256=sha,
            cost=settings.cost(op, {}), billed=True, trace_id="t", queue_timeout_s=60, job_ttl_s=60,
        )  # fmt: skip
        return key, sub.job

    return make


def _run(job, compute):
    run_job(operations.get(job.op), compute, job.id)


def test_soft_time_limit_fails_the_job_with_a_refund(job_on_asset, r):
    key, job = job_on_asset()
    assert keys.balance(r, key.id) == 4

    def too_slow(audio, options, ctx):
        raise SoftTimeLimitExceeded()

    with pytest.raises(SoftTimeLimitExceeded):
        _run(job, too_slow)
    done = jobs.get_any(r, job.id)
    assert done.status == "failed" and done.error["statusCode"] == 504
    assert "time limit" in done.error["message"]
    assert keys.balance(r, key.id) == 5 and done.credits_used == 0


def test_callers_fault_is_not_refunded(job_on_asset, r):
    key, job = job_on_asset()

    def unprocessable(audio, options, ctx):
        raise ApiError(422, "The audio is too short to analyse")

    with pytest.raises(ApiError):
        _run(job, unprocessable)
    assert jobs.get_any(r, job.id).status == "failed"
    assert keys.balance(r, key.id) == 4


def test_a_bug_fails_the_job_refunded_not_running_forever(job_on_asset, r):
    key, job = job_on_asset()

    def broken(audio, options, ctx):
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        _run(job, broken)
    done = jobs.get_any(r, job.id)
    assert done.status == "failed" and done.error["statusCode"] == 500
    assert keys.balance(r, key.id) == 5


def test_finished_job_is_not_redone(job_on_asset, r):
    key, job = job_on_asset()
    calls = []

    def compute(audio, options, ctx):
        calls.append(1)
        return {"x": 1}

    _run(job, compute)
    _run(job, compute)  # a redelivery of the same message
    assert calls == [1]
    assert jobs.get_any(r, job.id).result == {"x": 1}
    assert keys.balance(r, key.id) == 4


def test_progress_and_cancel_while_running(job_on_asset, r, settings):
    key, job = job_on_asset()
    seen = []

    def long(audio, options, ctx):
        ctx.progress(0.25)
        seen.append(jobs.get_any(r, job.id).progress)
        jobs.cancel(r, jobs.get_any(r, job.id), ttl=60)
        ctx.progress(0.5)  # raises: the job was cancelled
        seen.append("not reached")
        return {}

    _run(job, long)
    done = jobs.get_any(r, job.id)
    assert seen == [0.25] and done.status == "cancelled"
    assert keys.balance(r, key.id) == 4  # cancelled after it started: not refunded


def test_overdue_jobs_are_failed_and_refunded(job_on_asset, r):
    key, queued = job_on_asset()
    _, running = job_on_asset()
    jobs.start(r, running.id, hard_limit_s=10, worker="w:1")
    later = db.now() + 10_000
    assert jobs.fail_overdue(r, ttl=60, now=later) == 2
    for j in (queued, running):
        done = jobs.get_any(r, j.id)
        assert done.status == "failed" and done.refunded
    assert jobs.fail_overdue(r, ttl=60, now=later) == 0
    assert keys.balance(r, key.id) == 5


def test_expiry_drops_cached_results(client, api_key, upload, r, storage, worker):
    from shared import assets

    key = api_key()
    aid = upload(key, wav(1.0, seed=62))
    client.post("/v1/lufs", json={"asset_id": aid}, headers=key.headers)
    assert r.keys(db.PREFIX + "cache:*")
    assets.expire_due(r, storage, now=db.now() + 30 * 86400)
    assert r.keys(db.PREFIX + "cache:*") == [] and r.keys(db.PREFIX + "cacheidx:*") == []
