"""f0 tracking and note segmentation on generated melodies.

The melodies are sung-like: harmonic tones (a seeded spectral envelope, so
the fundamental is not always the strongest partial) with delayed vibrato,
a little intonation error, breath noise, −12…0 dB of loudness variation per
note, legato steps, gaps, and ranges from 80 Hz to 900 Hz. The metrics are
mir_eval's melody measures, computed here on the tracker's frame grid:

* raw pitch accuracy (RPA): reference-voiced frames that the estimate calls
  voiced with an f0 within 50 cents, over all reference-voiced frames;
* voicing recall: reference-voiced frames the estimate calls voiced;
* voicing false alarm: reference-unvoiced frames the estimate calls voiced.

Asserted: RPA ≥ 0.95 and false alarm ≤ 0.1 on clean melodies; RPA ≥ 0.85
with the melody over chords, bass and drums 12 dB quieter (tests/synth.py);
the exact note sequence and onsets within 60 ms of a clean melody; silence,
the fmin/fmax bounds, short input. ``pytest -s`` prints the measures.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import synth
from scipy import signal

from workers.dsp import pitch
from workers.dsp.errors import OptionOutOfRange, UnprocessableAudio
from workers.dsp.features import ANALYSIS_SR
from workers.dsp.pitch import FMIN_BOUNDS, Note, Pitch, track_pitch, warmup

SR = ANALYSIS_SR
SECONDS = 15.0
# Mean RPA over 3 songs of a lead 6 dB over a band with passing tones
# (_band_lead): square 0.981, reed 0.970 measured (pitch-1: 0.828, 0.914; the
# naive salience peak with oracle voicing: 0.891, 0.941).
MIN_RPA_LEAD = 0.95
MIN_RPA_6DB = 0.86  # mean RPA, band 6 dB down (0.89 measured; 0.81 before the salience)
# name -> MIDI range of the lead: 80–900 Hz in all (MIDI 40 ≈ 82 Hz, 81 ≈ 880 Hz)
RANGES = {"bass voice": (40, 55), "tenor": (50, 69), "soprano": (67, 81), "two octaves": (45, 79)}


def _hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def render_melody(
    notes: list[tuple[float, float, int]], seconds: float, seed: int = 0, sr: int = SR
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Audio of ``notes`` (start s, duration s, MIDI) and, per sample, the
    true f0 (Hz, 0 between notes) and the note envelope (0..1)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    f0 = np.zeros(n)
    env = np.zeros(n)
    gain = np.zeros(n)
    for start, dur, midi in notes:
        a, b = int(start * sr), min(n, int((start + dur) * sr))
        t = np.arange(b - a) / sr
        # Vibrato fades in after 150 ms, ±35 cents at 5–6.5 Hz; ±10 cents intonation.
        depth = 35.0 * np.clip((t - 0.15) / 0.2, 0.0, 1.0)
        cents = depth * np.sin(2 * np.pi * rng.uniform(5.0, 6.5) * t + rng.uniform(0, 2 * np.pi))
        f0[a:b] = _hz(midi + (cents + rng.uniform(-10, 10)) / 100.0)
        env[a:b] = np.minimum(1.0, t / 0.02) * np.minimum(1.0, (t[-1] - t) / 0.04)
        gain[a:b] = 10 ** (rng.uniform(-12.0, 0.0) / 20.0)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    tilt = rng.uniform(0.8, 1.5)
    x = np.zeros(n)
    for k in range(1, 40):
        weight = k**-tilt * (1.0 + 0.5 * np.sin(1.3 * k + seed))  # uneven partials
        x += weight * (k * f0 < 0.45 * sr) * np.sin(k * phase)
    x *= env * gain
    # Breath: band-passed noise 30 dB below the voice, faintly in the gaps too.
    noise = signal.lfilter(*signal.butter(2, [300, 6000], "bandpass", fs=sr), rng.standard_normal(n))
    noise *= np.sqrt(np.mean(x[env > 0] ** 2) / np.mean(noise**2)) * 10 ** (-30 / 20)
    x += noise * np.maximum(env * gain, 0.1)
    return (0.8 * x / np.max(np.abs(x))).astype(np.float32), f0, env


def random_notes(lo: int, hi: int, seconds: float, seed: int) -> list[tuple[float, float, int]]:
    """Steps up to a fifth or an octave, 150–800 ms notes, legato or with
    50–400 ms gaps."""
    rng = np.random.default_rng(seed)
    notes, t, midi = [], 0.25, int(rng.integers(lo, hi + 1))
    while True:
        dur = rng.uniform(0.15, 0.8)
        if t + dur > seconds - 0.2:
            return notes
        step = int(rng.choice([-7, -5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 7, -12, 12]))
        midi = int(np.clip(midi + step, lo, hi))
        notes.append((t, dur, midi))
        t += dur + rng.choice([0.0, 0.0, 0.05, 0.15, 0.4])


def reference(f0: np.ndarray, env: np.ndarray, hop_s: float, n_frames: int) -> np.ndarray:
    """True f0 at each frame centre, 0 where no note sounds (or only the last
    few ms of its release)."""
    idx = np.minimum(np.round(np.arange(n_frames) * hop_s * SR).astype(int), len(f0) - 1)
    return np.where(env[idx] >= 0.1, f0[idx], 0.0)


def melody_measures(ref: np.ndarray, est: list[float | None]) -> dict[str, float]:
    assert len(est) == len(ref)
    est_hz = np.array([0.0 if v is None else v for v in est])
    ref_v, est_v = ref > 0, est_hz > 0
    both = ref_v & est_v
    cents = np.full(len(ref), np.inf)
    cents[both] = 1200 * np.abs(np.log2(est_hz[both] / ref[both]))
    return {
        "rpa": float(np.sum(both & (cents <= 50)) / ref_v.sum()),
        "recall": float(both.sum() / ref_v.sum()),
        "false_alarm": float(np.sum(est_v & ~ref_v) / max(1, (~ref_v).sum())),
    }


def _report(m: dict[str, float]) -> str:
    return f"RPA {m['rpa']:.3f}  recall {m['recall']:.3f}  false alarm {m['false_alarm']:.3f}"


def _evaluate(y: np.ndarray, f0: np.ndarray, env: np.ndarray) -> dict[str, float]:
    result = track_pitch(y, SR)
    return melody_measures(reference(f0, env, result.hop_s, len(result.f0_hz)), result.f0_hz)


@pytest.fixture(scope="module", autouse=True)
def _compiled() -> None:
    warmup()


@pytest.fixture(scope="module")
def melodies() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return {
        name: render_melody(random_notes(lo, hi, SECONDS, seed), SECONDS, seed)
        for seed, (name, (lo, hi)) in enumerate(RANGES.items())
    }


def test_clean_melodies(melodies) -> None:
    worst = {"rpa": 1.0, "recall": 1.0, "false_alarm": 0.0}
    for name, (y, f0, env) in melodies.items():
        m = _evaluate(y, f0, env)
        print(f"clean {name:12s}", _report(m))
        assert m["rpa"] >= 0.95, (name, m)
        assert m["recall"] >= 0.95, (name, m)
        assert m["false_alarm"] <= 0.1, (name, m)
        worst = {"rpa": min(worst["rpa"], m["rpa"]), "recall": min(worst["recall"], m["recall"]),
                 "false_alarm": max(worst["false_alarm"], m["false_alarm"])}  # fmt: skip
    print("clean worst", worst)


def test_melody_over_chords_and_drums(melodies) -> None:
    # The realistic case: a lead over an accompaniment 12 dB quieter (RMS).
    # Between the lead's notes the chords are periodic too, so the false
    # alarm is high by construction (a monophonic tracker follows them); it
    # is reported, not asserted.
    keys = ["C", "E", "G#", "D"]
    rpas = []
    for (name, (y, f0, env)), key in zip(melodies.items(), keys, strict=True):
        backing = synth.chord_progression(
            key, "major", SECONDS, SR, bpm=96.0, with_drums=True, seed=len(rpas)
        )
        backing = backing.astype(np.float64)
        backing *= np.sqrt(np.mean(np.square(y, dtype=np.float64)) / np.mean(backing**2))  # equal RMS
        mix = (y + backing * 10 ** (-12 / 20)).astype(np.float32)
        m = _evaluate(mix, f0, env)
        print(f"mixed {name:12s}", _report(m))
        assert m["rpa"] >= 0.85, (name, m)
        rpas.append(m["rpa"])
    print(f"mixed mean RPA {np.mean(rpas):.3f}")


def test_melody_over_a_louder_band(melodies) -> None:
    # The lead only 6 dB above the band (as in bench/accuracy.py): the
    # predominant-pitch salience must keep the tracker on the lead rather
    # than on the bass or chord partials.
    keys = ["A", "F", "D#", "B"]
    rpas = []
    for (name, (y, f0, env)), key in zip(melodies.items(), keys, strict=True):
        backing = synth.chord_progression(
            key, "minor", SECONDS, SR, bpm=110.0, with_drums=True, seed=10 + len(rpas)
        )
        backing = backing.astype(np.float64)
        backing *= np.sqrt(np.mean(np.square(y, dtype=np.float64)) / np.mean(backing**2))  # equal RMS
        mix = (y + backing * 10 ** (-6 / 20)).astype(np.float32)
        m = _evaluate(mix, f0, env)
        print(f"mixed -6 dB {name:12s}", _report(m))
        rpas.append(m["rpa"])
    print(f"mixed -6 dB mean RPA {np.mean(rpas):.3f}")
    assert np.mean(rpas) >= MIN_RPA_6DB, rpas


KNOWN_NOTES = [
    (0.30, 0.40, 60),  # C4
    (0.80, 0.30, 62),
    (1.10, 0.30, 64),  # legato step
    (1.50, 0.50, 67),
    (2.10, 0.40, 67),  # the same pitch again after a 100 ms gap
    (2.50, 0.25, 65),  # legato step down
    (2.90, 0.60, 77),  # up a minor seventh
    (3.70, 0.35, 45),  # down almost three octaves (110 Hz)
    (4.05, 0.35, 47),
    (4.60, 0.45, 81),  # 880 Hz
    (5.20, 0.30, 40),  # 82 Hz
    (5.50, 0.30, 40),  # re-attacked without a gap
    (6.00, 0.70, 57),
]


def test_notes_of_a_known_melody() -> None:
    y, _, _ = render_melody(KNOWN_NOTES, 7.0, seed=3)
    notes = track_pitch(y, SR).notes
    print([(n.start, n.midi, n.hz) for n in notes])
    assert [n.midi for n in notes] == [m for _, _, m in KNOWN_NOTES]
    for note, (start, dur, midi) in zip(notes, KNOWN_NOTES, strict=True):
        assert abs(note.start - start) <= 0.06, (note, start)
        assert abs(note.end - (start + dur)) <= 0.1, (note, start + dur)
        assert abs(1200 * np.log2(note.hz / _hz(midi))) <= 30, note  # vibrato ±35, intonation ±10 cents
        assert note.end - note.start >= pitch.NOTE_MIN_SECONDS


def test_silence_is_unvoiced() -> None:
    result = track_pitch(np.zeros(2 * SR, np.float32), SR)
    assert len(result.f0_hz) == 1 + 2 * SR // 256
    assert all(v is None for v in result.f0_hz)
    assert max(result.voiced_prob) == 0.0
    assert result.notes == []
    # Silence inside a melody: the frames well inside it are unvoiced.
    y, _, _ = render_melody([(0.2, 0.8, 57), (2.0, 0.8, 60)], 3.0, seed=1)
    y[int(1.0 * SR) : int(2.0 * SR)] = 0.0
    result = track_pitch(y, SR)
    gap = result.f0_hz[round(1.1 / result.hop_s) : round(1.9 / result.hop_s)]
    assert all(v is None for v in gap)
    assert [n.midi for n in result.notes] == [57, 60]


def test_quiet_noise_is_unvoiced() -> None:
    noise = (1e-3 * np.random.default_rng(0).standard_normal(2 * SR)).astype(np.float32)
    result = track_pitch(noise, SR)
    assert sum(v is not None for v in result.f0_hz) <= 0.05 * len(result.f0_hz)
    assert result.notes == []


def _tone(hz: float, seconds: float = 2.0, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    partials = [np.sin(2 * np.pi * k * hz * t) / k**2 for k in range(1, 12) if k * hz < 0.45 * sr]
    return (0.3 * np.sum(partials, axis=0)).astype(np.float32)


def test_fmin_and_fmax_are_honoured() -> None:
    # 50 Hz is below fmin = 65: not reported at 50 Hz, nor at the range's edge.
    result = track_pitch(_tone(50.0), SR, fmin=65.0)
    assert all(v is None for v in result.f0_hz)
    assert result.notes == []
    # The same tone is found once fmin allows it.
    result = track_pitch(_tone(50.0), SR, fmin=40.0)
    f0 = [v for v in result.f0_hz if v is not None]
    assert len(f0) >= 0.9 * len(result.f0_hz) and abs(np.median(f0) - 50.0) < 0.3
    # 300 Hz is above fmax = 250: whatever is reported lies within the range.
    result = track_pitch(_tone(300.0), SR, fmin=65.0, fmax=250.0)
    assert all(v is None or 65.0 <= v <= 250.0 for v in result.f0_hz)
    assert not any(v is not None and abs(1200 * np.log2(v / 300.0)) < 100 for v in result.f0_hz)
    # The widest range the API allows, at both ends, and a narrow high one
    # (its frame would be shorter than two hops; it is not).
    for hz, fmin, fmax in [(31.0, *FMIN_BOUNDS), (1900.0, *FMIN_BOUNDS), (1500.0, 1000.0, 2000.0)]:
        result = track_pitch(_tone(hz), SR, fmin=fmin, fmax=fmax)
        f0 = [v for v in result.f0_hz if v is not None]
        assert len(f0) >= 0.9 * len(result.f0_hz), hz
        assert abs(1200 * np.log2(np.median(f0) / hz)) < 5, hz


@pytest.mark.parametrize("sr", [16000, 44100, 48000])
def test_other_sample_rates(sr: int) -> None:
    result = track_pitch(_tone(220.0, sr=sr), sr)
    assert abs(result.hop_s - 0.0116) < 1e-4
    f0 = [v for v in result.f0_hz if v is not None]
    assert len(f0) == len(result.f0_hz)
    assert abs(1200 * np.log2(np.median(f0) / 220.0)) < 2
    assert [n.midi for n in result.notes] == [57]


def test_short_and_empty_input() -> None:
    for n in (0, 1, 100, 1000):
        result = track_pitch(np.zeros(n, np.float32), SR)
        assert result.f0_hz == [] and result.voiced_prob == [] and result.notes == []
        assert result.to_dict()["f0_hz"] == []
    # Just long enough for a few frames: no error, one value per frame.
    result = track_pitch(_tone(440.0, seconds=0.1), SR)
    assert len(result.f0_hz) == len(result.voiced_prob) == 1 + int(0.1 * SR) // 256


def test_to_dict_is_json() -> None:
    y, _, _ = render_melody([(0.1, 0.5, 69)], 1.0)
    d = track_pitch(y, SR).to_dict()
    assert set(d) == {"hop_s", "f0_hz", "voiced_prob", "notes"}
    assert set(d["notes"][0]) == {"start", "end", "midi", "hz"}
    assert d["notes"][0]["midi"] == 69
    assert all(0.0 <= p <= 1.0 for p in d["voiced_prob"])
    assert None in d["f0_hz"]
    json.dumps(d)
    assert isinstance(track_pitch(y, SR), Pitch) and isinstance(track_pitch(y, SR).notes[0], Note)


def test_blocks_decode_like_the_whole_signal(monkeypatch, melodies) -> None:
    # Decoding in overlapping blocks (bounded memory) gives the path that
    # decoding everything at once gives.
    y, _, _ = melodies["two octaves"]
    whole = track_pitch(y, SR)
    monkeypatch.setattr(pitch, "BLOCK_FRAMES", 300)
    monkeypatch.setattr(pitch, "OVERLAP_FRAMES", 100)
    assert track_pitch(y, SR) == whole


def test_invalid_input_raises() -> None:
    y = _tone(220.0, seconds=0.5)
    for fmin, fmax in [(300.0, 200.0), (100.0, 100.0), (20.0, 500.0), (65.0, 2500.0)]:
        with pytest.raises(OptionOutOfRange):
            track_pitch(y, SR, fmin=fmin, fmax=fmax)
    with pytest.raises(OptionOutOfRange):
        track_pitch(y, 1800)  # fmax = 1000 Hz is not below Nyquist (900 Hz)
    bad = y.copy()
    bad[1000] = np.nan
    with pytest.raises(UnprocessableAudio):
        track_pitch(bad, SR)
    with pytest.raises(ValueError):
        track_pitch(np.stack([y, y], axis=1), SR)


def test_near_silence_after_a_loud_passage_does_not_crash():
    """A -120 dBFS tail after 20 s at -1 dBFS: the running energy sum loses
    precision there; the tail must come out unvoiced, not raise."""
    sr = 22050
    loud = 0.9 * np.sin(2 * np.pi * 440 * np.arange(20 * sr) / sr)
    tail = 1e-6 * np.sin(2 * np.pi * 440 * np.arange(3 * sr) / sr)
    p = track_pitch(np.concatenate([loud, tail]).astype(np.float32), sr, 100.0, 1100.0)
    tail_frames = p.f0_hz[int(21 * sr / 256) :]
    assert tail_frames and all(f is None for f in tail_frames)


def _band_lead(timbre: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A lead one note per beat (or two) at 100 BPM, MIDI 60–79, 40 % of its
    notes scale steps outside the bar's chord (passing tones on strong beats
    too), 6 dB (RMS) over a band (tests/synth.py: struck chords, bass). The
    lead is a ``"square"`` (odd harmonics at 1/k: its salience at the octave
    below is nearly its own) or a ``"reed"`` (all harmonics at 1/k), with a
    soft 60 ms attack. Returns the mix, the per-sample f0 and envelope."""
    rng = np.random.default_rng(seed)
    seconds, bpm, key = 12.0, 100.0, ["D", "F", "A", "C"][seed % 4]
    backing, timeline = synth.band(key, "major", seconds, SR, bpm=bpm, seed=seed, voicing="open")
    tonic = synth.PITCH_CLASSES.index(key)
    pool = [m for m in range(60, 80) if (m - tonic) % 12 in (0, 2, 4, 5, 7, 9, 11)]
    triad = {"maj": (0, 4, 7), "min": (0, 3, 7)}
    beat = 60.0 / bpm
    n = int(seconds * SR)
    f0, env = np.zeros(n), np.zeros(n)
    t, prev = 0.0, pool[len(pool) // 2]
    while t < seconds - 0.5:
        length = beat if rng.random() < 0.6 else beat / 2
        root, quality = next((c[2].split(":") for c in timeline if c[0] <= t < c[1]), ("C", "maj"))
        pcs = {(synth.PITCH_CLASSES.index(root) + iv) % 12 for iv in triad[quality]}
        inside = [m for m in pool if m % 12 in pcs]
        outside = [m for m in pool if m % 12 not in pcs]
        m = min(outside if rng.random() < 0.4 else inside, key=lambda x: abs(x - prev) + rng.uniform(0, 4))
        prev = m
        a, b = int(t * SR), int((t + 0.92 * length) * SR)
        tt = np.arange(b - a) / SR
        f0[a:b] = _hz(m)
        env[a:b] = np.minimum(1.0, tt / 0.06) * np.minimum(1.0, (tt[-1] - tt) / 0.03)
        t += length
    phase = 2 * np.pi * np.cumsum(f0) / SR
    ks = range(1, 30, 2) if timbre == "square" else range(1, 16)
    lead = sum((k * f0 < 0.45 * SR) * np.sin(k * phase) / k for k in ks) * env
    rms = lambda v: np.sqrt(np.mean(np.square(v, dtype=np.float64)))  # noqa: E731
    mix = backing + lead * (10 ** (6 / 20) * rms(backing) / rms(lead))
    return (0.8 * mix / np.max(np.abs(mix))).astype(np.float32), f0, env


def _salience_peak_rpa(y: np.ndarray, ref: np.ndarray, hop_s: float) -> float:
    """RPA of the naive predominant pitch: each frame's peak of the harmonic
    sum Σ_{h≤5} 0.8^(h−1)|X(h f)| over 100–1100 Hz (2048-sample Hann
    spectra), counted on the reference's voiced frames only (oracle voicing)."""
    hz = 100.0 * 2 ** (np.arange(0, 12 * np.log2(11.0), 0.1) / 12)
    win = np.hanning(2048)
    hits = []
    for i in np.flatnonzero(ref > 0):
        c = int(round(i * hop_s * SR))
        seg = np.zeros(2048)
        part = y[max(0, c - 1024) : c + 1024]
        seg[: len(part)] = part
        mag = np.abs(np.fft.rfft(seg * win))
        sal = sum(
            0.8 ** (h - 1) * mag[np.minimum(np.round(h * hz * 2048 / SR).astype(int), 1024)]
            for h in range(1, 6)
        )
        hits.append(abs(1200 * np.log2(hz[np.argmax(sal)] / ref[i])) <= 50)
    return float(np.mean(hits))


@pytest.mark.parametrize("timbre", ["square", "reed"])
def test_lead_over_a_band_with_passing_tones(timbre: str) -> None:
    # The held-out benchmark's failure modes in small: a square lead (its
    # octave below is nearly as salient as itself) and passing tones over
    # struck chords, with soft 60 ms attacks. The naive salience peak is
    # checked to fail here, so the case can tell a tracker from it.
    rpas, naive = [], []
    for seed in range(3):
        y, f0, env = _band_lead(timbre, seed)
        result = track_pitch(y, SR)
        ref = reference(f0, env, result.hop_s, len(result.f0_hz))
        m = melody_measures(ref, result.f0_hz)
        print(f"{timbre} lead over a band, seed {seed}", _report(m))
        rpas.append(m["rpa"])
        naive.append(_salience_peak_rpa(y, ref, result.hop_s))
    print(f"{timbre}: mean RPA {np.mean(rpas):.3f}, naive salience peak {np.mean(naive):.3f}")
    assert np.mean(naive) < MIN_RPA_LEAD, naive
    assert np.mean(rpas) >= MIN_RPA_LEAD, rpas


def test_gate_picks_the_salience_rule_alone_on_clean_melodies(monkeypatch, melodies) -> None:
    # A clean voice (its harmonics, breath 30 dB down) scores a harmonic
    # energy share near 1; the same voices over a band, and the band leads,
    # well below. track_pitch follows the gate: pitch-1's salience rule on
    # the clean melody, the lead classifier over the band.
    clean = [pitch.harmonic_share(y, SR) for y, _, _ in melodies.values()]
    clean.append(pitch.harmonic_share(render_melody(KNOWN_NOTES, 7.0, seed=3)[0], SR))
    bands = [pitch.harmonic_share(_band_lead(timbre, 0)[0], SR) for timbre in ("square", "reed")]
    for (y, _, _), key in zip(melodies.values(), ["A", "F", "D#", "B"], strict=True):
        backing = synth.chord_progression(key, "minor", SECONDS, SR, bpm=110.0, with_drums=True, seed=10)
        backing = backing.astype(np.float64)
        backing *= np.sqrt(np.mean(np.square(y, dtype=np.float64)) / np.mean(backing**2))
        bands.append(pitch.harmonic_share((y + backing * 10 ** (-6 / 20)).astype(np.float32), SR))
    print("harmonic share: clean", np.round(clean, 3), "over a band", np.round(bands, 3))
    assert min(clean) >= pitch.MONO_SHARE, clean
    assert max(bands) < pitch.MONO_SHARE, bands

    y_clean = melodies["bass voice"][0]
    y_band = _band_lead("square", 0)[0]
    gated = [track_pitch(y_clean, SR).f0_hz, track_pitch(y_band, SR).f0_hz]
    monkeypatch.setattr(pitch, "MONO_SHARE", 0.0)  # always the salience rule
    salience = [track_pitch(y_clean, SR).f0_hz, track_pitch(y_band, SR).f0_hz]
    monkeypatch.setattr(pitch, "MONO_SHARE", 2.0)  # never
    classifier = [track_pitch(y_clean, SR).f0_hz, track_pitch(y_band, SR).f0_hz]
    assert gated[0] == salience[0] != classifier[0]
    assert gated[1] == classifier[1] != salience[1]
