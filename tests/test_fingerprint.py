"""Landmark fingerprints: excerpts found at the right offset under noise,
MP3 re-encoding and ±2 % speed; unknown audio not matched; the Redis index
scoped per owner, removable, expiring.

Tracks are tests/synth.py songs (drums, chords, bass) with a seeded random
melody on top, so no two bars of a track are alike: a pure loop has no
single right offset. The drums use the same kick in every song, which makes
unrelated tracks share landmarks; the threshold must hold against that.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import synth

from shared import db
from shared import fingerprints as index
from workers.dsp import fingerprint as fp
from workers.dsp.errors import UnprocessableAudio

SR = 22050
SECONDS = 20.0
N_TRACKS = 5
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}


def track(seed: int, seconds: float = SECONDS) -> np.ndarray:
    rng = np.random.default_rng(seed)
    bpm = float(rng.uniform(80, 160))
    key = str(rng.choice(synth.PITCH_CLASSES))
    mode = str(rng.choice(["major", "minor"]))
    y, _, _ = synth.song(bpm, seconds, key=key, mode=mode, sr=SR, seed=seed, pattern="rock")
    t_all = np.arange(len(y)) / SR
    mel = np.zeros(len(y))
    pos, deg, beat = 0.0, 7, 60 / bpm
    tonic = 55 + synth.PITCH_CLASSES.index(key)
    while pos < seconds:
        dur = beat * float(rng.choice([0.5, 1, 1, 1.5, 2]))
        deg = int(np.clip(deg + rng.integers(-3, 4), 0, 14))
        midi = tonic + 12 * (deg // 7) + SCALES[mode][deg % 7]
        s, e = int(pos * SR), min(int((pos + dur) * SR), len(y))
        t = t_all[: e - s]
        f0 = 440.0 * 2 ** ((midi - 69) / 12)
        tone = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6))
        mel[s:e] += tone * np.exp(-t / 0.8) * np.minimum(1, t / 0.01) * np.minimum(1, (t[-1] - t) / 0.02)
        pos += dur
    out = y + mel * 0.8 * np.sqrt(np.mean(y**2) / np.mean(mel**2))
    return (out / np.abs(out).max() * 0.9).astype(np.float32)


@pytest.fixture(scope="module")
def tracks() -> list[np.ndarray]:
    return [track(seed) for seed in range(N_TRACKS)]


@pytest.fixture(scope="module")
def refs(tracks) -> list[fp.Prints]:
    return [fp.fingerprint(y, SR) for y in tracks]


def excerpt(y: np.ndarray, start_s: float, seconds: float) -> np.ndarray:
    return y[int(start_s * SR) : int((start_s + seconds) * SR)].copy()


def add_noise(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    n = np.random.default_rng(seed).standard_normal(len(x))
    gain = np.sqrt(np.mean(x.astype(np.float64) ** 2) / np.mean(n**2) / 10 ** (snr_db / 10))
    return (x + gain * n).astype(np.float32)


def identify(x: np.ndarray, refs: list[fp.Prints]) -> fp.Match | None:
    ms = fp.score_matches(fp.query_variants(x, SR), refs)
    return ms[0] if ms and fp.is_match(ms[0]) else None


@pytest.mark.parametrize(
    ("i", "start", "seconds"), [(0, 0.0, 5.0), (1, 7.37, 6.0), (2, 11.91, 8.0), (4, 3.1, 10.0)]
)
def test_excerpt_found_at_its_offset(tracks, refs, i, start, seconds):
    m = identify(excerpt(tracks[i], start, seconds), refs)
    assert m is not None and m.ref == i
    assert abs(m.offset_s - start) <= 0.2
    assert m.speed == 1.0


def test_found_under_10db_white_noise(tracks, refs):
    start = 4.52
    m = identify(add_noise(excerpt(tracks[3], start, 8.0), 10.0), refs)
    assert m is not None and m.ref == 3
    assert abs(m.offset_s - start) <= 0.2


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_found_after_64kbps_mp3(tracks, refs):
    start = 9.03
    x = excerpt(tracks[1], start, 7.0)
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()
    ff = ["ffmpeg", "-loglevel", "error", "-f", "s16le", "-ar", str(SR), "-ac", "1", "-i", "-"]
    mp3 = subprocess.run([*ff, "-b:a", "64k", "-f", "mp3", "-"], input=pcm, capture_output=True, check=True)
    dec = subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-i", "-", "-f", "s16le", "-ac", "1", "-ar", str(SR), "-"],
        input=mp3.stdout,
        capture_output=True,
        check=True,
    )
    y = np.frombuffer(dec.stdout, "<i2").astype(np.float32) / 32768
    m = identify(y, refs)
    assert m is not None and m.ref == 1
    # The decoder adds its delay (~50 ms at most) before the audio.
    assert abs(m.offset_s - start) <= 0.2


@pytest.mark.parametrize("speed", [0.98, 1.02])
def test_found_at_2_percent_speed_change(tracks, refs, speed):
    import soxr

    start = 6.0
    # Played `speed` times faster: pitch and tempo together, like a turntable.
    x = soxr.resample(excerpt(tracks[2], start, 8.0), SR * speed, SR)
    m = identify(x, refs)
    assert m is not None and m.ref == 2
    assert abs(m.offset_s - start) <= 0.2
    assert abs(m.speed - speed) <= 0.005


@pytest.mark.parametrize("seed", [101, 102, 103])
def test_unknown_track_is_not_matched(refs, seed):
    x = track(seed, 9.0)
    ms = fp.score_matches(fp.query_variants(x, SR), refs)
    assert not any(fp.is_match(m) for m in ms)


def test_query_silent_or_short_is_refused():
    with pytest.raises(UnprocessableAudio):
        fp.query_variants(np.zeros(SR * 5, np.float32), SR)
    with pytest.raises(UnprocessableAudio):
        fp.query_variants(np.ones(SR // 2, np.float32), SR)


def test_silence_fingerprints_to_nothing():
    assert len(fp.fingerprint(np.zeros(SR * 3, np.float32), SR)) == 0


def test_fingerprint_is_rate_independent(tracks, refs):
    # The same audio at 44.1 kHz gives (almost) the same landmarks.
    import soxr

    p = fp.fingerprint(soxr.resample(tracks[0], SR, 44100), 44100)
    m = fp.score_matches(p, [refs[0]])[0]
    assert m.count / len(p) > 0.8 and abs(m.offset_s) < 0.05


def test_pack_roundtrip(refs):
    p = refs[0]
    hashes, times = index.unpack(index.pack(p))
    assert np.array_equal(hashes, p.hashes) and np.array_equal(times, p.times)
    assert len(index.pack(p)) < 4 * len(p)  # 3 bytes a landmark + 1 a frame


# ------------------------------------------------------------------ Redis


def add(r, owner: str, asset_id: str, prints, ttl_s: int) -> None:
    """Index prints of an asset that exists (prints are only kept for live assets)."""
    r.hset(db.asset_key(asset_id), mapping={"id": asset_id, "owner": owner})
    index.add(r, owner, asset_id, prints, ttl_s=ttl_s)


def search(r, owner: str, query, exclude: tuple[str, ...] = ()) -> fp.Identification:
    """What the identify job does: the owner's index, matched in numpy."""
    ids, refs = index.load(r, owner, exclude=exclude)
    return fp.identify(query, ids, refs)


