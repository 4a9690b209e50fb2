"""Uploads through gunicorn (gevent), as production serves them: bodies are
streamed, and an oversized one is refused while it is still arriving."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

from audiogen import wav

from shared import db

MB = 1024 * 1024


def _conn(url: str) -> http.client.HTTPConnection:
    u = urlsplit(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=60)


def _send_chunked(conn, path: str, headers: dict, chunks) -> tuple[int, dict]:
    conn.putrequest("POST", path)
    for k, v in {**headers, "Transfer-Encoding": "chunked"}.items():
        conn.putheader(k, v)
    conn.endheaders()
    try:
        for c in chunks:
            conn.send(b"%x\r\n%s\r\n" % (len(c), c))
        conn.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server refused mid-body and closed: the response is what counts
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read() or b"{}")


def test_chunked_upload_streams_through_gunicorn(live_api, api_key, storage):
    key = api_key()
    data = wav(3.0, seed=21)
    status, body = _send_chunked(
        _conn(live_api),
        "/v1/assets/upload",
        {**key.headers, "Content-Type": "audio/wav"},
        (data[i : i + 65536] for i in range(0, len(data), 65536)),
    )
    assert status == 201, body
    assert body["size_bytes"] == len(data)
    assert [o.name for o in storage.list()] == [f"originals/{body['asset_id']}"]


def test_oversized_chunked_upload_is_413_while_streaming(live_api, api_key, storage, r):
    key = api_key(plan="basic")  # 15 MB limit
    sent = 0

    def chunks():
        nonlocal sent
        head = wav(1.0)
        yield head
        sent += len(head)
        while sent < 200 * MB:  # far more than the limit; the server must stop us early
            yield b"\0" * MB
            sent += MB

    status, body = _send_chunked(
        _conn(live_api), "/v1/assets/upload", {**key.headers, "Content-Type": "audio/wav"}, chunks()
    )
    assert status == 413, body
    assert body["statusCode"] == 413 and "15 MB" in body["message"]
    assert sent < 100 * MB, f"the server kept reading: {sent // MB} MB sent"
    assert list(storage.list()) == []
    assert storage.unfinished_uploads() == []  # the parts in flight were aborted too
    assert r.keys(db.PREFIX + "asset:*") == []


def test_oversized_multipart_is_413_and_stores_nothing(live_api, api_key, storage):
    key = api_key(plan="basic")
    boundary = "audioqboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()

    def chunks():
        yield head + wav(1.0)
        for _ in range(40):
            yield b"\0" * MB

    status, body = _send_chunked(
        _conn(live_api),
        "/assets",
        {**key.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        chunks(),
    )
    assert status == 413, body
    assert list(storage.list()) == []


def test_declared_oversize_refused_before_body(live_api, api_key):
    key = api_key(plan="basic")
    conn = _conn(live_api)
    conn.putrequest("POST", "/v1/assets/upload")
    conn.putheader("x-api-key", key.secret)
    conn.putheader("Content-Type", "audio/wav")
    conn.putheader("Content-Length", str(400 * MB))
    conn.endheaders()  # no body sent at all
    resp = conn.getresponse()
    assert resp.status == 413
    assert json.loads(resp.read())["statusCode"] == 413


def test_concurrent_identical_uploads_make_one_asset(live_api, api_key, storage, r):
    from concurrent.futures import ThreadPoolExecutor

    key = api_key(plan="enterprise")  # six uploads at once: within its concurrent-upload limit
    data = wav(2.0, seed=77)

    def post(_):
        conn = _conn(live_api)
        conn.request(
            "POST", "/v1/assets/upload", body=data, headers={**key.headers, "Content-Type": "audio/wav"}
        )
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())["asset_id"]

    with ThreadPoolExecutor(6) as ex:
        results = list(ex.map(post, range(6)))
    assert sorted(s for s, _ in results).count(201) == 1, results
    assert {a for _, a in results} == {results[0][1]}
    assert [o.name for o in storage.list()] == [f"originals/{results[0][1]}"]
    assert len(r.keys(db.PREFIX + "asset:*")) == 1


def test_waiting_requests_do_not_block_the_api(live_api, api_key, worker, celery_app):
    """Five requests waiting on jobs hold no gunicorn worker: with a single
    gevent worker process, /healthz still answers at once meanwhile."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    key = api_key(credits=20)
    conn = _conn(live_api)
    conn.request(
        "POST",
        "/v1/assets/upload",
        body=wav(1.0, seed=81),
        headers={**key.headers, "Content-Type": "audio/wav"},
    )
    aid = json.loads(conn.getresponse().read())["asset_id"]

    def waiting(_):
        c = _conn(live_api)
        c.request(
            "POST", "/v1/lufs", body=json.dumps({"asset_id": aid}),
            headers={**key.headers, "Content-Type": "application/json", "Prefer": "wait=4"},
        )  # fmt: skip
        resp = c.getresponse()
        return resp.status, json.loads(resp.read())

    celery_app.control.cancel_consumer("analysis", reply=True, timeout=5, limit=1)
    try:
        with ThreadPoolExecutor(5) as ex:
            futures = [ex.submit(waiting, i) for i in range(5)]
            time.sleep(0.5)
            t0 = time.monotonic()
            c = _conn(live_api)
            c.request("GET", "/healthz")
            assert c.getresponse().status == 200
            assert time.monotonic() - t0 < 1.0
            results = [f.result() for f in futures]
    finally:
        celery_app.control.add_consumer("analysis", reply=True, timeout=5, limit=1)
    assert [s for s, _ in results] == [202] * 5  # the wait ran out: answered 202, job still queued
