"""The analysis catalogue through the API: beatgrid, chords, pitch, analyze/upload."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
import synth
from jobpoll import poll_progress

SR = 44100


def as_wav(y: np.ndarray, sr: int = SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def f_measure(est: list[float], ref: list[float], window: float = 0.07) -> float:
    """mir_eval-style F-measure: greedy one-to-one matching within ±window s."""
    if not est or not ref:
        return 0.0
    used, hits = set(), 0
    for t in ref:
        best = (
            min((abs(e - t), i) for i, e in enumerate(est) if i not in used) if len(used) < len(est) else None
        )
        if best and best[0] <= window:
            used.add(best[1])
            hits += 1
    p, r = hits / len(est), hits / len(ref)
    return 0.0 if hits == 0 else 2 * p * r / (p + r)


def submit(client, key, op: str, data: bytes, *, wait: bool = True, **kw):
    """Submit; for a sync operation, wait up to 60 s (the default 15 s of a
    sync answer is not what these tests are about, and a loaded CI box can
    exceed it)."""
    headers = {**key.headers, "Content-Type": "audio/wav"}
    if wait:
        headers["Prefer"] = "wait=60"
    return client.post(f"/v1/{op}", data=data, headers=headers, **kw)


@pytest.fixture(scope="module")
def song_4_4():
    y, beats, downbeats = synth.song(
        123.4, 24.0, key="E", mode="minor", meter=4, pickup_beats=1, sr=SR, seed=11
    )
    return as_wav(y), beats, downbeats


@pytest.mark.parametrize("meter", [4, 3])
def test_beatgrid_finds_beats_downbeats_and_meter(client, api_key, worker, meter):
    bpm = 123.4 if meter == 4 else 96.0
    y, beats, downbeats = synth.song(
        bpm, 24.0, key="E", mode="minor", meter=meter, pickup_beats=1, sr=SR, seed=11
    )
    body = submit(client, api_key(), "beatgrid", as_wav(y)).get_json()
    assert abs(body["tempo"] - bpm) <= 0.01 * bpm, body["tempo"]
    assert body["time_signature"] == f"{meter}/4"
    assert f_measure(body["beats"], beats) >= 0.9
    assert f_measure(body["downbeats"], downbeats) >= 0.8
    assert set(body["downbeats"]) <= set(body["beats"])


def test_chords_follow_the_progression(client, api_key, worker):
    bpm, bars = 100.0, 8
    y = synth.chord_progression("G", "major", bars * 4 * 60 / bpm, sr=SR, bpm=bpm, seed=12, with_drums=True)
    body = submit(client, api_key(), "chords", as_wav(y)).get_json()
    segs = body["chords"]
    assert segs[0]["start"] == 0 and all(a["end"] == b["start"] for a, b in zip(segs, segs[1:], strict=False))
    # I–IV–V–I in G, one chord per bar: check the label at each bar's middle
    bar = 4 * 60 / bpm
    expected = ["G:maj", "C:maj", "D:maj", "G:maj"] * 2

    def label_at(t: float) -> str:
        return next(s["label"] for s in segs if s["start"] <= t < s["end"])

    got = [label_at((i + 0.5) * bar) for i in range(bars)]
    assert sum(g == e for g, e in zip(got, expected, strict=True)) >= 7, got


def melody(
    notes: list[int], note_s: float = 0.4, gap_s: float = 0.1
) -> tuple[np.ndarray, list[tuple[float, int]]]:
    """Harmonic tones (a few partials) for each MIDI note, with gaps."""
    out, truth, t = [], [], 0.0
    rng = np.random.default_rng(13)
    for m in notes:
        f = 440.0 * 2 ** ((m - 69) / 12)
        n = np.arange(int(note_s * SR)) / SR
        tone = sum((0.6 / k) * np.sin(2 * np.pi * k * f * n + rng.uniform(0, 6)) for k in range(1, 5))
        env = np.minimum(1, np.minimum(n / 0.02, (note_s - n) / 0.03))
        out += [tone * env, np.zeros(int(gap_s * SR))]
        truth.append((t, m))
        t += note_s + gap_s
    return np.concatenate(out).astype(np.float32) * 0.5, truth


def test_pitch_notes_and_options(client, api_key, worker):
    key = api_key()
    y, truth = melody([60, 62, 64, 65, 67, 69, 71, 72])
    body = submit(client, key, "pitch", as_wav(y)).get_json()
    assert [n["midi"] for n in body["notes"]] == [m for _, m in truth]
    for n, (t, _) in zip(body["notes"], truth, strict=True):
        assert abs(n["start"] - t) <= 0.06
    assert body["hop_s"] > 0 and len(body["f0_hz"]) == len(body["voiced_prob"])
    assert None in body["f0_hz"]  # the gaps are unvoiced
    # options: bounds and their relation are checked at the door
    for query, status in [
        ("?fmin=500&fmax=100", 400),
        ("?fmin=5", 400),
        ("?fmax=abc", 400),
        ("?fmin=200&fmax=800", 200),
    ]:
        resp = submit(client, key, f"pitch{query}", as_wav(y))
        assert resp.status_code == status, (query, resp.get_json())


def test_analyze_upload_bundles_the_individual_results(client, api_key, worker, song_4_4):
    key = api_key(credits=100)
    data = song_4_4[0]
    resp = submit(client, key, "analyze/upload", data, wait=False)
    assert resp.status_code == 202  # a long operation: answers at once
    doc, progress = poll_progress(client, key, resp.get_json()["job_id"])
    assert doc["status"] == "completed", doc
    assert progress == sorted(progress) and progress[-1] == 1
    bundle = doc["result"]
    assert bundle["sample_rate"] == SR and bundle["channels"] == 1 and abs(bundle["duration_s"] - 24.0) < 0.01
    aid = doc["asset_id"]
    singles = {
        op: client.post(f"/v1/{op}", json={"asset_id": aid}, headers=key.headers).get_json()
        for op in ("bpm", "key", "lufs", "beatgrid", "chords")
    }

    def strip(d: dict) -> dict:
        return {k: v for k, v in d.items() if k not in ("job_id", "asset_id", "asset_expires_at", "_meta")}

    assert bundle["bpm"] == strip(singles["bpm"])
    assert bundle["key"] == strip(singles["key"])
    assert bundle["lufs"] == strip(singles["lufs"])
    assert bundle["beatgrid"] == strip(singles["beatgrid"])
    assert bundle["chords"] == singles["chords"]["chords"]
    from shared.operations import OPERATIONS

    parts = sum(OPERATIONS[op].cost for op in ("bpm", "key", "lufs", "beatgrid", "chords"))
    assert doc["_meta"]["credits_used"] == OPERATIONS["analyze/upload"].cost < parts


def test_a_twenty_minute_file(client, api_key, worker):
    """Twenty minutes, mono 22.05 kHz (53 MB as WAV): an enterprise upload."""
    key = api_key(plan="enterprise", credits=0)
    y, _, _ = synth.song(120.0, 30.0, key="A", mode="minor", sr=22050, seed=14)
    long = np.tile(y, 40)
    data = as_wav(long, 22050)
    resp = client.post("/v1/analyze/upload", data=data, headers={**key.headers, "Content-Type": "audio/wav"})
    assert resp.status_code == 202, resp.get_json()
    doc, _ = poll_progress(client, key, resp.get_json()["job_id"], timeout=300)
    assert doc["status"] == "completed", doc
    r = doc["result"]
    assert abs(r["duration_s"] - 1200) < 0.1
    assert abs(r["bpm"]["tempo"] - 120) <= 1.2 and r["key"]["key"] == "A minor"
    assert len(r["beatgrid"]["beats"]) > 2000


def test_bad_options_store_nothing(client, api_key, storage):
    key = api_key()
    y, _ = melody([60, 62])
    resp = submit(client, key, "pitch?fmin=900&fmax=100", as_wav(y))
    assert resp.status_code == 400
    assert list(storage.list()) == []  # refused before the audio was stored
