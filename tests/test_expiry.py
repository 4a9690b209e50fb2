"""Expiry and reconcile: nothing of an expired asset survives, nothing live is touched."""

from __future__ import annotations

import time

import pytest
from audiogen import wav

from shared import assets, db
from shared.settings import Plan


@pytest.fixture
def short_ttl_app(settings, clean):
    """The API with the pro plan's asset TTL shortened to 1 second."""
    from web import create_app

    plans = dict(settings.plans, pro=Plan("pro", settings.plan("pro").max_upload_bytes, 1, True))
    return create_app(settings.replace(plans=plans))


def test_expired_asset_is_404_before_the_sweeper_runs(short_ttl_app, api_key):
    c = short_ttl_app.test_client()
    key = api_key()
    aid = c.post(
        "/v1/assets/upload", data=wav(), headers={**key.headers, "Content-Type": "audio/wav"}
    ).get_json()["asset_id"]
    assert c.get(f"/v1/assets/{aid}", headers=key.headers).status_code == 200
    time.sleep(1.1)
    assert c.get(f"/v1/assets/{aid}", headers=key.headers).status_code == 404
    assert c.get("/v1/assets", headers=key.headers).get_json()["items"] == []


def _app_keys(r) -> list[str]:
    """Keys that hang off assets (not the key's own records: its hash, credits
    and request-rate bucket)."""
    own = ("key", "apikey", "credits", "rate", "m:", "fleet")  # + fleet-wide metrics and workers
    return sorted(k for k in r.keys(db.PREFIX + "*") if not k.startswith(tuple(db.PREFIX + o for o in own)))


def test_sweeper_task_empties_redis_and_s3(short_ttl_app, api_key, r, storage, worker):
    from workers.tasks.maintenance import expire_assets

    c = short_ttl_app.test_client()
    key = api_key()
    for seed in range(3):
        c.post("/v1/assets/upload", data=wav(seed=seed), headers={**key.headers, "Content-Type": "audio/wav"})
    aid = c.get("/v1/assets", headers=key.headers).get_json()["items"][0]["asset_id"]
    # a derived output hanging off the asset goes too
    import io

    storage.put_stream(f"derived/{aid}/stems/vocals.wav", io.BytesIO(b"x" * 10), "audio/wav")
    assert len(list(storage.list())) == 4 and _app_keys(r)
    time.sleep(1.1)
    expire_assets.delay()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (_app_keys(r) or list(storage.list())):
        time.sleep(0.2)
    assert _app_keys(r) == []
    assert list(storage.list()) == []


def test_sweeper_keeps_live_assets_and_is_idempotent(client, api_key, r, storage, settings):
    key = api_key()
    client.post("/v1/assets/upload", data=wav(seed=9), headers={**key.headers, "Content-Type": "audio/wav"})
    before = _app_keys(r)
    assert assets.expire_due(r, storage) == 0
    assert assets.expire_due(r, storage, now=db.now() + 30 * 86400) == 1
    assert assets.expire_due(r, storage, now=db.now() + 30 * 86400) == 0  # again: nothing left, no error
    assert before and _app_keys(r) == [] and list(storage.list()) == []


def test_concurrent_sweepers_remove_each_asset_once(client, api_key, r, storage):
    from concurrent.futures import ThreadPoolExecutor

    key = api_key()
    for seed in range(6):
        client.post(
            "/v1/assets/upload",
            data=wav(0.2, seed=seed),
            headers={**key.headers, "Content-Type": "audio/wav"},
        )
    later = db.now() + 30 * 86400
    with ThreadPoolExecutor(4) as ex:
        counts = list(ex.map(lambda _: assets.expire_due(r, storage, now=later), range(4)))
    assert sum(counts) == 6
    assert _app_keys(r) == [] and list(storage.list()) == []


def test_dedup_upload_after_expiry_makes_a_new_asset(short_ttl_app, api_key, r):
    c = short_ttl_app.test_client()
    key = api_key()
    h = {**key.headers, "Content-Type": "audio/wav"}
    first = c.post("/v1/assets/upload", data=wav(seed=4), headers=h).get_json()["asset_id"]
    time.sleep(1.1)
    again = c.post("/v1/assets/upload", data=wav(seed=4), headers=h)
    assert again.status_code == 201 and again.get_json()["asset_id"] != first


def test_reconcile_removes_orphans_only_after_grace(client, api_key, r, storage, settings):
    import io

    key = api_key()
    live = client.post(
        "/v1/assets/upload", data=wav(seed=11), headers={**key.headers, "Content-Type": "audio/wav"}
    ).get_json()["asset_id"]
    storage.put_stream("originals/afa_orphan0000000000000000", io.BytesIO(b"o"), "audio/wav")
    storage.put_stream("derived/afa_orphan0000000000000000/x.mid", io.BytesIO(b"o"), "audio/midi")
    storage.put_stream("unrelated/readme.txt", io.BytesIO(b"o"), "text/plain")
    # within the grace period nothing is touched (it may be an upload in flight)
    assert assets.reconcile(r, storage, settings) == 0
    later = db.now() + settings.reconcile_grace_s + 5
    assert assets.reconcile(r, storage, settings, now=later) == 2
    names = sorted(o.name for o in storage.list())
    assert names == [f"originals/{live}", "unrelated/readme.txt"]
    assert assets.reconcile(r, storage, settings, now=later) == 0
