"""The fault suite, services' side: Redis killed and restarted on its AOF,
S3 and broker outages, the limits held across two API processes. Real
processes, real faults, counts asserted, each case bounded in time and on its
own disposable stack (``tests/faultstack.py``). A web process whose broker is
down answering ``/readyz`` 503 is in ``tests/test_cli_and_health.py``.
"""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from audiogen import wav
from faultstack import submit, upload

from shared import operations

pytestmark = pytest.mark.timeout(300)


def test_redis_killed_and_restarted_on_its_aof_loses_nothing(stack):
    """SIGKILL of Redis (state and broker) with jobs queued and running, then a
    restart on its AOF: every accepted job finishes, credits exact."""
    s = stack()
    url = s.start_api()
    s.start_beat()
    s.start_worker("w", queues="analysis,maintenance", concurrency=2)
    secret, key_id = s.key(credits=1000)
    aids = [upload(url, secret, wav(60.0, seed=40 + i)) for i in range(4)]
    # Seconds of work in all (pitch is the slowest analysis): still queued or
    # running when Redis dies, even on an idle machine.
    ops = ["pitch", "chords", "pitch", "beatgrid", "key"]
    accepted = []
    for i in range(20):
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
    finals = [s.final(job_id, timeout=180) for job_id, _ in accepted]
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
    done = s.final(job.json()["job_id"], timeout=120)
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
    assert s.final(job.json()["job_id"], timeout=120)["status"] == "completed"  # the worker too
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
