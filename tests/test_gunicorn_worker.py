"""The API's gunicorn worker (ops/gunicorn_worker.py): errors gunicorn answers
itself are in the API's JSON error shape, and request bodies of known length
are read straight from the socket (``DirectBody``) without losing a byte or
the connection's next request. Raw requests over a socket to the API under
gunicorn, and ``DirectBody`` over a socket pair."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
from urllib.parse import urlsplit

import pytest
from audiogen import wav
from gunicorn.http.body import LengthReader
from gunicorn.http.unreader import SocketUnreader

from ops.gunicorn_worker import DirectBody


def _raw(url: str, request: bytes) -> tuple[int, dict[str, str], dict]:
    u = urlsplit(url)
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, json.loads(body)


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"GET /v1/assets?q=" + b"a" * 8000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
        (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",
            431,
            "headers_too_large",
        ),
        (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-H%d: 1\r\n" % i for i in range(150))
            + b"\r\n",
            431,
            "headers_too_large",
        ),
        (b"POST /v1/assets/upload HTTP/1.1\r\nHost: x\r\nContent-Length: lots\r\n\r\n", 400, "bad_request"),
        (b"POST /v1/assets/upload HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 400, "bad_request"),
        (b"NOT A REQUEST\r\n\r\n", 400, "bad_request"),
    ],
    ids=[
        "uri-too-long",
        "header-too-large",
        "too-many-headers",
        "bad-content-length",
        "negative-length",
        "garbage",
    ],
)
def test_gunicorn_refusals_are_json(live_api, request_bytes, status, code):
    got, headers, body = _raw(live_api, request_bytes)
    assert got == status, body
    assert headers["content-type"] == "application/json"
    assert set(body) == {"statusCode", "error", "message", "code"}
    assert body["statusCode"] == status and body["code"] == code
    assert body["error"] and body["message"]


def test_a_normal_request_still_answers(live_api):
    status, headers, body = _raw(live_api, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 200


def _responses(url: str, request: bytes, count: int) -> list[tuple[int, bytes]]:
    """Send ``request`` (several pipelined requests) on one connection and
    read ``count`` responses (status, body) from it."""
    u = urlsplit(url)
    out: list[tuple[int, bytes]] = []
    with socket.create_connection((u.hostname, u.port), timeout=30) as s:
        s.sendall(request)
        data = b""
        while len(out) < count:
            while b"\r\n\r\n" not in data:
                chunk = s.recv(65536)
                assert chunk, f"connection closed after {len(out)} responses"
                data += chunk
            head, _, data = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            length = next(
                int(v) for k, _, v in (x.partition(":") for x in lines[1:]) if k.lower() == "content-length"
            )
            while len(data) < length:
                chunk = s.recv(65536)
                assert chunk, "connection closed mid-response"
                data += chunk
            out.append((int(lines[0].split()[1]), data[:length]))
            data = data[length:]
    return out


def test_a_body_the_app_does_not_read_is_discarded_and_the_next_request_served(live_api):
    body = os.urandom(300_000)  # some arrives with the headers, the rest is still on the socket
    first = b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    second = b"GET /v1/ping-nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    (s1, _), (s2, b2) = _responses(live_api, first + second, 2)
    assert s1 == 200
    assert s2 == 404 and json.loads(b2)["code"] == "not_found"  # the second request, parsed where it starts


def test_an_upload_read_from_the_socket_is_stored_whole_and_a_pipelined_request_answered(
    live_api, api_key, storage
):
    key = api_key()
    data = wav(3.0, seed=11)  # about 0.5 MB
    upload = (
        b"POST /v1/assets/upload HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n"
        + f"x-api-key: {key.secret}\r\nContent-Length: {len(data)}\r\n\r\n".encode()
        + data
    )
    health = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    (s1, b1), (s2, _) = _responses(live_api, upload + health, 2)
    assert s1 == 201, b1
    asset = json.loads(b1)
    assert asset["sha256"] == hashlib.sha256(data).hexdigest()
    assert b"".join(storage.open(f"originals/{asset['asset_id']}")) == data
    assert s2 == 200


def _direct_body(length: int, ahead: bytes, on_socket: bytes, close: bool = True) -> DirectBody:
    """A DirectBody for a body of ``length`` bytes, gunicorn having read
    ``ahead`` with the headers and ``on_socket`` still to come."""
    ours, peer = socket.socketpair()
    peer.sendall(on_socket)
    if close:
        peer.close()
    unreader = SocketUnreader(ours)
    unreader.buf = io.BytesIO()
    unreader.buf.write(ahead)
    body = DirectBody(LengthReader(unreader, length), ours)
    body.unreader = unreader  # type: ignore[attr-defined]  # for the test's checks
    return body


def test_direct_body_serves_the_read_ahead_then_the_socket_and_stops_at_its_length():
    payload = os.urandom(200_000)
    body = _direct_body(len(payload), payload[:1000], payload[1000:] + b"NEXT REQUEST")
    got = bytearray()
    buf = bytearray(70_000)
    while n := body.readinto(buf):
        got += buf[:n]
    assert bytes(got) == payload
    assert body.read(10) == b"" and not body.failed


def test_direct_body_leaves_a_pipelined_request_in_gunicorns_buffer():
    body = _direct_body(5, b"hello" + b"GET / HTTP/1.1\r\n", b"")
    assert body.read(100) == b"hello"
    assert body.read(100) == b""
    assert body.unreader.buf.getvalue() == b"GET / HTTP/1.1\r\n"


def test_direct_body_small_reads_readline_and_iteration():
    text = b"first line\nsecond line\nno newline at the end"
    body = _direct_body(len(text), b"", text)
    assert body.read(3) == b"fir"
    assert body.readline() == b"st line\n"
    assert list(body) == [b"second line\n", b"no newline at the end"]


def test_direct_body_marks_itself_failed_when_the_client_vanishes_midway():
    body = _direct_body(1000, b"", b"x" * 400)  # the client closes after 400 of 1000 bytes
    assert body.read() == b"x" * 400
    assert body.failed  # gunicorn then closes the connection instead of parsing a next request
