"""The tasks dialect (POST /tasks, GET /tasks[/id]) with a real worker:
validation, URL inputs and their SSRF guard, signed callbacks."""

from __future__ import annotations

import io
import json
import time
import urllib.request

import numpy as np
import pytest
import soundfile as sf
import synth

from shared import keys, webhooks
from web import create_app

SR = 44100


@pytest.fixture(scope="module")
def mix_wav() -> bytes:
    """Six seconds of drums and chords (stereo)."""
    y = synth.chord_progression("C", "major", 6.0, sr=SR, seed=11, with_drums=True)
    buf = io.BytesIO()
    sf.write(buf, np.stack([y, y], axis=1), SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def create(client, key, body: dict, **headers):
    return client.post("/tasks", json=body, headers={**key.headers, **headers})


def wait_task(client, key, task_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = client.get(f"/tasks/{task_id}", headers=key.headers).get_json()
        if doc["status"] in ("completed", "failed"):
            return doc
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} did not finish: {doc}")


def fetch(link: str) -> bytes:
    with urllib.request.urlopen(link, timeout=30) as resp:
        return resp.read()


# ------------------------------------------------------------------ validation


BAD_BODIES = [
    ({"targets": [{"model": "vocals", "formats": ["wav"]}]}, "exactly one of 'assetId' and 'url'"),
    ({"assetId": "A", "url": "http://x/", "targets": []}, "exactly one of 'assetId' and 'url'"),
    ({"assetId": "A"}, "'targets' must be a non-empty list"),
    ({"assetId": "A", "targets": []}, "'targets' must be a non-empty list"),
    ({"assetId": "A", "targets": "vocals"}, "'targets' must be a non-empty list"),
    ({"assetId": "A", "targets": ["vocals"]}, "targets[0] must be an object"),
    (
        {"assetId": "A", "targets": [{"model": "piano", "formats": ["wav"]}]},
        "targets[0].model must be one of",
    ),
    ({"assetId": "A", "targets": [{"model": "vocals"}]}, "targets[0].formats must be a non-empty list"),
    ({"assetId": "A", "targets": [{"model": "vocals", "formats": []}]}, "formats must be a non-empty list"),
    ({"assetId": "A", "targets": [{"model": "vocals", "formats": ["ogg"]}]}, "'ogg' is not one of wav"),
    ({"assetId": "A", "targets": [{"model": "vocals", "formats": ["wav", "wav"]}]}, "lists a format twice"),
    ({"assetId": "A", "targets": [{"model": "bass", "formats": ["wav"], "gain": 2}]}, "unknown field 'gain'"),
    (
        {
            "assetId": "A",
            "targets": [{"model": "bass", "formats": ["wav"]}, {"model": "bass", "formats": ["mp3"]}],
        },
        "'bass' is asked for twice",
    ),
    (
        {"assetId": "A", "targets": [{"model": "bass", "formats": ["wav"]}], "priority": 1},
        "Unknown field 'priority'",
    ),
    ({"assetId": 5, "targets": [{"model": "bass", "formats": ["wav"]}]}, "'assetId' must be a string"),
    ({"url": 5, "targets": [{"model": "bass", "formats": ["wav"]}]}, "'url' must be a non-empty http(s) URL"),
    ({"url": "file:///etc/passwd", "targets": [{"model": "bass", "formats": ["wav"]}]}, "http"),
    ({"url": "ftp://example.com/a.wav", "targets": [{"model": "bass", "formats": ["wav"]}]}, "http"),
    (
        {"assetId": "A", "targets": [{"model": "bass", "formats": ["wav"]}], "callbackUrl": 7},
        "must be a string",
    ),
    (
        {"assetId": "A", "targets": [{"model": "bass", "formats": ["wav"]}], "callbackUrl": "gopher://x/"},
        "http",
    ),
    (
        {
            "assetId": "A",
            "targets": [{"model": "bass", "formats": ["wav"]}],
            "callbackUrl": "http://a/",
            "callback_url": "http://b/",
        },
        "callback URL once",
    ),
]


@pytest.mark.parametrize(("body", "message"), BAD_BODIES)
def test_every_validation_error_is_a_clear_400(client, api_key, body, message):
    key = api_key()
    resp = create(client, key, body)
    assert resp.status_code == 400, resp.get_json()
    err = resp.get_json()
    assert err["statusCode"] == 400 and message in err["message"], err


def test_media_type_json_and_asset_errors(client, api_key, upload, mix_wav):
    key, other = api_key(), api_key()
    resp = client.post("/tasks", data=b"assetId=1", headers={**key.headers, "Content-Type": "text/plain"})
    assert resp.status_code == 415
    resp = client.post("/tasks", data=b"{nope", headers={**key.headers, "Content-Type": "application/json"})
    assert resp.status_code == 400 and "Malformed JSON" in resp.get_json()["message"]
    resp = client.post("/tasks", data=b"[1]", headers={**key.headers, "Content-Type": "application/json"})
    assert resp.status_code == 400
    targets = [{"model": "vocals", "formats": ["wav"]}]
    assert create(client, key, {"assetId": "afa_missing", "targets": targets}).status_code == 404
    theirs = upload(other, mix_wav)
    resp = create(client, key, {"assetId": theirs, "targets": targets})
    assert resp.status_code == 404 and resp.get_json()["message"] == "Cannot find asset"
    assert client.get("/tasks/nope", headers=key.headers).status_code == 404
    assert client.get("/tasks", headers={"x-api-key": "wrong"}).status_code == 401


def test_insufficient_credits_charges_nothing(client, api_key, upload, r, mix_wav):
    key = api_key(credits=25)  # 2 stems cost 20, 4 stems 30
    aid = upload(key, mix_wav)
    resp = create(client, key, {"assetId": aid, "targets": [{"model": "drums", "formats": ["wav"]}]})
    assert resp.status_code == 400 and resp.get_json()["message"] == "Insufficient credits"
    assert keys.balance(r, key.id) == 25


# ------------------------------------------------------------------ running


def test_task_on_asset_all_targets_share_one_run(client, api_key, upload, r, worker, mix_wav):
    key = api_key(credits=100)
    aid = upload(key, mix_wav)
    body = {
        "assetId": aid,
        "targets": [
            {"model": "vocals", "formats": ["wav", "mp3"]},
            {"model": "instrumental", "formats": ["flac"]},
            {"model": "drums", "formats": ["wav"]},
        ],
    }
    resp = create(client, key, body)
    assert resp.status_code == 201, resp.get_json()
    doc = resp.get_json()
    assert resp.headers["Location"] == f"http://testserver/tasks/{doc['id']}"
    assert doc["status"] in ("queued", "processing") and doc["assetId"] == aid
    assert [t["model"] for t in doc["targets"]] == ["vocals", "instrumental", "drums"]
    assert keys.balance(r, key.id) == 70  # one 4-stem run
    done = wait_task(client, key, doc["id"])
    assert done["status"] == "completed", done
    outs = {t["model"]: {o["format"]: o["link"] for o in t["output"]} for t in done["targets"]}
    assert set(outs["vocals"]) == {"wav", "mp3"} and set(outs["instrumental"]) == {"flac"}
    decoded = {}
    for model, links in outs.items():
        for fmt, link in links.items():
            y, sr = sf.read(io.BytesIO(fetch(link)), always_2d=True)
            assert sr == SR and y.shape[1] == 2 and abs(y.shape[0] / sr - 6.0) < 0.1, (model, fmt)
            decoded[(model, fmt)] = y
    x, _ = sf.read(io.BytesIO(mix_wav), always_2d=True)
    # instrumental + vocals is the mixture (16-bit outputs, lossless formats)
    rebuilt = decoded[("vocals", "wav")] + decoded[("instrumental", "flac")]
    assert np.max(np.abs(rebuilt - x)) < 0.01, np.max(np.abs(rebuilt - x), axis=0)
    assert all(t["status"] == "completed" for t in done["targets"])
    # listed, newest first; another tenant sees nothing
    listed = client.get("/tasks", headers=key.headers).get_json()
    assert [t["id"] for t in listed] == [doc["id"]]
    assert client.get(f"/tasks/{doc['id']}", headers=api_key().headers).status_code == 404
    assert keys.balance(r, key.id) == 70


def test_task_from_url(client, api_key, r, worker, http_server, mix_wav):
    key = api_key(credits=100)
    http_server.get["/song.wav"] = (200, {"Content-Type": "audio/wav"}, mix_wav)
    body = {"url": f"{http_server.url}/song.wav", "targets": [{"model": "vocals", "formats": ["wav"]}]}
    resp = create(client, key, body)
    assert resp.status_code == 201, resp.get_json()
    doc = wait_task(client, key, resp.get_json()["id"])
    assert doc["status"] == "completed", doc
    assert keys.balance(r, key.id) == 80  # 2-stem run
    asset = client.get(f"/assets/{doc['assetId']}", headers=key.headers).get_json()
    assert asset["name"] == "song.wav" and fetch(asset["link"]) == mix_wav


def test_url_upstream_errors_are_4xx(client, api_key, http_server):
    key = api_key()
    targets = [{"model": "vocals", "formats": ["wav"]}]
    http_server.get["/text"] = (200, {"Content-Type": "text/plain"}, b"hello, not audio")
    for path, status in (("/missing.wav", None), ("/text", 415)):
        resp = create(client, key, {"url": f"{http_server.url}{path}", "targets": targets})
        assert 400 <= resp.status_code < 500, resp.get_json()
        if status:
            assert resp.status_code == status
    assert client.get("/tasks", headers=key.headers).get_json() == []


@pytest.fixture
def strict_client(settings, clean):
    """An API whose operator allowlisted nothing (production's default)."""
    app = create_app(settings.replace(fetch_allowlist=()))
    app.config["TESTING"] = True
    return app.test_client()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/song.wav",
        "http://localhost:{port}/song.wav",
        "http://[::1]:{port}/song.wav",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/a.wav",
        "http://192.168.1.1/a.wav",
        "http://0.0.0.0:{port}/song.wav",
        "http://[::ffff:127.0.0.1]:{port}/song.wav",
        "http://2130706433:{port}/song.wav",
    ],
)
def test_ssrf_private_addresses_refused(strict_client, api_key, http_server, mix_wav, url):
    key = api_key()
    http_server.get["/song.wav"] = (200, {"Content-Type": "audio/wav"}, mix_wav)
    body = {"url": url.format(port=http_server.port), "targets": [{"model": "vocals", "formats": ["wav"]}]}
    resp = create(strict_client, key, body)
    assert resp.status_code == 400, resp.get_json()
    assert http_server.received == []


