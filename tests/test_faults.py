"""The fault suite: real processes, real faults, counts asserted, each case
bounded in time. Every case builds its own disposable stack
(``tests/faultstack.py``), with recovery timings ten times faster than
production's (1 s heartbeats, stale after 6 s, sweeps every 2 s).

The uploads-side faults (slow bodies, concurrent-upload limits) are in
``tests/test_faults_uploads.py``; a web process whose broker is down answering
``/readyz`` 503 is in ``tests/test_cli_and_health.py``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from audiogen import wav
from faultstack import FaultStack, submit, upload

from shared import operations

pytestmark = pytest.mark.timeout(300)

SEP = "separate/4stem"  # long enough to be caught mid-run: several seconds for 75 s of audio
SEP_COST = operations.OPERATIONS[SEP].cost


@pytest.fixture
def stack(tmp_path):
    made: list[FaultStack] = []

    def build(**kw) -> FaultStack:
        s = FaultStack(tmp_path / f"stack{len(made)}", **kw)
        made.append(s)
        return s

    yield build
    for s in made:
        s.stop()


@pytest.fixture(scope="module")
def long_clip() -> bytes:
    return wav(75.0, seed=31)


def _running(s: FaultStack, job_id: str, min_progress: float = 0.05, timeout: float = 120) -> dict:
    return s.wait_job(
        job_id,
        until=lambda h: h.get("status") == "running" and float(h.get("progress") or 0) >= min_progress,
        timeout=timeout,
    )


def _final(s: FaultStack, job_id: str, timeout: float) -> dict:
    return s.wait_job(
        job_id, until=lambda h: h.get("status") in ("completed", "failed", "cancelled"), timeout=timeout
    )


def test_whole_worker_killed_mid_job_resumes_on_another_worker(stack, long_clip):
    """SIGKILL of the worker's main process and its pool (a machine lost, an
    OOM kill of the container): the job runs again on a new worker and
    completes, charged once."""
    s = stack()
    url = s.start_api()
    s.start_beat()
    s.start_worker("first", queues="heavy,maintenance")
    secret, key_id = s.key(credits=100)
    aid = upload(url, secret, long_clip)
    job_id = submit(url, secret, SEP, aid).json()["job_id"]
    _running(s, job_id)
    killed_at = time.monotonic()
    s.kill("worker-first")
    s.start_worker("second", queues="heavy,maintenance")
    done = _final(s, job_id, timeout=120)
    recovered_in = time.monotonic() - killed_at
    assert done["status"] == "completed", done
    assert done["attempts"] == "2" and done["recoveries"] == "1"
    assert s.balance(key_id) == 100 - SEP_COST  # charged once
    print(f"\nFAULT whole-worker-kill: completed {recovered_in:.1f} s after the kill")


def test_a_job_that_crashes_its_worker_every_time_fails_after_three_attempts(stack, long_clip):
    """Each attempt's process is SIGKILLed as soon as it starts (what an OOM
    killer does to a job too big for its worker): after 3 attempts the job
    fails with job_crashed, refunded, and is not delivered again."""
    s = stack()
    url = s.start_api()
    s.start_beat()
    s.start_worker("crashy", queues="heavy,maintenance")
    secret, key_id = s.key(credits=100)
    aid = upload(url, secret, long_clip)
    job_id = submit(url, secret, SEP, aid).json()["job_id"]
    killed: set[str] = set()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        h = s.job(job_id)
        if h.get("status") in ("completed", "failed", "cancelled"):
            break
        worker = h.get("worker", "")
        if h.get("status") == "running" and worker and worker not in killed:
            killed.add(worker)
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(worker.rsplit(":", 1)[1]), signal.SIGKILL)
        time.sleep(0.1)
    done = s.job(job_id)
    assert done["status"] == "failed", done
    assert '"code": "job_crashed"' in done["error"] and done["refunded"] == "1"
    assert len(killed) == 3 and done["attempts"] == "3"
    assert s.balance(key_id) == 100
    time.sleep(8)  # no further deliveries: nothing starts it again
    again = s.job(job_id)
    assert again["status"] == "failed" and again["attempts"] == "3"
    print(f"\nFAULT crash-loop: failed after {done['attempts']} attempts, refunded")


def test_sigterm_mid_job_leaves_nothing_running(stack, long_clip):
    """SIGTERM to the worker (a deploy, a scale-down): it hands its running
    job back and exits; another worker completes it, charged once."""
    s = stack()
    url = s.start_api()
    s.start_worker("leaving", queues="heavy")
    secret, key_id = s.key(credits=100)
    aid = upload(url, secret, long_clip)
    job_id = submit(url, secret, SEP, aid).json()["job_id"]
    _running(s, job_id)
    proc = s.procs["worker-leaving"].popen
    t0 = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)  # the main process only, as Docker does
    proc.wait(60)
    stopped_in = time.monotonic() - t0
    after = s.job(job_id)
    assert after["status"] in ("queued", "completed"), after  # handed back (or it had just finished)
    s.start_worker("next", queues="heavy")
    done = _final(s, job_id, timeout=120)
    assert done["status"] == "completed" and s.balance(key_id) == 100 - SEP_COST
    print(f"\nFAULT sigterm: worker stopped in {stopped_in:.1f} s, job {after['status']}, then completed")


def test_redis_killed_and_restarted_on_its_aof_loses_nothing(stack):
    """SIGKILL of Redis (state and broker) with jobs queued and running, then a
    restart on its AOF: every accepted job finishes, credits exact."""
    s = stack()
    url = s.start_api()
    s.start_beat()
    s.start_worker("w", queues="analysis,maintenance", concurrency=2)
    secret, key_id = s.key(credits=1000)
    aids = [upload(url, secret, wav(60.0, seed=40 + i)) for i in range(4)]
    ops = ["bpm", "key", "lufs", "beatgrid", "chords"]
    accepted = []
    for i in range(12):
        resp = submit(url, secret, ops[i % len(ops)], aids[i % len(aids)])
        assert resp.status_code == 202, resp.text
        accepted.append((resp.json()["job_id"], ops[i % len(ops)]))
    time.sleep(1.5)  # appendfsync everysec: what was accepted a second ago is on disk
    unfinished = sum(s.job(job_id)["status"] in ("queued", "running") for job_id, _ in accepted)
    assert unfinished > 0, "every job finished before the fault: nothing was tested"
    s.kill("redis")
    time.sleep(3)
    s.start_redis()
    t0 = time.monotonic()
    finals = [_final(s, job_id, timeout=180) for job_id, _ in accepted]
    assert [f["status"] for f in finals] == ["completed"] * len(accepted), finals
    charged = sum(operations.OPERATIONS[op].cost for _, op in accepted)
    assert s.balance(key_id) == 1000 - charged
    took = time.monotonic() - t0
    print(
        f"\nFAULT redis-restart: {len(accepted)} jobs, {unfinished} queued or running at the kill, "
        f"all completed {took:.1f} s after the restart"
    )


def test_s3_outage_gives_clear_503s_and_jobs_ride_it_out(stack):
    s = stack()
    url = s.start_api()
    s.start_worker("w", queues="analysis")
    secret, key_id = s.key(credits=100)
    h = {"x-api-key": secret}
    aid = upload(url, secret, wav(5.0, seed=50))
    s.kill("s3", signal.SIGTERM)
    refused = httpx.post(
        f"{url}/v1/assets/upload",
        content=wav(2.0, seed=51),
        headers={**h, "Content-Type": "audio/wav"},
        timeout=60,
    )
    assert refused.status_code == 503 and refused.json()["code"] == "storage_unavailable", refused.text
    ready = httpx.get(f"{url}/readyz", timeout=30)
    assert ready.status_code == 503 and "s3" in ready.json()["message"]
    job = submit(url, secret, "bpm", aid)  # accepted: the worker retries its download
    assert job.status_code == 202
    time.sleep(12)  # a 12 s outage failed such jobs before
    s.start_s3()
    done = _final(s, job.json()["job_id"], timeout=120)
    assert done["status"] == "completed", done
    assert s.balance(key_id) == 100 - operations.OPERATIONS["bpm"].cost  # the refused upload cost nothing
    assert httpx.get(f"{url}/readyz", timeout=30).status_code == 200  # no restart needed


def test_broker_outage_gives_clear_503s_and_recovers_without_restarts(stack):
    s = stack(separate_broker=True)
    url = s.start_api()
    s.start_worker("w", queues="analysis")
    secret, key_id = s.key(credits=100)
    aid = upload(url, secret, wav(5.0, seed=60))
    s.kill("broker")
    refused = submit(url, secret, "bpm", aid)
    assert refused.status_code == 503 and refused.json()["code"] == "queue_unavailable", refused.text
    assert "nothing was charged" in refused.json()["message"] and s.balance(key_id) == 100
    ready = httpx.get(f"{url}/readyz", timeout=30)
    assert ready.status_code == 503 and "broker" in ready.json()["message"]
    s.start_broker()
    deadline = time.monotonic() + 60
    while httpx.get(f"{url}/readyz", timeout=30).status_code != 200:  # the API reconnects by itself
        assert time.monotonic() < deadline
        time.sleep(0.5)
    job = submit(url, secret, "bpm", aid)
    assert job.status_code == 202, job.text
    assert _final(s, job.json()["job_id"], timeout=120)["status"] == "completed"  # the worker too
    assert s.balance(key_id) == 100 - operations.OPERATIONS["bpm"].cost


def test_limits_hold_exactly_across_two_api_processes(stack):
    """The request bucket and the in-flight cap live in Redis: two API
    processes share them. (No worker: jobs stay queued.)"""
    s = stack(env={"AUDIOQ_PLAN_BASIC_RATE_PER_S": "0.01", "AUDIOQ_PLAN_BASIC_BURST": "10"})
    urls = [s.start_api("api-a"), s.start_api("api-b")]
    secret, _ = s.key(plan="basic", credits=100)
    codes = [
        httpx.get(f"{urls[i % 2]}/v1/assets", headers={"x-api-key": secret}, timeout=30).status_code
        for i in range(30)
    ]
    assert codes.count(200) == 10 and codes.count(429) == 20
    secret, key_id = s.key(plan="basic", credits=100)  # heavy jobs in flight: at most 1 on basic
    aid = upload(urls[0], secret, wav(3.0, seed=70))
    with ThreadPoolExecutor(4) as ex:
        answers = list(ex.map(lambda i: submit(urls[i % 2], secret, "separate/2stem", aid), range(4)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [202, 429, 429, 429], [a.text for a in answers]
    assert all(a.json()["code"] == "too_many_jobs" for a in answers if a.status_code == 429)
    assert s.balance(key_id) == 100 - operations.OPERATIONS["separate/2stem"].cost
