"""transcribe and segment-transcribe through the API with a real worker."""

from __future__ import annotations

import io
import time
import urllib.request

import numpy as np
import pretty_midi
import pytest
import soundfile as sf
import synth

SR = 22050


def as_wav(y: np.ndarray, sr: int = SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def tone(midi: int, seconds: float, sr: int = SR) -> np.ndarray:
    """A plucked harmonic tone (6 partials, exponential decay)."""
    t = np.arange(int(seconds * sr)) / sr
    f = 440.0 * 2 ** ((midi - 69) / 12)
    y = sum(np.sin(2 * np.pi * k * f * t) / k for k in range(1, 7))
    return (y * np.exp(-2.5 * t) * np.minimum(1, t / 0.005)).astype(np.float32)


MELODY = [(0.5, 60), (1.0, 64), (1.5, 67), (2.0, 72), (2.75, 69), (3.5, 65), (4.25, 62)]


@pytest.fixture(scope="module")
def melody() -> bytes:
    y = np.zeros(int(5.5 * SR), np.float32)
    for start, midi in MELODY:
        i = int(start * SR)
        note = tone(midi, 0.45)
        y[i : i + len(note)] += note
    return as_wav(0.5 * y / np.max(np.abs(y)))


def poll(client, key, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = client.get(f"/v1/jobs/{job_id}", headers=key.headers).get_json()
        if doc["status"] in ("completed", "failed", "cancelled"):
            return doc
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def run(client, key, op: str, data: bytes, query: str = "") -> dict:
    resp = client.post(f"/v1/{op}{query}", data=data, headers={**key.headers, "Content-Type": "audio/wav"})
    assert resp.status_code == 202, resp.get_json()
    doc = poll(client, key, resp.get_json()["job_id"])
    assert doc["status"] == "completed", doc
    return doc["result"]


def test_transcribe_a_known_melody(client, api_key, worker, melody):
    key = api_key()
    result = run(client, key, "transcribe", melody)
    notes = result["notes"]
    assert [n["midi"] for n in notes] == [m for _, m in MELODY]
    for n, (start, _) in zip(notes, MELODY, strict=True):
        assert abs(n["start"] - start) < 0.05 and n["end"] > n["start"] and 0 < n["velocity"] <= 127
    with urllib.request.urlopen(result["midi"], timeout=30) as resp:
        assert resp.headers["Content-Type"] == "audio/midi"
        midi = pretty_midi.PrettyMIDI(io.BytesIO(resp.read()))
    got = sorted((round(n.start, 2), n.pitch) for i in midi.instruments for n in i.notes)
    assert [p for _, p in got] == [m for _, m in MELODY]
    # the pitch range option drops what is outside it
    high = run(client, key, "transcribe", melody, "?min_midi=66")
    assert [n["midi"] for n in high["notes"]] == [m for _, m in MELODY if m >= 66]


def test_transcribe_options_are_checked(client, api_key, melody):
    key = api_key()
    for query in ("?min_midi=80&max_midi=70", "?onset_threshold=1.5", "?min_midi=10", "?frame_threshold=x"):
        resp = client.post(f"/v1/transcribe{query}", data=melody, headers={**key.headers, "Content-Type": "audio/wav"})
        assert resp.status_code == 400, query


def test_segment_transcribe_finds_a_b_a(client, api_key, worker):
    """Three 8-bar sections at 120 BPM: A (C major, rock), B (F# minor, other
    progression and groove), A again."""
    a, _, _ = synth.song(120.0, 16.0, key="C", mode="major", sr=SR, seed=1, pattern="rock", progression="I-IV-V-I")
    b, _, _ = synth.song(120.0, 16.0, key="F#", mode="minor", sr=SR, seed=2, pattern="four_on_floor", progression="i-VI-III-VII")
    y = np.concatenate([a, b, a])
    key = api_key()
    result = run(client, key, "segment-transcribe", as_wav(0.8 * y / np.max(np.abs(y))))
    segments = result["segments"]
    assert segments[0]["start"] == 0 and abs(segments[-1]["end"] - 48.0) < 0.5
    for s, nxt in zip(segments, segments[1:], strict=False):
        assert s["end"] == nxt["start"]
    boundaries = [s["start"] for s in segments[1:]]
    for truth in (16.0, 32.0):
        assert min(abs(b - truth) for b in boundaries) <= 3.0, boundaries
    label_at = {t: next(s["label"] for s in segments if s["start"] <= t < s["end"]) for t in (8.0, 24.0, 40.0)}
    assert label_at[8.0] == label_at[40.0] != label_at[24.0], segments
    assert sum(len(s["notes"]) for s in segments) > 20
    for s in segments:
        assert all(s["start"] <= n["start"] <= s["end"] for n in s["notes"])
