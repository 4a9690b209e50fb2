"""Signed webhook delivery against a real receiver on 127.0.0.1.

The receiver records what arrives and answers the status its path names,
so the tests check the signature as a client's receiver would (over the raw
bytes it got) and the retry classification of every kind of answer. Then the
Standard Webhooks headers, replay tolerance and secret rotation, end to end
through a worker: a job's callback verified with the old and the new secret.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import soundfile as sf
import synth
from conftest import run_cli

from shared import keys
from shared.errors import ApiError
from shared.webhooks import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    DeliveryError,
    WebhookVerificationError,
    deliver,
    sign,
    sign_standard,
    standard_headers,
    verify,
    verify_standard,
)

LOOPBACK = ["127.0.0.0/8"]
SECRET = "whsec_test_3f9a"
DOC = json.dumps({"job_id": "job_123", "status": "completed", "finished_at": "2026-01-01T00:00:00Z"}).encode()


class _Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format, *args) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.path, dict(self.headers), body))
        parts = self.path.strip("/").split("/")
        if parts[0] == "slow":
            time.sleep(2)
        status = int(parts[1]) if len(parts) > 1 else 200
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", "7")
        if 300 <= status < 400:
            self.send_header("Location", "/hook/200")
        self.send_header("Content-Length", "0")
        self.end_headers()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Receiver)
        self.received: list[tuple[str, dict, bytes]] = []

    def handle_error(self, request, client_address) -> None:
        pass

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@pytest.fixture(scope="module")
def receiver():
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


# --------------------------------------------------------------------------- signatures


def test_signature_is_hex_hmac_sha256_with_a_prefix():
    # RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
    assert sign(b"what do ya want for nothing?", "Jefe") == (
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


def test_verify_accepts_only_the_right_secret_and_body():
    header = sign(DOC, SECRET)
    assert verify(DOC, SECRET, header)
    assert verify(DOC, SECRET, f" {header} ")
    assert not verify(DOC, "another-secret", header)
    assert not verify(DOC + b" ", SECRET, header)
    assert not verify(DOC, SECRET, header.removeprefix("sha256="))
    assert not verify(DOC, SECRET, "sha1=" + header.removeprefix("sha256="))
    for junk in (None, "", "sha256=", "sha256=zz", "sha256=ü" * 10):
        assert not verify(DOC, SECRET, junk)
    assert not verify(DOC, "", sign(DOC, ""))


# --------------------------------------------------------------------------- delivery


def test_delivery_is_signed_and_verifiable_by_the_receiver(receiver):
    assert deliver(receiver.url("/hook/200"), DOC, SECRET, allow=LOOPBACK, delivery_id="job_123") == 200
    path, headers, body = receiver.received[-1]
    assert body == DOC
    assert headers["Content-Type"] == "application/json"
    assert headers[DELIVERY_HEADER] == "job_123"
    assert verify(body, SECRET, headers[SIGNATURE_HEADER])
    assert not verify(body, "another-secret", headers[SIGNATURE_HEADER])


def test_the_default_delivery_id_is_stable_across_retries(receiver):
    other = DOC.replace(b"completed", b"failed")
    for doc in (DOC, DOC, other):
        deliver(receiver.url("/hook/204"), doc, SECRET, allow=LOOPBACK)
    ids = [headers[DELIVERY_HEADER] for _, headers, _ in receiver.received[-3:]]
    assert ids[0] == ids[1] != ids[2]


@pytest.mark.parametrize("status", [200, 201, 202, 204, 301, 302, 400, 401, 403, 404, 410, 413, 422])
def test_final_answers_are_returned(receiver, status):
    seen = len(receiver.received)
    assert deliver(receiver.url(f"/hook/{status}"), DOC, SECRET, allow=LOOPBACK) == status
    assert len(receiver.received) == seen + 1  # redirects are not followed


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_answers_raise_delivery_error(receiver, status):
    with pytest.raises(DeliveryError) as e:
        deliver(receiver.url(f"/hook/{status}"), DOC, SECRET, allow=LOOPBACK)
    assert e.value.status == status
    assert str(status) in e.value.message
    assert e.value.retry_after == (7.0 if status == 429 else None)


def test_network_failures_and_timeouts_raise_delivery_error(receiver):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DeliveryError) as e:
        deliver(f"http://127.0.0.1:{port}/hook", DOC, SECRET, allow=LOOPBACK)
    assert e.value.status is None and "connection refused" in e.value.message
    with pytest.raises(DeliveryError):
        deliver("http://no-such-host.invalid/hook", DOC, SECRET, allow=LOOPBACK)
    t0 = time.monotonic()
    with pytest.raises(DeliveryError) as e:
        deliver(receiver.url("/slow/200"), DOC, SECRET, allow=LOOPBACK, timeout_s=0.4)
    assert e.value.status is None
    assert time.monotonic() - t0 < 1.2


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:{port}/hook/200", "http://localhost:{port}/hook/200", "http://169.254.169.254/hook"],
)
def test_non_public_receivers_are_refused_without_connecting(receiver, url):
    seen = len(receiver.received)
    with pytest.raises(ApiError) as e:
        deliver(url.format(port=receiver.server_address[1]), DOC, SECRET, allow=[], timeout_s=2)
    assert e.value.status == 400
    assert e.value.message.startswith("callback_url is refused")
    assert len(receiver.received) == seen


@pytest.mark.parametrize("url", ["ftp://example.com/hook", "file:///tmp/hook", "gopher://example.com/"])
def test_non_http_receivers_are_refused(url):
    with pytest.raises(ApiError) as e:
        deliver(url, DOC, SECRET, allow=LOOPBACK, field="callbackUrl")
    assert e.value.status == 400
    assert e.value.message.startswith("callbackUrl must be an http or https URL")


# --------------------------------------------------------------------------- Standard Webhooks


def test_standard_signature_matches_the_reference_libraries():
    # The test vector of the standard's own libraries (secret, id, timestamp, body -> signature).
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    sig = sign_standard("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}', secret)
    assert sig == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_new_secrets_have_the_standard_format(api_key, r):
    import base64

    secret = keys.webhook_secret(r, api_key().id)
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32


def test_verify_standard_checks_signature_and_timestamp():
    t = 1_800_000_000
    headers = standard_headers("job_abc", t, DOC, [SECRET])
    verify_standard(DOC, headers, SECRET, now=t)
    verify_standard(DOC, {k.upper(): v for k, v in headers.items()}, [SECRET], now=t + 299)
    verify_standard(DOC, headers, ["whsec_other", SECRET], now=t - 299)  # any of the receiver's secrets
    bad = [
        (DOC, headers, "whsec_b3RoZXI=", t, "no signature matches"),
        (DOC + b" ", headers, SECRET, t, "no signature matches"),
        (DOC, {**headers, "webhook-id": "job_other"}, SECRET, t, "no signature matches"),
        (DOC, headers, SECRET, t + 301, "too old"),  # a replay outside the 5 min tolerance
        (DOC, headers, SECRET, t - 301, "in the future"),
        (DOC, {**headers, "webhook-timestamp": "soon"}, SECRET, t, "not an integer"),
        (DOC, {k: v for k, v in headers.items() if k != "webhook-signature"}, SECRET, t, "missing"),
        (
            DOC,
            {**headers, "webhook-signature": "v1a," + headers["webhook-signature"][3:]},
            SECRET,
            t,
            "no sig",
        ),
    ]
    for body, h, secret, now, why in bad:
        with pytest.raises(WebhookVerificationError, match=why):
            verify_standard(body, h, secret, now=now)
    # a shorter tolerance is the receiver's choice
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify_standard(DOC, headers, SECRET, now=t + 61, tolerance_s=60)


def test_delivery_carries_standard_headers_signed_with_every_secret(receiver):
    new, old = (
        "whsec_bmV3LXNlY3JldC1uZXctc2VjcmV0LTMyYnl0ZXM=",
        "whsec_b2xkLXNlY3JldC1vbGQtc2VjcmV0LTMyYnl0ZXM=",
    )
    t0 = time.time()
    assert deliver(receiver.url("/hook/200"), DOC, [new, old], allow=LOOPBACK, delivery_id="job_9") == 200
    _, headers, body = receiver.received[-1]
    assert headers["webhook-id"] == headers[DELIVERY_HEADER] == "job_9"
    assert abs(int(headers["webhook-timestamp"]) - t0) <= 2
    assert len(headers["webhook-signature"].split(" ")) == 2
    verify_standard(body, headers, new)
    verify_standard(body, headers, old)
    with pytest.raises(WebhookVerificationError):
        verify_standard(body, headers, SECRET)
    with pytest.raises(WebhookVerificationError, match="too old"):  # the same bytes replayed later
        verify_standard(body, headers, new, now=t0 + 400)
    assert verify(body, new, headers[SIGNATURE_HEADER])  # the legacy header: current secret only
    assert not verify(body, old, headers[SIGNATURE_HEADER])


def test_rotation_keeps_the_old_secret_for_the_grace_period(api_key, r):
    key = api_key()
    old = keys.webhook_secret(r, key.id)
    t = time.time()
    rot = keys.rotate_webhook_secret(r, key.id, grace_s=86400, now=t)
    assert rot.current != old and rot.current.startswith("whsec_")
    assert rot.previous == old and rot.previous_valid_until == t + 86400
    assert keys.webhook_secrets(r, key.id, now=t + 86399).signing == [rot.current, old]
    assert keys.webhook_secrets(r, key.id, now=t + 86400).signing == [rot.current]
    again = keys.rotate_webhook_secret(r, key.id, grace_s=86400, now=t + 10)
    assert keys.webhook_secrets(r, key.id, now=t + 11).signing == [again.current, rot.current]
    with pytest.raises(ApiError) as e:
        keys.rotate_webhook_secret(r, "key_missing", grace_s=1)
    assert e.value.status == 404


# --------------------------------------------------------------------------- through the API and a worker


@pytest.fixture(scope="module")
def song() -> bytes:
    y = synth.chord_progression("C", "major", 6.0, sr=22050, seed=3, with_drums=True)
    buf = io.BytesIO()
    sf.write(buf, np.asarray(y), 22050, format="WAV", subtype="PCM_16")
    return buf.getvalue()


GRACE_S = 8


@pytest.fixture
def short_grace_client(settings, clean):
    """The API with a short rotation grace, so the test sees it end."""
    from web import create_app

    app = create_app(settings.replace(webhook_secret_grace_s=GRACE_S))
    app.config["TESTING"] = True
    return app.test_client()


def _callback_job(client, key, aid: str, url: str | None) -> dict:
    resp = client.post(
        "/v1/bpm",
        json={"asset_id": aid} | ({"callback_url": url} if url else {}),
        headers={**key.headers, "Prefer": "wait=60"},  # the worker's first job compiles its DSP
    )
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def test_rotated_secret_deliveries_verify_with_both_secrets_then_only_the_new(
    short_grace_client, api_key, upload, worker, http_server, song
):
    client, key = short_grace_client, api_key()
    aid = upload(key, song)
    _callback_job(client, key, aid, None)  # warm the worker up, so the grace period is not spent on that
    old = client.get("/v1/account", headers=key.headers).get_json()["webhook_secret"]
    rotated_at = time.time()
    resp = client.post("/v1/account/webhook-secret", headers=key.headers)
    assert resp.status_code == 200, resp.get_json()
    new, until = resp.get_json()["webhook_secret"], resp.get_json()["previous_valid_until"]
    assert new != old and new.startswith("whsec_") and until.endswith("Z")
    account = client.get("/v1/account", headers=key.headers).get_json()
    assert account["webhook_secret"] == new and account["webhook_secret_previous_valid_until"] == until

    job = _callback_job(client, key, aid, f"{http_server.url}/hook")
    http_server.wait_for(1)
    got = http_server.received[0]
    assert int(got.headers["webhook-timestamp"]) < rotated_at + GRACE_S, "too slow to test the grace"
    verify_standard(got.body, got.headers, old)  # a receiver that has not switched yet
    verify_standard(got.body, got.headers, new)
    payload = json.loads(got.body)
    assert payload["type"] == "job.completed" and payload["job_id"] == job["job_id"]
    assert payload["timestamp"].endswith("Z") and "callback_status" not in payload
    assert got.headers["webhook-id"] == job["job_id"]

    time.sleep(max(0.0, rotated_at + GRACE_S + 1 - time.time()))  # past the grace: the old one signs no more
    _callback_job(client, key, aid, f"{http_server.url}/later")  # a cache hit owes its callback too
    http_server.wait_for(2)
    later = http_server.received[1]
    verify_standard(later.body, later.headers, new)
    with pytest.raises(WebhookVerificationError):
        verify_standard(later.body, later.headers, old)
    assert len(later.headers["webhook-signature"].split(" ")) == 1


def test_callback_status_is_shown_on_the_job(client, api_key, upload, worker, http_server, song):
    key = api_key()
    aid = upload(key, song)
    http_server.post_status = [503]  # the first attempt fails, the retry is delivered
    job = _callback_job(client, key, aid, f"{http_server.url}/hook")
    http_server.wait_for(2, timeout=60)
    deadline = time.monotonic() + 10
    while True:
        doc = client.get(f"/v1/jobs/{job['job_id']}", headers=key.headers).get_json()
        if doc["callback_status"]["delivered_at"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    st = doc["callback_status"]
    assert st["attempts"] == 2 and st["last_status"] == 200 and st["last_error"] is None, st
    assert st["delivered_at"].endswith("Z")
    # without a callback URL there is no status
    plain = client.post("/v1/bpm", json={"asset_id": aid}, headers=key.headers).get_json()
    assert (
        client.get(f"/v1/jobs/{plain['job_id']}", headers=key.headers).get_json()["callback_status"] is None
    )


def test_operator_rotates_a_keys_webhook_secret(stack_env, client, api_key):
    key = api_key()
    old = client.get("/v1/account", headers=key.headers).get_json()["webhook_secret"]
    out = run_cli(stack_env, "keys", "rotate-webhook-secret", key.id, "--json")
    assert out.returncode == 0, out.stderr
    rot = json.loads(out.stdout)
    account = client.get("/v1/account", headers=key.headers).get_json()
    assert account["webhook_secret"] == rot["webhook_secret"] != old
    assert account["webhook_secret_previous_valid_until"] == rot["previous_valid_until"]
    missing = run_cli(stack_env, "keys", "rotate-webhook-secret", "key_nope")
    assert missing.returncode == 2 and "Cannot find key" in missing.stderr