def test_search_finds_own_asset_only(r, tracks, refs):
    for i, p in enumerate(refs[:3]):
        add(r, "alice", f"a{i}", p, ttl_s=3600)
    add(r, "bob", "b0", refs[3], ttl_s=3600)
    q = fp.query_variants(excerpt(tracks[3], 5.0, 6.0), SR)
    # Bob's track, queried by Alice: nothing.
    res = search(r, "alice", q).to_dict()
    assert res["match"] is None
    assert all(c["asset_id"].startswith("a") for c in res["candidates"])
    res = search(r, "bob", q).to_dict()
    assert res["match"]["asset_id"] == "b0"
    assert abs(res["match"]["offset_s"] - 5.0) <= 0.2
    assert res["candidates"][0] == res["match"]
    assert set(res["match"]) == {"asset_id", "offset_s", "score"}
    # Alice's own track, queried by Alice.
    q = fp.query_variants(excerpt(tracks[1], 2.0, 6.0), SR)
    assert search(r, "alice", q).to_dict()["match"]["asset_id"] == "a1"
    # ... unless that asset is excluded (the query clip is an asset itself).
    res = search(r, "alice", q, exclude=("a1",))
    assert res.match is None and all(c.asset_id != "a1" for c in res.candidates)
    # Every key written carries its owner.
    assert all(":alice" in k or ":bob" in k for k in r.keys("aq:fp*"))


def test_add_is_idempotent_and_remove_forgets(r, tracks, refs):
    add(r, "alice", "a0", refs[0], ttl_s=3600)
    add(r, "alice", "a0", refs[0], ttl_s=3600)
    assert index.indexed_assets(r, "alice") == {"a0"}
    assert index.has(r, "alice", "a0") and not index.has(r, "bob", "a0")
    q = fp.query_variants(excerpt(tracks[0], 3.0, 6.0), SR)
    assert search(r, "alice", q).match.asset_id == "a0"
    index.remove(r, "alice", "a0")
    assert not index.has(r, "alice", "a0")
    assert index.indexed_assets(r, "alice") == set()
    assert search(r, "alice", q).to_dict() == {"match": None, "candidates": []}


def test_keys_expire_with_the_asset(r, refs):
    add(r, "alice", "a0", refs[0], ttl_s=600)
    add(r, "alice", "a1", refs[1], ttl_s=3600)
    assert 590 <= r.ttl(index.blob_key("alice", "a0")) <= 600
    assert 3590 <= r.ttl(index.blob_key("alice", "a1")) <= 3600
    assert 3590 <= r.ttl(index.index_key("alice")) <= 3600  # the longest member's life
    add(r, "alice", "a0", refs[0], ttl_s=7200)  # life extended: TTL follows
    assert r.ttl(index.blob_key("alice", "a0")) > 7000 and r.ttl(index.index_key("alice")) > 7000
    # An entry past its expiry is no longer listed, even before Redis drops it.
    later = __import__("time").time() + 3700
    assert index.indexed_assets(r, "alice", now=later) == {"a0"}
    add(r, "alice", "gone", refs[2], ttl_s=0)
    assert not index.has(r, "alice", "gone")
