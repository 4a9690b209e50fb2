"""identify through the API with a real worker: the right asset at the right
offset, nothing for an unknown clip or another tenant, and an index that
expires with the assets."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
import synth

from shared import assets, db, fingerprints

SR = 22050


def as_wav(y: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@pytest.fixture(scope="module")
def tracks() -> list[np.ndarray]:
    """Four 30-second songs; the last is never uploaded (the unknown one)."""
    specs = [
        (96.0, "C", "rock"),
        (128.0, "A", "four_on_floor"),
        (110.0, "E", "syncopated"),
        (100.0, "D", "swing"),
    ]
    return [
        synth.song(bpm, 30.0, key=k, sr=SR, seed=20 + i, pattern=p)[0] for i, (bpm, k, p) in enumerate(specs)
    ]


def identify(client, key, clip: np.ndarray) -> dict:
    resp = client.post(
        "/v1/identify", data=as_wav(clip), headers={**key.headers, "Content-Type": "audio/wav"}
    )
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def test_identify_finds_the_asset_and_offset(client, api_key, upload, r, storage, worker, tracks):
    owner, stranger = api_key(), api_key()
    ids = [upload(owner, as_wav(t)) for t in tracks[:3]]
    start = 12.3
    clip = tracks[1][int(start * SR) : int((start + 7.0) * SR)]
    rng = np.random.default_rng(0)
    noisy = clip + rng.normal(0, np.std(clip) / np.sqrt(10), clip.shape)  # 10 dB SNR
    for query in (clip, noisy.astype(np.float32)):
        got = identify(client, owner, query)
        assert got["match"] is not None, got
        assert got["match"]["asset_id"] == ids[1]
        assert abs(got["match"]["offset_s"] - start) <= 0.2
        assert got["candidates"][0]["asset_id"] == ids[1]
    # an unknown clip: no match
    assert identify(client, owner, tracks[3][5 * SR : 12 * SR])["match"] is None
    # another tenant never matches this tenant's assets
    assert identify(client, stranger, clip)["match"] is None
    # query clips are not added to the catalogue
    assert fingerprints.indexed_assets(r, owner.id) == set(ids)
    # the index goes with the assets
    assert assets.expire_due(r, storage, now=db.now() + 30 * 86400) >= 3
    assert fingerprints.indexed_assets(r, owner.id) == set()
    assert not [k for k in r.scan_iter("aq:fp*")]
