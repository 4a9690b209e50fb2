"""The fault suite, workers' side: a whole worker lost, a job that crashes
its worker every time, a worker stopped by SIGTERM. Real processes, real
faults, counts asserted, each case bounded in time and on its own disposable
stack (``tests/faultstack.py``), with recovery timings ten times faster than
production's (1 s heartbeats, stale after 6 s, sweeps every 2 s).

Services' faults (Redis, S3, broker, limits across API processes) are in
``tests/test_faults_services.py``; the uploads side (slow bodies,
concurrent-upload limits) in ``tests/test_faults_uploads.py``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

import pytest
from audiogen import wav
from faultstack import submit, upload

from shared import operations

pytestmark = pytest.mark.timeout(300)

SEP = "separate/4stem"  # long enough to be caught mid-run: several seconds for 75 s of audio
SEP_COST = operations.OPERATIONS[SEP].cost


@pytest.fixture(scope="module")
def long_clip() -> bytes:
    return wav(75.0, seed=31)


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
    s.running(job_id)
    killed_at = time.monotonic()
    s.kill("worker-first")
    s.start_worker("second", queues="heavy,maintenance")
    done = s.final(job_id, timeout=120)
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
    s.running(job_id)
    proc = s.procs["worker-leaving"].popen
    t0 = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)  # the main process only, as Docker does
    proc.wait(60)
    stopped_in = time.monotonic() - t0
    after = s.job(job_id)
    assert after["status"] in ("queued", "completed"), after  # handed back (or it had just finished)
    s.start_worker("next", queues="heavy")
    done = s.final(job_id, timeout=120)
    assert done["status"] == "completed" and s.balance(key_id) == 100 - SEP_COST
    print(f"\nFAULT sigterm: worker stopped in {stopped_in:.1f} s, job {after['status']}, then completed")
