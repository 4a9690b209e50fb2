"""Key estimation on generated chord progressions in all 24 keys.

Asserted: tonic and mode right for all 24 keys, with and without drums,
for the cadential progressions (I–IV–V–I, i–iv–V–i), for pop loops
(I–V–vi–IV, i–♭VI–♭VII–i) over drums, and off A4 = 440 Hz tuning.
Counted, not asserted: the equal-length Aeolian loop i–♭VI–♭III–♭VII, whose
pitch content is exactly its relative major's vi–IV–I–V; it may read as
that relative major. ``pytest -s`` prints the confusions.
"""

from __future__ import annotations

import numpy as np
import pytest
import synth

from workers.dsp.features import ANALYSIS_SR
from workers.dsp.key import PITCH_CLASSES, Key, camelot, estimate_key, warmup
from workers.dsp.pitchclass import pc_of

# How musicians write the 24 keys (the generator names tonics with sharps).
SPELLED = {
    "major": ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"),
    "minor": ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B"),
}


def spelled(tonic: str, mode: str) -> str:
    return f"{SPELLED[mode][pc_of(tonic)]} {mode}"


SECONDS = 20.0
KEYS = [(tonic, mode) for mode in ("major", "minor") for tonic in PITCH_CLASSES]

# The standard Camelot wheel, written out rather than computed.
CAMELOT = {
    "C major": "8B", "G major": "9B", "D major": "10B", "A major": "11B",
    "E major": "12B", "B major": "1B", "F# major": "2B", "C# major": "3B",
    "G# major": "4B", "D# major": "5B", "A# major": "6B", "F major": "7B",
    "A minor": "8A", "E minor": "9A", "B minor": "10A", "F# minor": "11A",
    "C# minor": "12A", "G# minor": "1A", "D# minor": "2A", "A# minor": "3A",
    "F minor": "4A", "C minor": "5A", "G minor": "6A", "D minor": "7A",
}  # fmt: skip

# name -> (progression for major keys, for minor keys, chord_progression kwargs)
CONDITIONS: dict[str, tuple[str | None, str | None, dict]] = {
    "cadence": (None, None, {}),
    "cadence+drums": (None, None, {"with_drums": True}),
    "pop+drums": ("I-V-vi-IV", "i-VI-VII-i", {"with_drums": True, "bpm": 124.0}),
}
DETUNED = [("D", "minor", 35.0), ("A#", "major", -45.0), ("G#", "minor", -30.0), ("E", "major", 20.0)]


def _render(tonic: str, mode: str, condition: str) -> np.ndarray:
    major_prog, minor_prog, kwargs = CONDITIONS[condition]
    progression = major_prog if mode == "major" else minor_prog
    seed = PITCH_CLASSES.index(tonic) + (12 if mode == "minor" else 0)
    return synth.chord_progression(
        tonic, mode, SECONDS, ANALYSIS_SR, seed=seed, progression=progression, **kwargs
    )


@pytest.fixture(scope="module")
def results() -> dict[tuple[str, str, str], Key]:
    warmup()
    return {
        (tonic, mode, condition): estimate_key(_render(tonic, mode, condition), ANALYSIS_SR)
        for condition in CONDITIONS
        for tonic, mode in KEYS
    }


@pytest.mark.parametrize("condition", list(CONDITIONS))
@pytest.mark.parametrize("tonic,mode", KEYS, ids=[f"{t}-{m}" for t, m in KEYS])
def test_key_in_all_24_keys(results, tonic, mode, condition):
    result = results[(tonic, mode, condition)]
    assert result.key == spelled(tonic, mode), f"{tonic} {mode} ({condition}) -> {result.key}"
    assert result.key == f"{result.tonic} {result.mode}"
    assert result.camelot == CAMELOT[f"{tonic} {mode}"]
    assert 0.0 < result.confidence <= 1.0


def test_summary(results):
    print("\nkey: condition, correct/24, confusions, lowest confidence")
    for condition in CONDITIONS:
        rs = {(t, m): results[(t, m, condition)] for t, m in KEYS}
        wrong = [f"{t} {m}→{r.key}" for (t, m), r in rs.items() if r.key != spelled(t, m)]
        low = min(r.confidence for r in rs.values())
        print(f"  {condition:14s} {24 - len(wrong):2d}/24 {wrong} {low:.2f}")
    assert all(r.key == spelled(t, m) for (t, m, _), r in results.items())


@pytest.mark.parametrize("tonic,mode,cents", DETUNED)
def test_tuning_tolerance(tonic, mode, cents):
    y = synth.chord_progression(tonic, mode, SECONDS, ANALYSIS_SR, tuning_cents=cents, with_drums=True)
    assert estimate_key(y, ANALYSIS_SR).key == spelled(tonic, mode)


def test_aeolian_loop_counts_relative_major_confusions():
    relative = 0
    for tonic in PITCH_CLASSES:
        y = synth.chord_progression(tonic, "minor", SECONDS, ANALYSIS_SR, progression="i-VI-III-VII")
        result = estimate_key(y, ANALYSIS_SR)
        relative_major = spelled(PITCH_CLASSES[(PITCH_CLASSES.index(tonic) + 3) % 12], "major")
        assert result.key in (spelled(tonic, "minor"), relative_major)
        relative += result.key == relative_major
    print(f"\ni–VI–III–VII loops read as the relative major: {relative}/12")


