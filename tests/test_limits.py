"""Per-key limits: the request rate (token bucket), jobs in flight per queue,
and test-mode keys. Against the real stack; the bucket lives in Redis, so
the limit holds across API processes (see tests/test_faults_services.py for two
gunicorn processes)."""

from __future__ import annotations

import time

from audiogen import wav

from shared import db, keys


def test_a_burst_over_the_rate_limit_is_refused_politely(client, api_key, r):
    key = api_key(plan="basic")  # 5 requests/s, bursts of 20
    codes, last = [], None
    t0 = time.monotonic()
    for _ in range(40):
        resp = client.get("/v1/assets", headers=key.headers)
        codes.append(resp.status_code)
        if resp.status_code == 429:
            last = resp
    elapsed = time.monotonic() - t0
    allowed = codes.count(200)
    # The burst, plus what refilled while the loop ran (5 per second).
    assert 20 <= allowed <= 20 + int(5 * elapsed) + 1, (allowed, elapsed)
    assert codes.count(429) == 40 - allowed
    body = last.get_json()
    assert body["code"] == "rate_limited" and "5 requests per second" in body["message"]
    assert int(last.headers["Retry-After"]) >= 1
    assert last.headers["RateLimit-Limit"] == "20" and last.headers["RateLimit-Remaining"] == "0"
    ok = client.get("/v1/account", headers=api_key(plan="basic").headers)  # another key: its own bucket
    assert ok.status_code == 200 and int(ok.headers["RateLimit-Remaining"]) == 19


def test_a_refused_request_stores_and_charges_nothing(client, api_key, r, storage):
    key = api_key(plan="basic", credits=10)
    r.hset(db.rate_key(key.id), mapping={"tokens": "0", "at": repr(time.time() + 5)})  # bucket empty
    resp = client.post("/v1/bpm", data=wav(1.0, seed=5), headers={**key.headers, "Content-Type": "audio/wav"})
    assert resp.status_code == 429 and resp.get_json()["code"] == "rate_limited"
    assert list(storage.list()) == [] and keys.balance(r, key.id) == 10
    assert r.zcard(db.owner_assets_key(key.id)) == 0 and r.zcard(db.owner_jobs_key(key.id)) == 0


def test_jobs_in_flight_are_capped_per_queue(client, api_key, upload, r, worker, celery_app):
    """basic allows one heavy job at once: the second is 429 while the first
    is queued or running, nothing charged; analysis jobs are not held back."""
    key = api_key(plan="basic", credits=200)
    aid = upload(key, wav(4.0, seed=6))
    celery_app.control.cancel_consumer("heavy", reply=True, timeout=5)  # keep the first one queued
    try:
        h = {**key.headers, "Prefer": "respond-async"}
        first = client.post("/v1/separate/2stem", json={"asset_id": aid}, headers=h)
        assert first.status_code == 202
        balance = keys.balance(r, key.id)
        second = client.post("/v1/master", json={"asset_id": aid}, headers=h)
        assert second.status_code == 429, second.get_json()
        body = second.get_json()
        assert body["code"] == "too_many_jobs" and "heavy" in body["message"]
        assert "Retry-After" in second.headers and keys.balance(r, key.id) == balance
        assert client.post("/v1/bpm", json={"asset_id": aid}, headers=h).status_code == 202
        client.delete(f"/v1/jobs/{first.get_json()['job_id']}", headers=key.headers)  # frees the slot
        assert client.post("/v1/master", json={"asset_id": aid}, headers=h).status_code == 202
    finally:
        celery_app.control.add_consumer("heavy", reply=True, timeout=5)


def test_test_keys_are_free_short_and_marked(client, api_key, r, worker):
    key = api_key(credits=0, test=True)
    assert key.secret.startswith("aq_test_")
    h = {**key.headers, "Content-Type": "audio/wav"}
    long = client.post("/v1/assets/upload", data=wav(31.0, seed=7), headers=h)
    assert long.status_code == 413 and long.get_json()["code"] == "audio_too_long"
    assert r.zcard(db.owner_assets_key(key.id)) == 0
    up = client.post("/v1/assets/upload", data=wav(3.0, seed=7), headers=h).get_json()
    lifetime = r.hget(db.asset_key(up["asset_id"]), "expires_at")
    assert 3500 <= float(lifetime) - time.time() <= 3600  # test assets live an hour
    resp = client.post(
        "/v1/bpm", json={"asset_id": up["asset_id"]}, headers={**key.headers, "Prefer": "wait=60"}
    )
    body = resp.get_json()
    assert resp.status_code == 200 and body["test"] is True and body["_meta"]["credits_used"] == 0
    assert client.get(f"/v1/jobs/{body['job_id']}", headers=key.headers).get_json()["test"] is True
    assert keys.balance(r, key.id) == 0
    assert client.get("/v1/account", headers=key.headers).headers["RateLimit-Limit"] == "10"