def test_ssrf_redirect_to_a_refused_address(settings, clean, api_key, http_server, mix_wav):
    """The first hop is allowlisted (127.0.0.1 only); its redirect to another
    loopback address is not, and is refused before it is fetched."""
    app = create_app(settings.replace(fetch_allowlist=("127.0.0.1/32",)))
    client = app.test_client()
    key = api_key()
    http_server.get["/hop"] = (302, {"Location": f"http://127.0.0.2:{http_server.port}/song.wav"}, b"")
    body = {"url": f"{http_server.url}/hop", "targets": [{"model": "vocals", "formats": ["wav"]}]}
    resp = create(client, key, body)
    assert resp.status_code == 400, resp.get_json()


def test_callback_url_to_private_address_refused(strict_client, api_key, upload, mix_wav):
    key = api_key()
    aid = upload(key, mix_wav)
    body = {
        "assetId": aid,
        "targets": [{"model": "vocals", "formats": ["wav"]}],
        "callbackUrl": "http://127.0.0.1:9/hook",
    }
    resp = create(strict_client, key, body)
    assert resp.status_code == 400, resp.get_json()


# ------------------------------------------------------------------ callbacks


def _secret(client, key) -> str:
    return client.get("/v1/account", headers=key.headers).get_json()["webhook_secret"]


