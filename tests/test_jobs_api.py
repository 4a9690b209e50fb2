"""The job engine through the HTTP API, with a real Celery worker."""

from __future__ import annotations

import io
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile as sf
import synth
from audiogen import encode, wav
from jobpoll import poll

from shared import db, keys
from shared.storage import original_name


def as_wav(y: np.ndarray, sr: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@pytest.fixture(scope="module")
def drums_120() -> bytes:
    return as_wav(synth.drum_pattern(120.0, 20.0, sr=44100, pattern="rock", seed=3), 44100)


@pytest.fixture(scope="module")
def a_minor() -> bytes:
    return as_wav(synth.chord_progression("A", "minor", 16.0, sr=44100, seed=4), 44100)


@pytest.fixture(scope="module")
def sine_minus_23() -> bytes:
    """EBU Tech 3341 case 1: stereo 1 kHz at -23 dBFS reads -23.0 LUFS."""
    t = np.arange(20 * 48000) / 48000
    x = (10 ** (-23 / 20)) * np.sin(2 * np.pi * 1000 * t)
    return encode(np.stack([x, x], axis=1).astype(np.float32), "flac", sr=48000)


def post_audio(client, key, path: str, data: bytes, headers: dict | None = None, query: str = ""):
    return client.post(
        f"{path}{query}", data=data, headers={**key.headers, "Content-Type": "audio/wav", **(headers or {})}
    )


def post_json(client, key, path: str, body: dict, headers: dict | None = None):
    return client.post(path, json=body, headers={**key.headers, **(headers or {})})


# ------------------------------------------------------------------ each op


def test_bpm_sync_on_raw_bytes(client, api_key, worker, drums_120):
    key = api_key(credits=10)
    resp = post_audio(client, key, "/v1/bpm", drums_120)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert abs(body["tempo"] - 120.0) <= 1.2
    assert 0 <= body["confidence"] <= 1
    assert body["job_id"].startswith("job_") and body["asset_id"].startswith("afa_")
    assert body["asset_expires_at"].endswith("Z")
    meta = body["_meta"]
    assert meta["cache"] == "miss" and meta["credits_used"] == 1 and meta["credits_remaining"] == 9
    assert meta["trace_id"] and isinstance(meta["latency_ms"], int)


def test_key_sync_on_asset_id(client, api_key, worker, upload, a_minor):
    key = api_key()
    aid = upload(key, a_minor)
    body = post_json(client, key, "/v1/key", {"asset_id": aid}).get_json()
    assert (body["key"], body["tonic"], body["mode"], body["camelot"]) == ("A minor", "A", "minor", "8A")
    assert 0 <= body["confidence"] <= 1 and body["asset_id"] == aid


def test_lufs_on_asset_id_and_raw_bytes(client, api_key, worker, upload, sine_minus_23):
    key = api_key()
    aid = upload(key, sine_minus_23, content_type="audio/flac")
    body = post_json(client, key, "/v1/lufs", {"asset_id": aid}).get_json()
    assert abs(body["integrated_lufs"] - (-23.0)) <= 0.1
    for field in (
        "loudness_range_lu",
        "true_peak_dbtp",
        "sample_peak_dbfs",
        "momentary_max_lufs",
        "short_term_max_lufs",
    ):
        assert field in body
    series = body["short_term_lufs"]  # for plots: 3 s windows every 100 ms
    seconds = sf.info(io.BytesIO(sine_minus_23)).duration
    assert series["hop_s"] == 0.1 and len(series["values"]) == int(seconds * 10) - 29
    assert max(series["values"]) == body["short_term_max_lufs"]
    again = post_audio(client, key, "/v1/lufs", sine_minus_23)  # same bytes: dedup + cache
    assert again.status_code == 200
    assert again.get_json()["asset_id"] == aid and again.get_json()["_meta"]["cache"] == "hit"


def test_key_bpm_is_the_union(client, api_key, worker, drums_120, a_minor):
    key = api_key()
    mix = synth.chord_progression("A", "minor", 16.0, sr=44100, seed=4, with_drums=True)
    body = post_audio(client, key, "/v1/key-bpm", as_wav(mix, 44100)).get_json()
    assert {"key", "tonic", "mode", "camelot", "tempo", "confidence"} <= set(body)
    assert body["key"] == "A minor"
    assert body["confidence"] == min(body["key_confidence"], body["tempo_confidence"])
    assert body["_meta"]["credits_used"] == 2


@pytest.mark.parametrize("op", ["bpm", "key", "lufs", "key-bpm"])
def test_each_op_on_raw_bytes_and_on_asset_id(client, api_key, worker, op):
    key = api_key()
    data = as_wav(synth.chord_progression("D", "major", 8.0, sr=44100, seed=7, with_drums=True), 44100)
    raw = post_audio(client, key, f"/v1/{op}", data)
    assert raw.status_code == 200, raw.get_json()
    by_id = post_json(client, key, f"/v1/{op}", {"asset_id": raw.get_json()["asset_id"]})
    assert by_id.status_code == 200, by_id.get_json()
    strip = {"job_id", "_meta"}
    assert {k: v for k, v in raw.get_json().items() if k not in strip} == {
        k: v for k, v in by_id.get_json().items() if k not in strip
    }
    if op in ("key", "key-bpm"):
        assert raw.get_json()["key"] == "D major"


# ------------------------------------------------------------------ async, wait, poll


def test_respond_async_then_poll(client, api_key, worker, drums_120):
    key = api_key()
    resp = post_audio(client, key, "/v1/bpm", drums_120, headers={"Prefer": "respond-async"})
    assert resp.status_code == 202
    body = resp.get_json()
    assert set(body) == {"job_id", "op", "status", "poll_url", "asset_id", "asset_expires_at", "_meta"}
    assert resp.headers["Location"] == body["poll_url"] == f"http://testserver/v1/jobs/{body['job_id']}"
    assert body["_meta"]["credits_reserved"] == 1
    assert body["status"] in ("queued", "running")
    doc = poll(client, key, body["job_id"])
    assert doc["status"] == "completed" and doc["progress"] == 1
    assert abs(doc["result"]["tempo"] - 120) <= 1.2
    assert doc["error"] is None and doc["op"] == "bpm"
    assert doc["created_at"] <= doc["started_at"] <= doc["finished_at"]
    assert doc["_meta"]["credits_used"] == 1


def test_prefer_wait(client, api_key, worker, a_minor):
    key = api_key()
    resp = post_audio(client, key, "/v1/key", a_minor, headers={"Prefer": "wait=30"})
    assert resp.status_code == 200 and resp.headers["Preference-Applied"] == "wait=30"
    assert resp.get_json()["key"] == "A minor"


def test_list_jobs_paginates(client, api_key, worker, upload):
    key = api_key()
    aid = upload(key, wav(2.0, seed=31))
    ids = []
    for op in ("bpm", "key", "lufs", "key-bpm", "bpm"):
        resp = post_json(client, key, f"/v1/{op}", {"asset_id": aid}, headers={"Prefer": "respond-async"})
        ids.append(resp.get_json()["job_id"])
    seen, cursor = [], None
    while True:
        body = client.get(
            f"/v1/jobs?limit=2{'&cursor=' + cursor if cursor else ''}", headers=key.headers
        ).get_json()
        seen += [j["job_id"] for j in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))