def test_camelot_wheel_for_all_24_keys():
    for tonic, mode in KEYS:
        assert camelot(tonic, mode) == CAMELOT[f"{tonic} {mode}"]


def test_silence_and_noise():
    silent = estimate_key(np.zeros(10 * ANALYSIS_SR, np.float32), ANALYSIS_SR)
    assert silent.confidence == 0.0
    assert silent.key == "C major" and silent.camelot == CAMELOT[silent.key]
    assert estimate_key(np.zeros(0, np.float32), ANALYSIS_SR).confidence == 0.0
    rng = np.random.default_rng(0)
    noise = (0.1 * rng.standard_normal(10 * ANALYSIS_SR)).astype(np.float32)
    assert estimate_key(noise, ANALYSIS_SR).confidence < 0.1
    drums = synth.drum_pattern(120.0, 10.0, ANALYSIS_SR, "rock")
    assert estimate_key(drums, ANALYSIS_SR).confidence < 0.1


def test_to_dict():
    k = Key("A minor", "A", "minor", "8A", 0.5)
    assert k.to_dict() == {
        "key": "A minor",
        "tonic": "A",
        "mode": "minor",
        "camelot": "8A",
        "confidence": 0.5,
    }


def test_chord_progression_is_deterministic_float32_in_range():
    a = synth.chord_progression("F#", "minor", 5.0, seed=7, with_drums=True)
    b = synth.chord_progression("F#", "minor", 5.0, seed=7, with_drums=True)
    assert a.dtype == np.float32 and len(a) == 5 * synth.SR
    assert np.array_equal(a, b)
    assert np.max(np.abs(a)) <= 1.0


def test_conventional_spelling_of_every_key():
    """Flats where the signature has flats, F# major and C#/G# minor with sharps."""
    for mode in ("major", "minor"):
        for tonic in PITCH_CLASSES:
            y = synth.chord_progression(tonic, mode, 12.0, ANALYSIS_SR, seed=3)
            k = estimate_key(y, ANALYSIS_SR)
            assert k.key == spelled(tonic, mode) and k.tonic == SPELLED[mode][pc_of(tonic)]
    assert {SPELLED["major"][10], SPELLED["major"][6], SPELLED["minor"][3], SPELLED["minor"][1]} == {
        "Bb",
        "F#",
        "Eb",
        "C#",
    }


def test_keys_under_a_loud_lead_with_passing_tones():
    """Relative major and minor loops (the same pitch classes) under a lead
    8 dB over the harmony, 40 % of its notes outside the chord: every key
    right. ``-s`` prints how a profile-only (Krumhansl-Schmuckler) reading
    of the same salience does."""
    from workers.dsp.key import profile_scores
    from workers.dsp.salience import chroma, pitch_salience

    naive_wrong = 0
    for tonic in ("A", "E", "C#", "F"):
        for mode, prog in (("minor", "i-VI-VII-i"), ("major", "I-V-vi-IV")):
            y, _ = synth.band(
                tonic, mode, 20.0, ANALYSIS_SR, bpm=100.0, progression=prog, lead_db=8.0, seed=5
            )
            assert estimate_key(y, ANALYSIS_SR).key == spelled(tonic, mode)
            sal = pitch_salience(y, ANALYSIS_SR)
            frames = chroma(sal.salience, 0)
            profile = (frames / np.maximum(frames.sum(axis=1, keepdims=True), 1e-9)).sum(axis=0)
            best = int(np.argmax(profile_scores(profile)))
            naive_wrong += (best % 12, ("major", "minor")[best // 12]) != (pc_of(tonic), mode)
    print(f"\nK-S profile alone: {8 - naive_wrong}/8 right")


def test_confidence_is_low_without_tonal_harmony():
    """Speech-like glides and atonal clusters name some key, with a low confidence."""
    rng = np.random.default_rng(4)
    sr = ANALYSIS_SR
    t = np.arange(10 * sr) / sr
    # Speech-like: a gliding voiced source (f0 wandering 90-220 Hz, syllables of 0.2 s).
    f0 = 150 * 2 ** (0.6 * np.sin(2 * np.pi * 0.7 * t) + 0.3 * np.sin(2 * np.pi * 3.1 * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voice = sum(np.sin(k * phase) / k for k in range(1, 20)) * (np.sin(2 * np.pi * 2.5 * t) > -0.2)
    speech = (0.2 * voice / np.max(np.abs(voice))).astype(np.float32)
    # Atonal: clusters of 4 random pitch classes, a new one every 0.4 s.
    atonal = np.zeros_like(t)
    for start in np.arange(0, 10, 0.4):
        seg = (t >= start) & (t < start + 0.4)
        for m in rng.choice(np.arange(48, 84), 4, replace=False):
            atonal[seg] += np.sin(2 * np.pi * 440 * 2 ** ((m - 69) / 12) * t[seg])
    atonal = (0.2 * atonal / np.max(np.abs(atonal))).astype(np.float32)
    music = synth.chord_progression("D", "major", 10.0, sr, with_drums=True)
    c_music = estimate_key(music, sr).confidence
    for name, y in (("speech", speech), ("atonal", atonal)):
        c = estimate_key(y, sr).confidence
        assert c < 0.25 and c < 0.5 * c_music, f"{name}: confidence {c:.3f} (music {c_music:.3f})"
