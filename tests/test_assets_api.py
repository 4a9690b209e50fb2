"""The Assets API in both dialects, against real Redis and S3."""

from __future__ import annotations

import hashlib
import re
import urllib.request

import pytest
from audiogen import encode, tone, wav

from shared import db

FORMATS = {
    "wav": ("audio/wav", 44100, 2),
    "flac": ("audio/flac", 44100, 2),
    "ogg": ("audio/ogg", 44100, 2),
    "mp3": ("audio/mpeg", 44100, 2),
    "m4a": ("audio/mp4", 44100, 2),
}


@pytest.fixture(scope="module")
def encoded() -> dict[str, bytes]:
    x = tone(1.5)
    return {fmt: encode(x, fmt) for fmt in FORMATS}


def error_of(resp) -> dict:
    body = resp.get_json()
    assert {"statusCode", "error", "message", "code"} <= set(body), body
    assert re.fullmatch(r"[a-z][a-z_]+", body["code"]), body
    assert body["statusCode"] == resp.status_code
    assert body["message"]
    return body


# ------------------------------------------------------------------ uploads


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_v1_upload_each_format(client, api_key, encoded, fmt):
    key = api_key()
    data = encoded[fmt]
    resp = client.post(
        "/v1/assets/upload", data=data, headers={**key.headers, "Content-Type": "application/octet-stream"}
    )
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["asset_id"].startswith("afa_") and len(body["asset_id"]) >= 24
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["size_bytes"] == len(data)
    assert body["expires_at"].endswith("Z")

    meta = client.get(f"/v1/assets/{body['asset_id']}", headers=key.headers).get_json()
    assert meta["format"] == fmt
    assert meta["content_type"] == FORMATS[fmt][0]
    assert meta["sample_rate"] == FORMATS[fmt][1]
    assert meta["channels"] == FORMATS[fmt][2]
    assert abs(meta["duration_s"] - 1.5) < 0.1
    assert meta["created_at"] < meta["expires_at"]


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_tasks_upload_each_format(client, api_key, encoded, fmt):
    key = api_key()
    data = encoded[fmt]
    resp = client.post(
        "/assets",
        data={"file": (__import__("io").BytesIO(data), f"song.{fmt}", "application/octet-stream")},
        headers=key.headers,
        content_type="multipart/form-data",
    )
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert set(body) == {"id", "format", "link", "name"}
    assert body["format"] == fmt and body["name"] == f"song.{fmt}"
    # the presigned link serves the same bytes
    with urllib.request.urlopen(body["link"], timeout=10) as r:
        assert r.read() == data
    got = client.get(f"/assets/{body['id']}", headers=key.headers).get_json()
    assert got["mimeType"] == FORMATS[fmt][0] and got["id"] == body["id"]
    # the v1 dialect sees the same asset
    assert client.get(f"/v1/assets/{body['id']}", headers=key.headers).get_json()["sha256"] == (
        hashlib.sha256(data).hexdigest()
    )


def test_presigned_link_expires_with_asset(client, api_key, settings, storage):
    key = api_key()
    aid = client.post(
        "/v1/assets/upload", data=wav(), headers={**key.headers, "Content-Type": "audio/wav"}
    ).get_json()["asset_id"]
    link = client.get(f"/assets/{aid}", headers=key.headers).get_json()["link"]
    expires = int(link.split("X-Amz-Expires=")[1].split("&")[0])
    assert 0 < expires <= settings.plan("pro").asset_ttl_s


def test_dedup_same_owner_extends_expiry(client, api_key, r):
    key = api_key()
    data = wav(seed=1)
    h = {**key.headers, "Content-Type": "audio/wav"}
    first = client.post("/v1/assets/upload", data=data, headers=h)
    assert first.status_code == 201
    aid = first.get_json()["asset_id"]
    r.hset(db.asset_key(aid), "expires_at", repr(db.now() + 60))  # nearly expired
    second = client.post("/v1/assets/upload", data=data, headers=h)
    assert second.status_code == 200
    assert second.get_json()["asset_id"] == aid
    new_exp = float(r.hget(db.asset_key(aid), "expires_at"))
    assert new_exp > db.now() + 6 * 24 * 3600  # a full pro TTL from now
    # the multipart route dedups against the same store
    third = client.post(
        "/assets",
        data={"file": (__import__("io").BytesIO(data), "x.wav")},
        headers=key.headers,
        content_type="multipart/form-data",
    )
    assert third.status_code == 200 and third.get_json()["id"] == aid


