"""Signed webhook delivery against a real receiver on 127.0.0.1.

The receiver records what arrives and answers the status its path names,
so the tests check the signature as a client's receiver would (over the raw
bytes it got) and the retry classification of every kind of answer.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shared.errors import ApiError
from shared.webhooks import DELIVERY_HEADER, SIGNATURE_HEADER, DeliveryError, deliver, sign, verify

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