# ------------------------------------------------------------------ cache, idempotency, credits


def test_cache_hit_is_free_and_instant(client, api_key, worker, drums_120):
    key = api_key(credits=5)
    first = post_audio(client, key, "/v1/bpm", drums_120).get_json()
    second = post_audio(client, key, "/v1/bpm", drums_120).get_json()
    assert second["_meta"]["cache"] == "hit" and second["_meta"]["credits_used"] == 0
    assert second["tempo"] == first["tempo"] and second["job_id"] != first["job_id"]
    assert second["_meta"]["credits_remaining"] == 4
    # different options or op are different cache entries: key is a miss
    assert (
        post_json(client, key, "/v1/key", {"asset_id": first["asset_id"]}).get_json()["_meta"]["cache"]
        == "miss"
    )


def test_idempotency_key(client, api_key, worker, upload):
    key = api_key(credits=5)
    aid = upload(key, wav(1.0, seed=41))
    h = {"Idempotency-Key": "abc-123", "Prefer": "respond-async"}
    first = post_json(client, key, "/v1/lufs", {"asset_id": aid}, headers=h)
    again = post_json(client, key, "/v1/lufs", {"asset_id": aid}, headers=h)
    assert again.get_json()["job_id"] == first.get_json()["job_id"]
    assert keys.balance(client.application.extensions["audioq"].redis, key.id) == 4
    other = upload(key, wav(1.0, seed=42))
    clash = post_json(client, key, "/v1/lufs", {"asset_id": other}, headers=h)
    assert clash.status_code == 422 and "Idempotency-Key" in clash.get_json()["message"]