def test_dedup_never_across_owners(client, api_key, storage):
    a, b = api_key(), api_key()
    data = wav(seed=2)
    ida = client.post("/v1/assets/upload", data=data, headers={**a.headers, "Content-Type": "audio/wav"})
    idb = client.post("/v1/assets/upload", data=data, headers={**b.headers, "Content-Type": "audio/wav"})
    assert ida.status_code == idb.status_code == 201
    assert ida.get_json()["asset_id"] != idb.get_json()["asset_id"]
    assert len([o for o in storage.list("originals/")]) == 2


def test_dedup_leaves_one_object(client, api_key, storage):
    key = api_key()
    for _ in range(3):
        client.post(
            "/v1/assets/upload", data=wav(seed=3), headers={**key.headers, "Content-Type": "audio/wav"}
        )
    assert len(list(storage.list())) == 1


# ------------------------------------------------------------------ listing


def test_pagination_three_pages(client, api_key, upload):
    key = api_key()
    ids = [upload(key, wav(0.2, seed=100 + i)) for i in range(7)]
    newest_first = list(reversed(ids))
    seen, cursor, pages = [], None, 0
    while True:
        q = "/v1/assets?limit=3" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(q, headers=key.headers).get_json()
        pages += 1
        assert body["count"] == len(body["items"])
        page_ids = [i["asset_id"] for i in body["items"]]
        assert not set(page_ids) & set(seen), "cursor must be exclusive"
        seen += page_ids
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert cursor == page_ids[-1]
    assert pages == 3
    assert seen == newest_first
    # the tasks dialect lists the same assets, newest first
    listed = client.get("/assets", headers=key.headers).get_json()
    assert [a["id"] for a in listed] == newest_first
    assert set(listed[0]) == {"id", "format", "name"}


def test_listing_is_per_owner(client, api_key, upload):
    a, b = api_key(), api_key()
    upload(a, wav(seed=5))
    assert client.get("/v1/assets", headers=b.headers).get_json() == {
        "items": [],
        "next_cursor": None,
        "count": 0,
    }


@pytest.mark.parametrize("q", ["limit=0", "limit=201", "limit=abc", "cursor=afa_nope"])
def test_bad_pagination(client, api_key, q):
    key = api_key()
    resp = client.get(f"/v1/assets?{q}", headers=key.headers)
    assert resp.status_code == 400
    error_of(resp)


# ------------------------------------------------------------------ errors


def test_missing_unknown_revoked_key(client, api_key, r):
    assert client.get("/v1/assets").status_code == 401
    error_of(client.get("/v1/assets"))
    assert client.get("/v1/assets", headers={"x-api-key": "aq_nope"}).status_code == 401
    key = api_key()
    assert client.get("/v1/assets", headers={"Authorization": f"Bearer {key.secret}"}).status_code == 200
    from shared import keys

    keys.revoke(r, key.id)
    resp = client.get("/v1/assets", headers=key.headers)
    assert resp.status_code == 401 and "revoked" in error_of(resp)["message"]


def test_cross_tenant_is_404_like_missing(client, api_key, upload):
    a, b = api_key(), api_key()
    aid = upload(a, wav(seed=6))
    other = client.get(f"/v1/assets/{aid}", headers=b.headers)
    missing = client.get("/v1/assets/afa_doesnotexist00000000000", headers=b.headers)
    assert other.status_code == missing.status_code == 404
    assert (
        other.get_json()
        == missing.get_json()
        == {
            "statusCode": 404,
            "error": "Not Found",
            "message": "Cannot find asset",
            "code": "asset_not_found",
        }
    )
    assert client.get(f"/assets/{aid}", headers=b.headers).get_json() == missing.get_json()


