"""Uploads' faults on a disposable stack (tests/faultstack.py: real gunicorn,
redis-server and S3 on loopback): a key dripping bodies cannot starve the
API. Counts asserted, not timings.

Settings of this stack: pro keys may have 3 uploads receiving at once, a body
must average 2 MB/s once 4 s have passed, and the request-rate burst is
raised so that the concurrent-upload limit is what refuses the flood.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
import pytest
from audiogen import wav
from faultstack import FaultStack, upload

from shared import db

pytestmark = pytest.mark.timeout(180)

MB = 1024 * 1024
LIMIT = 3
FLOOD = 200
ENV = {
    "AUDIOQ_PLAN_PRO_CONCURRENT_UPLOADS": str(LIMIT),
    "AUDIOQ_UPLOAD_MIN_KB_S": "2048",
    "AUDIOQ_UPLOAD_GRACE_S": "4",
    "AUDIOQ_PLAN_PRO_BURST": "1000",
    "AUDIOQ_PLAN_PRO_RATE_PER_S": "500",
}


@pytest.fixture
def stack(tmp_path):
    s = FaultStack(tmp_path / "stack", env=ENV)
    yield s
    s.stop()


def _open_upload(url: str, secret: str, length: int, first: bytes) -> socket.socket:
    """A raw upload whose headers promise ``length`` bytes and whose body so
    far is ``first``."""
    u = urlsplit(url)
    sock = socket.create_connection((u.hostname, u.port), timeout=60)
    head = (
        f"POST /v1/assets/upload HTTP/1.1\r\nHost: x\r\nx-api-key: {secret}\r\n"
        f"Content-Type: audio/wav\r\nContent-Length: {length}\r\n\r\n"
    )
    sock.sendall(head.encode() + first)
    return sock


def _response(sock: socket.socket) -> tuple[int, dict[str, str], dict]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed without a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    sock.close()
    return int(lines[0].split()[1]), headers, json.loads(body)


def _drip(sock: socket.socket, stop: threading.Event) -> None:
    """One byte every 0.3 s until the server answers or closes."""
    while not stop.wait(0.3):
        try:
            sock.send(b"\0")
        except OSError:
            return


def test_slow_uploads_of_one_key_are_limited_and_cut_off(stack: FaultStack):
    s = stack
    url = s.start_api()
    slow_secret, slow_id = s.key()
    other_secret, _ = s.key()
    clip = wav(1.0, seed=3)

    # The key's three upload slots: two bodies dripping a byte at a time, one
    # that sent 6 MB (a part is already in S3) and then stalled.
    stop = threading.Event()
    dripping = [_open_upload(url, slow_secret, 20 * MB, clip[:1000]) for _ in range(2)]
    drippers = [threading.Thread(target=_drip, args=(sk, stop), daemon=True) for sk in dripping]
    for t in drippers:
        t.start()
    stalled = _open_upload(url, slow_secret, 20 * MB, clip + b"\0" * (6 * MB - len(clip)))
    deadline = time.monotonic() + 10
    while s.r.zcard(db.uploads_key(slow_id)) < LIMIT and time.monotonic() < deadline:
        time.sleep(0.05)
    assert s.r.zcard(db.uploads_key(slow_id)) == LIMIT

    # A flood of further slow uploads from the same key: each is refused at
    # once, before its body is read, so none holds a connection.
    def flood(_):
        return _response(_open_upload(url, slow_secret, 20 * MB, b"RIFF"))

    with ThreadPoolExecutor(50) as ex:
        refused = list(ex.map(flood, range(FLOOD)))
    assert [st for st, _, _ in refused].count(429) == FLOOD, {st for st, _, _ in refused}
    assert {b["code"] for _, _, b in refused} == {"too_many_uploads"}
    assert all(h.get("retry-after") for _, h, _ in refused)

    # Meanwhile the API answers everyone else normally.
    assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    other_asset = upload(url, other_secret, wav(2.0, seed=4))

    # Past the grace period the three are cut off: 408, nothing stored.
    held = [_response(sk) for sk in [*dripping, stalled]]
    stop.set()
    assert [st for st, _, _ in held] == [408, 408, 408], held
    assert {b["code"] for _, _, b in held} == {"request_timeout"}
    from shared.storage import Storage

    storage = Storage(s.settings)
    assert [o.name for o in storage.list()] == [f"originals/{other_asset}"]
    assert storage.unfinished_uploads() == []  # the stalled one's part was aborted
    # Every slot was released; the key uploads again.
    assert s.r.zcard(db.uploads_key(slow_id)) == 0
    upload(url, slow_secret, clip)
    assert s.r.zcard(db.uploads_key(slow_id)) == 0
