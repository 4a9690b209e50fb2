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


def _start(r, job, token: str | None = None, max_attempts: int = 3) -> str:
    return jobs.start(
        r,
        job.id,
        job.token if token is None else token,
        queue=operations.get(job.op).queue,
        hard_limit_s=10,
        worker="w:1",
        max_attempts=max_attempts,
        busy_window_s=12.5,
    )


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
        jobs.cancel(r, jobs.get_any(r, job.id), ttl=60, stale_s=60)
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
    _start(r, running)
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


# ----------------------------------------------------------------- attempts, heartbeat, recovery


def test_a_stale_message_never_runs_the_job(job_on_asset, r):
    _, job = job_on_asset()
    assert _start(r, job, token="an-old-attempt") == "stale"
    assert jobs.get_any(r, job.id).status == "queued"


def test_a_duplicate_message_of_a_live_attempt_waits(job_on_asset, r):
    """Same token, heartbeat fresh: the attempt is alive elsewhere ('busy',
    the message is retried later); once the heartbeat is stale, the message
    is a redelivery after a crash and starts a new attempt."""
    _, job = job_on_asset()
    assert _start(r, job) == "ok"
    assert _start(r, job) == "busy"
    r.hset(db.job_key(job.id), "heartbeat_at", repr(db.now() - 20))
    assert _start(r, job) == "ok"
    assert jobs.get_any(r, job.id).attempts == 2


def test_attempts_are_bounded_and_the_first_deadline_is_kept(job_on_asset, r):
    _, job = job_on_asset()
    assert _start(r, job) == "ok"
    deadline = r.zscore(db.ACTIVE_JOBS, job.id)
    for _ in range(2):
        r.hset(db.job_key(job.id), "heartbeat_at", "0")  # the process died
        assert _start(r, job) == "ok"
    assert r.zscore(db.ACTIVE_JOBS, job.id) == deadline  # restarts never extend it
    r.hset(db.job_key(job.id), "heartbeat_at", "0")
    assert _start(r, job) == "exhausted"


def test_progress_only_rises_and_heartbeat_tells_a_replaced_attempt_to_stop(job_on_asset, r):
    _, job = job_on_asset()
    _start(r, job)
    assert jobs.set_progress(r, job.id, job.token, 0.6)
    assert jobs.set_progress(r, job.id, job.token, 0.2)  # a new attempt starting over
    assert jobs.get_any(r, job.id).progress == 0.6
    assert not jobs.heartbeat(r, job.id, "another-attempt")


def test_stalled_jobs_are_requeued_then_failed_when_attempts_run_out(job_on_asset, r):
    key, job = job_on_asset(credits=5)
    _start(r, job)
    later = db.now() + 61
    found = jobs.recover_stalled(r, stale_s=60, max_attempts=3, ttl=60, now=later)
    assert found.failed == [] and [j for j, _ in found.requeued] == [job.id]
    again = jobs.get_any(r, job.id)
    assert again.status == "queued" and again.token == found.requeued[0][1] != job.token
    assert _start(r, job) == "stale"  # the lost attempt's message, if it comes back
    assert _start(r, again) == "ok"
    # Still alive (fresh heartbeat): not touched.
    assert jobs.recover_stalled(r, stale_s=60, max_attempts=3, ttl=60).requeued == []
    r.hset(db.job_key(job.id), "attempts", "3")
    found = jobs.recover_stalled(r, stale_s=60, max_attempts=3, ttl=60, now=db.now() + 61)
    assert found.failed == [job.id]
    done = jobs.get_any(r, job.id)
    assert done.status == "failed" and done.error["code"] == "job_crashed" and done.refunded
    assert keys.balance(r, key.id) == 5


def test_cancelling_a_job_whose_worker_is_gone_refunds_it(job_on_asset, r):
    key, job = job_on_asset(credits=5)
    _start(r, job)
    assert jobs.cancel(r, jobs.get_any(r, job.id), ttl=60, stale_s=60) == "was_running"
    assert keys.balance(r, key.id) == 4  # alive: the work has begun
    _, lost = job_on_asset(credits=5)
    _start(r, lost)
    r.hset(db.job_key(lost.id), "heartbeat_at", repr(db.now() - 120))
    assert jobs.cancel(r, jobs.get_any(r, lost.id), ttl=60, stale_s=60) == "was_stalled"
    assert jobs.get_any(r, lost.id).refunded


def test_a_finished_attempt_that_was_replaced_records_nothing(job_on_asset, r):
    _, job = job_on_asset()
    _start(r, job)
    jobs.recover_stalled(r, stale_s=60, max_attempts=3, ttl=60, now=db.now() + 61)
    assert not jobs.complete(
        r, job, {"x": 1}, ttl=60, cache_ttl=0, op=operations.get(job.op), token=job.token
    )
    assert jobs.get_any(r, job.id).status == "queued"


def test_hand_back_requeues_without_counting_the_attempt(job_on_asset, r):
    _, job = job_on_asset()
    _start(r, job)
    new = jobs.hand_back(r, job.id, job.token)
    back = jobs.get_any(r, job.id)
    assert new and back.status == "queued" and back.token == new and back.attempts == 0
    assert jobs.hand_back(r, job.id, job.token) is None  # no longer that attempt's
