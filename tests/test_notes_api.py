"""transcribe and segment-transcribe through the API with a real worker."""

from __future__ import annotations

import io
import urllib.request

import mir_eval
import numpy as np
import pretty_midi
import pytest
import soundfile as sf
import synth
from audiogen import struck_tone as tone
from jobpoll import poll

SR = 22050


def as_wav(y: np.ndarray, sr: int = SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


MELODY = [(0.5, 60), (1.0, 64), (1.5, 67), (2.0, 72), (2.75, 69), (3.5, 65), (4.25, 62)]


@pytest.fixture(scope="module")
def melody() -> bytes:
    y = np.zeros(int(5.5 * SR), np.float32)
    for start, midi in MELODY:
        i = int(start * SR)
        note = tone(midi, 0.45)
        y[i : i + len(note)] += note
    return as_wav(0.5 * y / np.max(np.abs(y)))


def onset_f(notes: list[dict], truth: list[tuple[float, int]]) -> float:
    """Note onset F-measure (50 ms, pitch within 50 cents), mir_eval's."""

    def hz(m):
        return 440.0 * 2 ** ((np.asarray(m, float) - 69) / 12)

    ref_iv = np.array([[t, t + 0.4] for t, _ in truth])
    est_iv = np.array([[n["start"], max(n["end"], n["start"] + 0.01)] for n in notes]).reshape(-1, 2)
    _, _, f, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ref_iv, hz([m for _, m in truth]), est_iv, hz([n["midi"] for n in notes]), offset_ratio=None
    )
    return f


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
    assert onset_f(notes, MELODY) >= 0.9, notes
    for n in notes:
        assert n["end"] > n["start"] and 0 < n["velocity"] <= 127
    with urllib.request.urlopen(result["midi"], timeout=30) as resp:
        assert resp.headers["Content-Type"] == "audio/midi"
        midi = pretty_midi.PrettyMIDI(io.BytesIO(resp.read()))
    got = sorted((n.start, n.pitch) for i in midi.instruments for n in i.notes)
    assert [p for _, p in got] == [n["midi"] for n in notes]
    assert np.allclose([t for t, _ in got], [n["start"] for n in notes], atol=0.002)
    # the pitch range option drops what is outside it
    high = run(client, key, "transcribe", melody, "?min_midi=66")
    assert all(n["midi"] >= 66 for n in high["notes"])
    assert onset_f(high["notes"], [(t, m) for t, m in MELODY if m >= 66]) >= 0.85


def test_transcribe_options_are_checked(client, api_key, melody):
    key = api_key()
    for query in ("?min_midi=80&max_midi=70", "?onset_threshold=1.5", "?min_midi=10", "?frame_threshold=x"):
        resp = client.post(
            f"/v1/transcribe{query}", data=melody, headers={**key.headers, "Content-Type": "audio/wav"}
        )
        assert resp.status_code == 400, query


def test_segment_transcribe_finds_a_b_a(client, api_key, worker):
    """Three 8-bar sections at 120 BPM: A (C major, rock), B (F# minor, other
    progression and groove), A again."""
    a, _, _ = synth.song(
        120.0, 16.0, key="C", mode="major", sr=SR, seed=1, pattern="rock", progression="I-IV-V-I"
    )
    b, _, _ = synth.song(
        120.0,
        16.0,
        key="F#",
        mode="minor",
        sr=SR,
        seed=2,
        pattern="four_on_floor",
        progression="i-VI-III-VII",
    )
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
    label_at = {
        t: next(s["label"] for s in segments if s["start"] <= t < s["end"]) for t in (8.0, 24.0, 40.0)
    }
    assert label_at[8.0] == label_at[40.0] != label_at[24.0], segments
    assert sum(len(s["notes"]) for s in segments) > 20
    for s in segments:
        assert all(s["start"] <= n["start"] <= s["end"] for n in s["notes"])