def test_insufficient_credits(client, api_key, upload):
    key = api_key(credits=1)
    aid = upload(key, wav(1.0, seed=43))
    resp = post_json(client, key, "/v1/key-bpm", {"asset_id": aid})  # costs 2
    assert resp.status_code == 400 and resp.get_json()["message"] == "Insufficient credits"


@pytest.fixture
def paused_worker(worker, celery_app):
    """The worker stops taking analysis jobs, so submitted jobs stay queued."""
    celery_app.control.cancel_consumer("analysis", reply=True, timeout=5, limit=1)
    try:
        yield
    finally:
        celery_app.control.add_consumer("analysis", reply=True, timeout=5, limit=1)


def test_credits_never_negative_under_a_race(client, api_key, upload, r, paused_worker):
    key = api_key(credits=20)
    aid = upload(key, wav(1.0, seed=44))

    def submit(_):
        return post_json(
            client, key, "/v1/bpm", {"asset_id": aid}, headers={"Prefer": "respond-async"}
        ).status_code

    with ThreadPoolExecutor(16) as ex:
        codes = list(ex.map(submit, range(50)))
    assert codes.count(202) == 20 and codes.count(400) == 30
    assert keys.balance(r, key.id) == 0


def test_cancel_queued_job_refunds(client, api_key, upload, r, paused_worker):
    key = api_key(credits=3)
    aid = upload(key, wav(1.0, seed=45))
    job = post_json(
        client, key, "/v1/key-bpm", {"asset_id": aid}, headers={"Prefer": "respond-async"}
    ).get_json()
    assert job["status"] == "queued" and keys.balance(r, key.id) == 1
    resp = client.delete(f"/v1/jobs/{job['job_id']}", headers=key.headers)
    assert resp.status_code == 200 and resp.get_json()["status"] == "cancelled"
    assert keys.balance(r, key.id) == 3
    again = client.delete(f"/v1/jobs/{job['job_id']}", headers=key.headers)
    assert again.status_code == 409


def test_cancelled_job_is_not_run_later(client, api_key, upload, r, worker, celery_app):
    key = api_key(credits=3)
    aid = upload(key, wav(1.0, seed=46))
    celery_app.control.cancel_consumer("analysis", reply=True, timeout=5, limit=1)
    try:
        job = post_json(
            client, key, "/v1/bpm", {"asset_id": aid}, headers={"Prefer": "respond-async"}
        ).get_json()
        client.delete(f"/v1/jobs/{job['job_id']}", headers=key.headers)
    finally:
        celery_app.control.add_consumer("analysis", reply=True, timeout=5, limit=1)
    time.sleep(1.5)  # the worker now receives the message and must leave it alone
    doc = client.get(f"/v1/jobs/{job['job_id']}", headers=key.headers).get_json()
    assert doc["status"] == "cancelled" and doc["result"] is None and doc["started_at"] is None


def test_failed_job_is_refunded(client, api_key, upload, r, storage, worker):
    key = api_key(credits=5)
    aid = upload(key, wav(1.0, seed=47))
    storage.delete(original_name(aid))  # the source vanished: not the caller's fault
    resp = post_json(client, key, "/v1/lufs", {"asset_id": aid})
    assert resp.status_code >= 500, resp.get_json()
    assert set(resp.get_json()) == {"statusCode", "error", "message", "code"}
    assert keys.balance(r, key.id) == 5
    job_id = client.get("/v1/jobs", headers=key.headers).get_json()["items"][0]
    assert job_id["status"] == "failed" and job_id["error"]["statusCode"] == resp.status_code
    assert job_id["_meta"]["credits_used"] == 0


