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
    assert (result.tonic, result.mode) == (tonic, mode), f"{tonic} {mode} ({condition}) -> {result.key}"
    assert result.key == f"{tonic} {mode}"
    assert result.camelot == CAMELOT[result.key]
    assert 0.0 < result.confidence <= 1.0


def test_summary(results):
    print("\nkey: condition, correct/24, confusions, lowest confidence")
    for condition in CONDITIONS:
        rs = {(t, m): results[(t, m, condition)] for t, m in KEYS}
        wrong = [f"{t} {m}→{r.key}" for (t, m), r in rs.items() if (r.tonic, r.mode) != (t, m)]
        low = min(r.confidence for r in rs.values())
        print(f"  {condition:14s} {24 - len(wrong):2d}/24 {wrong} {low:.2f}")
    assert all((r.tonic, r.mode) == (t, m) for (t, m, _), r in results.items())


@pytest.mark.parametrize("tonic,mode,cents", DETUNED)
def test_tuning_tolerance(tonic, mode, cents):
    y = synth.chord_progression(tonic, mode, SECONDS, ANALYSIS_SR, tuning_cents=cents, with_drums=True)
    assert estimate_key(y, ANALYSIS_SR).key == f"{tonic} {mode}"


def test_aeolian_loop_counts_relative_major_confusions():
    relative = 0
    for tonic in PITCH_CLASSES:
        y = synth.chord_progression(tonic, "minor", SECONDS, ANALYSIS_SR, progression="i-VI-III-VII")
        result = estimate_key(y, ANALYSIS_SR)
        relative_major = PITCH_CLASSES[(PITCH_CLASSES.index(tonic) + 3) % 12] + " major"
        assert result.key in (f"{tonic} minor", relative_major)
        relative += result.key == relative_major
    print(f"\ni–VI–III–VII loops read as the relative major: {relative}/12")


def test_camelot_wheel_for_all_24_keys():
    for tonic, mode in KEYS:
        assert camelot(tonic, mode) == CAMELOT[f"{tonic} {mode}"]


def test_silence_and_noise():
    silent = estimate_key(np.zeros(10 * ANALYSIS_SR, np.float32), ANALYSIS_SR)
    assert silent.confidence == 0.0
    assert silent.mode in ("major", "minor") and silent.camelot == CAMELOT[silent.key]
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