@pytest.mark.parametrize("method", ["put", "delete"])
@pytest.mark.parametrize("path", ["/v1/assets/afa_x", "/assets/afa_x"])
def test_assets_cannot_be_edited(client, api_key, method, path):
    key = api_key()
    resp = getattr(client, method)(path, headers=key.headers)
    assert resp.status_code == 405
    assert "GET" in resp.headers["Allow"]
    error_of(resp)


def test_unknown_route_is_json_404(client):
    resp = client.get("/v1/nope")
    assert resp.status_code == 404
    error_of(resp)


@pytest.mark.parametrize(
    "data,ctype,status",
    [
        (b"this is not audio at all", "audio/wav", 415),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 200, "audio/mpeg", 415),
        (b"", "audio/wav", 400),
        (b'{"asset_id": "x"}', "application/json", 415),
        (b"abc", "text/plain", 415),
    ],
)
def test_upload_refusals_store_nothing(client, api_key, storage, r, data, ctype, status):
    key = api_key()
    resp = client.post("/v1/assets/upload", data=data, headers={**key.headers, "Content-Type": ctype})
    assert resp.status_code == status
    error_of(resp)
    assert list(storage.list()) == []
    assert r.keys(db.PREFIX + "asset:*") == []


def test_truncated_audio_refused(client, api_key, storage, r):
    key = api_key()
    for fmt in ("wav", "flac"):
        data = encode(tone(2.0), fmt)
        resp = client.post(
            "/v1/assets/upload",
            data=data[: len(data) // 2],
            headers={**key.headers, "Content-Type": "audio/wav"},
        )
        assert resp.status_code == 415, (fmt, resp.get_json())
        error_of(resp)
    assert list(storage.list()) == [] and r.keys(db.PREFIX + "asset:*") == []


@pytest.mark.parametrize(
    "body,ctype",
    [
        (
            b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nRIFF',
            "multipart/form-data; boundary=xyz",
        ),
        (b"garbage without boundaries", "multipart/form-data; boundary=xyz"),
        (
            b'--xyz\r\nContent-Disposition: form-data; name="other"\r\n\r\nhello\r\n--xyz--\r\n',
            "multipart/form-data; boundary=xyz",
        ),
        (b"whatever", "multipart/form-data"),
    ],
)
def test_malformed_multipart(client, api_key, storage, body, ctype):
    key = api_key()
    resp = client.post("/assets", data=body, headers={**key.headers, "Content-Type": ctype})
    assert resp.status_code == 400, resp.get_json()
    error_of(resp)
    assert list(storage.list()) == []


def test_multipart_wrong_content_type(client, api_key):
    key = api_key()
    resp = client.post("/assets", data=wav(), headers={**key.headers, "Content-Type": "audio/wav"})
    assert resp.status_code == 415
    error_of(resp)


def test_oversized_declared_length_is_413(client, api_key, storage, settings):
    key = api_key(plan="basic")
    big = b"\0" * (settings.plan("basic").max_upload_bytes + 1)
    resp = client.post("/v1/assets/upload", data=big, headers={**key.headers, "Content-Type": "audio/wav"})
    assert resp.status_code == 413
    assert "15 MB" in error_of(resp)["message"]
    assert list(storage.list()) == []


def test_upload_needs_credits_unless_enterprise(client, api_key):
    broke = api_key(plan="pro", credits=0)
    resp = client.post(
        "/v1/assets/upload", data=wav(), headers={**broke.headers, "Content-Type": "audio/wav"}
    )
    assert resp.status_code == 400
    assert error_of(resp)["message"] == "Insufficient credits"
    rich = api_key(plan="enterprise", credits=0)
    resp = client.post("/v1/assets/upload", data=wav(), headers={**rich.headers, "Content-Type": "audio/wav"})
    assert resp.status_code == 201


def test_upload_is_free(client, api_key, r):
    from shared import keys

    key = api_key(credits=5)
    client.post("/v1/assets/upload", data=wav(), headers={**key.headers, "Content-Type": "audio/wav"})
    assert keys.balance(r, key.id) == 5