def test_worker_killed_mid_job_finishes_once_charged_once(client, api_key, upload, r, worker):
    key = api_key(credits=10)
    long_track = as_wav(np.tile(synth.drum_pattern(100.0, 30.0, sr=44100, seed=5), 16), 44100)  # 8 minutes
    aid = upload(key, long_track)
    job = post_json(
        client, key, "/v1/key-bpm", {"asset_id": aid}, headers={"Prefer": "respond-async"}
    ).get_json()
    deadline = time.monotonic() + 30
    pid = None
    while time.monotonic() < deadline:
        h = r.hgetall(db.job_key(job["job_id"]))
        if h.get("status") == "running" and h.get("worker"):
            pid = int(h["worker"].rsplit(":", 1)[1])
            break
        time.sleep(0.01)
    assert pid, "the job never started"
    os.kill(pid, signal.SIGKILL)
    doc = poll(client, key, job["job_id"], timeout=120)
    assert doc["status"] == "completed", doc
    assert int(r.hget(db.job_key(job["job_id"]), "attempts")) == 2
    assert keys.balance(r, key.id) == 8  # charged once (2 credits)
    assert abs(doc["result"]["tempo"] - 100) <= 1


# ------------------------------------------------------------------ bad input


def test_bad_inputs_are_clear_4xx(client, api_key, upload, worker):
    a, b = api_key(), api_key()
    theirs = upload(b, wav(1.0, seed=48))
    mine = upload(a, wav(1.0, seed=49))
    cases = [
        (post_json(client, a, "/v1/bpm", {"asset_id": "afa_missing000000000000000"}), 404),
        (post_json(client, a, "/v1/bpm", {"asset_id": theirs}), 404),
        (
            client.post(
                "/v1/bpm", data=b'{"asset_id": ', headers={**a.headers, "Content-Type": "application/json"}
            ),
            400,
        ),
        (
            client.post("/v1/bpm", data=b"[1, 2]", headers={**a.headers, "Content-Type": "application/json"}),
            400,
        ),
        (post_json(client, a, "/v1/bpm", {}), 400),
        (post_json(client, a, "/v1/bpm", {"asset_id": 42}), 400),
        (post_audio(client, a, "/v1/bpm", wav(1.0, seed=50), query=f"?asset_id={mine}"), 400),
        (post_json(client, a, "/v1/bpm", {"asset_id": mine, "speed": "fast"}), 400),
        (post_json(client, a, "/v1/bpm?colour=red", {"asset_id": mine}), 400),
        (client.post("/v1/bpm", data=b"x", headers={**a.headers, "Content-Type": "text/plain"}), 415),
        (client.post("/v1/bpm", headers=a.headers), 400),
        (post_audio(client, a, "/v1/bpm", b"not audio"), 415),
        (client.get("/v1/bpm", headers=a.headers), 405),
        (client.post("/v1/nope", json={"asset_id": mine}, headers=a.headers), 404),
        (client.post("/v1/bpm", json={"asset_id": mine}), 401),
        (client.get("/v1/jobs/job_nope", headers=a.headers), 404),
        (client.get("/v1/jobs?limit=0", headers=a.headers), 400),
    ]
    for i, (resp, status) in enumerate(cases):
        assert resp.status_code == status, (i, resp.status_code, resp.get_json())
        body = resp.get_json()
        assert {"statusCode", "error", "message", "code"} <= set(body) and body["message"], (i, body)


def test_other_tenants_job_is_404(client, api_key, upload, worker):
    a, b = api_key(), api_key()
    aid = upload(a, wav(1.0, seed=51))
    job = post_json(client, a, "/v1/lufs", {"asset_id": aid}).get_json()["job_id"]
    for method in ("get", "delete"):
        resp = getattr(client, method)(f"/v1/jobs/{job}", headers=b.headers)
        assert resp.status_code == 404 and resp.get_json()["message"] == "Cannot find job"
    assert client.get("/v1/jobs", headers=b.headers).get_json()["count"] == 0


def test_trace_id_header_and_meta(client, api_key, worker, upload):
    key = api_key()
    aid = upload(key, wav(1.0, seed=52))
    resp = post_json(client, key, "/v1/lufs", {"asset_id": aid}, headers={"X-Request-Id": "req-abcdef12"})
    assert resp.headers["X-Trace-Id"] == "req-abcdef12"
    assert resp.get_json()["_meta"]["trace_id"] == "req-abcdef12"