def test_task_callback_is_signed_and_retried(client, api_key, upload, worker, http_server, mix_wav):
    key = api_key()
    aid = upload(key, mix_wav)
    http_server.post_status = [503]  # the first delivery fails: retried with backoff
    body = {
        "assetId": aid,
        "targets": [{"model": "vocals", "formats": ["wav"]}],
        "callbackUrl": f"{http_server.url}/hook",
    }
    task_id = create(client, key, body).get_json()["id"]
    http_server.wait_for(2, timeout=120)
    first, second = http_server.received[:2]
    assert first.body == second.body
    secret = _secret(client, key)
    for got in (first, second):
        assert got.headers["Content-Type"] == "application/json"
        assert webhooks.verify(got.body, secret, got.headers[webhooks.SIGNATURE_HEADER])
        assert not webhooks.verify(got.body, "another-secret", got.headers[webhooks.SIGNATURE_HEADER])
        assert not webhooks.verify(got.body + b" ", secret, got.headers[webhooks.SIGNATURE_HEADER])
    doc = json.loads(second.body)
    assert doc["id"] == task_id and doc["status"] == "completed"
    assert doc["targets"][0]["output"][0]["format"] == "wav"
    assert doc["type"] == "job.completed" and "callbackStatus" not in doc
    webhooks.verify_standard(second.body, second.headers, secret)
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == task_id
    time.sleep(1.5)
    assert len(http_server.received) == 2  # delivered once it succeeded
    status = client.get(f"/tasks/{task_id}", headers=key.headers).get_json()["callbackStatus"]
    assert status["attempts"] == 2 and status["lastStatus"] == 200 and status["lastError"] is None
    assert status["deliveredAt"].endswith("Z")


def test_v1_job_callback(client, api_key, upload, worker, http_server, mix_wav):
    key = api_key()
    aid = upload(key, mix_wav)
    resp = client.post(
        "/v1/bpm", json={"asset_id": aid, "callback_url": f"{http_server.url}/done"}, headers=key.headers
    )
    assert resp.status_code == 200, resp.get_json()
    http_server.wait_for(1)
    got = http_server.received[0]
    assert got.path == "/done"
    assert webhooks.verify(got.body, _secret(client, key), got.headers[webhooks.SIGNATURE_HEADER])
    doc = json.loads(got.body)
    assert doc["job_id"] == resp.get_json()["job_id"] and doc["status"] == "completed"
    assert doc["result"]["tempo"] == resp.get_json()["tempo"]
    # a cache hit still owes its callback
    again = client.post(
        "/v1/bpm", json={"asset_id": aid, "callback_url": f"{http_server.url}/again"}, headers=key.headers
    )
    assert again.get_json()["_meta"]["cache"] == "hit"
    http_server.wait_for(2)
    assert http_server.received[1].path == "/again"
