"""The upload pipeline against the real S3 server: parts are sent while the
next ones are read, the stored object is byte for byte the stream, and a
stream that fails midway leaves neither an object nor unfinished parts."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
from urllib.parse import urlsplit

import pytest
from audiogen import wav

from shared.storage import Storage

MB = 1024 * 1024
PART = 5 * MB


class Source:
    """``read(n)`` over ``data`` in chunks of at most ``chunk`` bytes; raises
    ``fail`` once ``fail_after`` bytes have been handed out."""

    def __init__(self, data: bytes, chunk: int = 300_000, fail_after: int | None = None, fail=None):
        self.data, self.pos, self.chunk = data, 0, chunk
        self.fail_after, self.fail = fail_after, fail

    def read(self, n: int = -1) -> bytes:
        if self.fail_after is not None and self.pos >= self.fail_after:
            raise self.fail
        n = self.chunk if n < 0 else min(n, self.chunk)
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out


def _stored(storage: Storage, name: str) -> bytes:
    return b"".join(storage.open(name))


@pytest.mark.parametrize("size", [0, 1, PART - 1, PART, PART + 1, 3 * PART + 12345])
def test_put_stream_stores_every_size_byte_for_byte(storage, size):
    data = os.urandom(size)
    storage.put_stream("originals/afa_pipeline", Source(data), "application/octet-stream")
    assert (
        hashlib.sha256(_stored(storage, "originals/afa_pipeline")).digest() == hashlib.sha256(data).digest()
    )
    assert storage.unfinished_uploads() == []


@pytest.mark.parametrize("in_flight", [1, 4])
def test_stream_failing_mid_upload_leaves_no_object_and_no_parts(settings, clean, in_flight):
    storage = Storage(settings.replace(upload_parts_in_flight=in_flight))

    class ClientGone(Exception):
        pass

    src = Source(os.urandom(6 * PART), fail_after=4 * PART + 100, fail=ClientGone())
    with pytest.raises(ClientGone):  # the source's own exception, unchanged
        storage.put_stream("originals/afa_broken", src, "application/octet-stream")
    assert src.pos > 3 * PART  # several parts were sent before the failure
    assert not storage.exists("originals/afa_broken")
    assert storage.unfinished_uploads() == []


def _post(url: str, path: str, body: bytes, headers: dict) -> tuple[int, dict]:
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    conn.request("POST", path, body=body, headers=headers)
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read())


def test_multipart_sized_upload_through_gunicorn_is_stored_whole(live_api, api_key, storage):
    """WAVs of five and four parts through both dialects: the hash the API
    reports and the stored bytes are the client's."""
    key = api_key()
    data = wav(120.0, seed=5)  # 20 MB
    status, body = _post(live_api, "/v1/assets/upload", data, {**key.headers, "Content-Type": "audio/wav"})
    assert status == 201, body
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert _stored(storage, f"originals/{body['asset_id']}") == data

    other = wav(100.0, seed=6)  # 17 MB
    boundary = "pipelineboundary"
    form = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="b.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        + other
        + f"\r\n--{boundary}--\r\n".encode()
    )
    status, body = _post(
        live_api,
        "/assets",
        form,
        {**key.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert status == 201, body
    assert _stored(storage, f"originals/{body['id']}") == other
    assert storage.unfinished_uploads() == []
