"""Error details and the headers a client relies on: a stable ``code`` on
every error (with the option's name for option errors), ``WWW-Authenticate``
on every 401, ``Retry-After`` on every 202, ``Idempotent-Replayed`` on
every answer that replays an ``Idempotency-Key``."""

from __future__ import annotations

import re

import pytest
from audiogen import wav

from shared import operations


def _example_path(rule: str) -> str:
    return re.sub(r"<[^>]+>", "x", rule)


def test_every_401_carries_www_authenticate_and_a_code(app, client, api_key):
    checked = 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint.split(".")[0] not in ("assets", "jobs", "tasks", "account"):
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            for headers, code in (
                ({}, "missing_api_key"),
                ({"x-api-key": "aq_nope"}, "invalid_api_key"),
                ({"Authorization": "Bearer aq_nope"}, "invalid_api_key"),
            ):
                resp = client.open(_example_path(rule.rule), method=method, headers=headers)
                assert resp.status_code == 401, (rule.rule, method)
                assert resp.headers["WWW-Authenticate"] == 'Bearer realm="audioq"', (rule.rule, method)
                assert resp.get_json()["code"] == code
                checked += 1
    assert checked >= 3 * 20


@pytest.mark.parametrize("op_name", ["bpm", "master", "analyze/upload"])
def test_a_202_says_when_to_poll(client, api_key, upload, op_name):
    key = api_key(credits=100)
    aid = upload(key, wav(1.0, seed=61))
    resp = client.post(
        f"/v1/{op_name}", json={"asset_id": aid}, headers={**key.headers, "Prefer": "respond-async"}
    )
    assert resp.status_code == 202
    op = operations.OPERATIONS[op_name]
    assert resp.headers["Retry-After"] == str(op.poll_s)
    assert int(resp.headers["Retry-After"]) >= 1
    assert (int(resp.headers["Retry-After"]) > 1) == (op.queue == "heavy" or op_name == "analyze/upload")


def test_an_idempotency_key_replay_says_so(client, api_key, upload):
    key = api_key(credits=100)
    aid = upload(key, wav(1.0, seed=62))
    h = {**key.headers, "Prefer": "respond-async", "Idempotency-Key": "replay-1"}
    first = client.post("/v1/lufs", json={"asset_id": aid}, headers=h)
    again = client.post("/v1/lufs", json={"asset_id": aid}, headers=h)
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["job_id"] == first.get_json()["job_id"]

    task = {"assetId": aid, "targets": [{"model": "vocals", "formats": ["wav"]}]}
    h = {**key.headers, "Idempotency-Key": "replay-2"}
    first = client.post("/tasks", json=task, headers=h)
    again = client.post("/tasks", json=task, headers=h)
    assert (first.status_code, again.status_code) == (201, 200)
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"


def _error(resp, status: int, code: str) -> dict:
    body = resp.get_json()
    assert resp.status_code == status, body
    assert body["statusCode"] == status and body["code"] == code and body["message"] and body["error"]
    return body


def test_each_error_path_has_its_code(client, api_key, upload):
    key = api_key(credits=1)
    aid = upload(key, wav(1.0, seed=63))
    post = lambda path, **kw: client.post(path, headers={**key.headers, **kw.pop("headers", {})}, **kw)  # noqa: E731

    _error(post("/v1/key-bpm", json={"asset_id": aid}), 400, "insufficient_credits")
    _error(client.get("/v1/assets/afa_missing0000000000000000", headers=key.headers), 404, "asset_not_found")
    _error(post("/v1/bpm", json={"asset_id": "afa_missing0000000000000000"}), 404, "asset_not_found")
    _error(client.get("/v1/jobs/job_missing", headers=key.headers), 404, "job_not_found")
    _error(client.get("/tasks/job_missing", headers=key.headers), 404, "task_not_found")
    _error(
        post("/v1/bpm", data=b"not audio", headers={"Content-Type": "audio/wav"}),
        415,
        "unsupported_media_type",
    )
    _error(post("/v1/bpm", data=b"x", headers={"Content-Type": "text/plain"}), 415, "unsupported_media_type")
    _error(post("/v1/bpm", json={"asset_id": aid, "pad": "x" * 70_000}), 413, "payload_too_large")
    _error(post("/v1/bpm", data=b"{", headers={"Content-Type": "application/json"}), 400, "invalid_json")
    _error(client.get("/v1/assets?limit=0", headers=key.headers), 400, "invalid_limit")
    _error(post("/v1/bpm", json={"asset_id": aid, "callback_url": ""}), 400, "invalid_url")
    _error(post("/v1/bpm", json={"asset_id": aid, "callback_url": None}), 400, "invalid_url")

    body = _error(post("/v1/pitch", json={"asset_id": aid, "fmin": 5}), 400, "invalid_option")
    assert body["option"] == "fmin"
    body = _error(post("/v1/pitch", json={"asset_id": aid, "speed": 2}), 400, "unknown_option")
    assert body["option"] == "speed"
    body = _error(post("/v1/pitch?fmin=50", json={"asset_id": aid, "fmin": 60}), 400, "invalid_option")
    assert body["option"] == "fmin" and "once" in body["message"]
    body = _error(post(f"/v1/pitch?asset_id={aid}&fmin=50&fmin=60"), 400, "invalid_option")
    assert body["option"] == "fmin"
    assert _error(post("/v1/bpm", json={"asset_id": None}), 400, "invalid_field")["field"] == "asset_id"
    _error(post("/v1/bpm"), 400, "missing_input")
    body = _error(
        post("/tasks", json={"assetId": aid, "targets": [{"model": "kazoo", "formats": ["wav"]}]}),
        400,
        "invalid_field",
    )
    assert body["field"] == "targets[0].model"
    multipart = {"Content-Type": "multipart/form-data; boundary=x"}
    _error(post("/assets", data=b"--x\r\nnot a part", headers=multipart), 400, "invalid_multipart")
    _error(client.put("/v1/assets/" + aid, headers=key.headers), 405, "method_not_allowed")
    _error(client.get("/v1/nothing-here", headers=key.headers), 404, "not_found")


def test_rate_limited_has_its_code_and_retry_after(client, api_key):
    key = api_key(test=True)  # 2 requests/s, bursts of 10
    for _ in range(30):
        resp = client.get("/v1/account", headers=key.headers)
        if resp.status_code == 429:
            break
    body = _error(resp, 429, "rate_limited")
    assert int(resp.headers["Retry-After"]) >= 1 and "RateLimit-Limit" in resp.headers
    assert "Nothing was charged" in body["message"]
