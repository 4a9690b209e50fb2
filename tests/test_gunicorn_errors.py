"""Errors gunicorn answers itself, before the application sees the request,
are in the API's JSON error shape too (ops/gunicorn_worker.py): raw requests
over a socket to the API under gunicorn."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import pytest


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
