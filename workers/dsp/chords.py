"""Chord labels over time: the 24 major and minor triads plus "N" (no chord),
the MIREX "majmin" vocabulary.

Method:

1. **Pitch salience per frame** with the front end of :mod:`workers.dsp.key`
   (steps 1–4 of its docstring) at a finer time scale: a 5.5 kHz copy,
   0.37 s windows (2.7 Hz bins) every 93 ms, tonal spectral peaks only, the
   tuning offset from the peaks' magnitude-weighted circular mean, semitone
   salience with cos² weighting. The 3rd and 5th harmonics are subtracted at
   *half* the 1/h share key.py uses: a chord's own tones sit exactly where
   its bass's harmonics land (the root's 3rd harmonic, an octave and a fifth
   up, is on the chord's fifth), so the full share erases the fifth of
   minor chords and they read as the major chord a major third below
   (A:min → F:maj).
   Key.py's 0.74 s windows blur chord changes by ±0.37 s; the shorter window
   costs bass resolution (65/69 Hz are 1.5 bins apart), still enough for the
   root.
2. **Two chromas**: *treble* (MIDI ≥ 48, C3 up; square-root compressed so
   one loud note does not outvote the other two) and *bass* (MIDI 33–54,
   55–185 Hz), as in Mauch & Dixon's bass/treble chroma (ISMIR 2010). The
   bass usually plays the root, which separates chords sharing two tones
   (C:maj / A:min, C:min / G#:maj). On the synthesized progressions the
   treble alone scores ~0.98, but drops to ~0.85–0.93 with a melody on top;
   with the bass term both stay above 0.96.
3. **Score** of chord c at frame t: cos(treble, template_c), template
   weights root 1, third 1, fifth 0.8, plus ``BASS_WEIGHT`` × the bass
   chroma's share on c's root. "N" scores ``N_SCORE`` plus the *best* bass
   term of any chord, so chord against N is decided by the treble alone: a
   pure tone (one pitch class, cos 0.58 with any triad containing it, e.g. a
   snare's 185 Hz body) stays N, a triad (cos ≥ ~0.9) does not. All chord
   scores are multiplied by a gate in [0, 1] that closes for frames with
   little tonal energy relative to the track (silence, fades: < 5 % of the
   90th percentile over frames with any tonal peak) or little tonality
   (< 5 % of the 55 Hz–2 kHz energy in tonal peaks: noise, drums; see
   key.py), so those frames become N.
4. **Smoothing**: Viterbi over the 25 labels with a cost ``SWITCH_COST`` per
   change. This is the HMM with a uniform transition matrix (self-transition
   p, the rest spread evenly) and emissions exp(β·score), where
   β·SWITCH_COST = log(24p / (1 − p)); only that product matters to the
   decoding, so it is tuned directly: 2 score·frames, i.e. a rival label
   must beat the current one by 0.3 in score for ~0.6 s to take over.
   With ``beats``, frames are pooled per beat interval (by their centre
   time) and labels change only on beats; each interval's score counts as
   many frames as it spans, so both modes weigh evidence against the
   switch cost alike. Gaps longer than twice the median beat interval
   (before the first beat, after the last, dropouts) are split evenly so
   a missing beat track does not freeze the label.
5. Equal consecutive labels merge into segments covering [0, duration].

References: template matching + HMM smoothing (Bello & Pickens, ISMIR
2005; Cho & Bello, IEEE TASLP 2014 on the choice of pre/post filtering);
the weighted-overlap majmin score of MIREX ACE (Harte 2010, as in
``mir_eval.chord``).

Accuracy (tests/test_dsp_chords.py, MIREX weighted overlap, checked against
``mir_eval.chord``): 0.987 mean, 0.970 worst, on 120 synthesized 20 s
progressions (tests/synth.py: 12 roots × 5 progressions × with/without
drums, 80–160 BPM); 1.000 with the known beat grid and ~0.998 with the
beats of :func:`workers.dsp.beats.track_beats`; means 0.98–0.99, worst
0.97, with a melody over the chords, ±45 cents off 440 Hz, drums 6 dB
louder, white noise at 10 dB SNR, or the bass high-passed away. Not
measured on recorded music (no annotated corpus here): real mixes are
harder (inversions, sevenths, reverb), so these are upper bounds.

Cost: ~0.08 s CPU for a 3-minute track at 22.05 kHz, with or without beats
(estimate_key: ~0.035 s on the same machine; chords analyse 4× as many
frames), nearly all of it resampling, STFT and peak picking; the Viterbi
pass is a numba kernel (~2 ms), compiled by :func:`warmup`. Memory beyond
the input, bounded whatever the length: the 5.5 kHz copy (¼ of a float32
input: 26 MB for 20 minutes), one STFT block (``BLOCK_FRAMES`` frames,
~20 MB of transients), the tonal peaks until the tuning is known (12 bytes
each; at most one per two bins of the 55 Hz–2 kHz band, i.e. ≤ 4.3 kB per
frame, far fewer in music) and ~1 kB per frame of salience, chromas,
scores and Viterbi back-pointers, a frame being 93 ms. For 20 minutes
(12 900 frames) that is ≤ ~115 MB in the worst case; measured peak RSS
above the input: 47 MB (music with drums, and white noise).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import soxr

from workers.dsp.errors import UnprocessableAudio
from workers.dsp.features import n_frames, stft_magnitude_blocks
from workers.dsp.key import (
    HARMONIC_SHIFTS,
    PITCH_CLASSES,
    TARGET_SR,
    block_peaks,
)

QUALITIES = ("maj", "min")
TRIADS = {"maj": (0, 4, 7), "min": (0, 3, 7)}
# Index i < 24: root i % 12, quality QUALITIES[i // 12]; index 24: no chord.
LABELS = tuple(f"{pc}:{q}" for q in QUALITIES for pc in PITCH_CLASSES) + ("N",)

WINDOW_SECONDS = 0.37  # 2048 samples at 5.5 kHz
HOP_SECONDS = 0.093  # 512 samples at 5.5 kHz: the label grid without beats
BLOCK_FRAMES = 512
HARMONIC_SCALE = 0.5  # share of key.py's harmonic subtraction (step 1 above)
TREBLE_MIDI = 48  # C3: lowest pitch of the treble chroma
BASS_MIDI = (33, 55)  # A1 .. F#3 (55–185 Hz), end exclusive
COMPRESS = 0.5  # exponent applied to the treble chroma
TEMPLATE_WEIGHTS = (1.0, 1.0, 0.8)  # root, third, fifth
BASS_WEIGHT = 0.75
N_SCORE = 0.5  # between one pitch class (cos 0.58 → N) and a triad (≥ ~0.9)
SWITCH_COST = 2.0  # score × frames
GATE_TONALITY = 0.05  # frame tonality from which the gate is fully open
GATE_LEVEL = 0.05  # frame salience / 90th percentile over voiced frames, idem
LONG_GAP = 2.0  # beat gaps longer than this × the median interval get split


@dataclass(frozen=True)
class ChordSegment:
    """One label over [start, end) in seconds (ms precision)."""

    start: float
    end: float
    label: str  # "C:maj", "A:min", "F#:maj", ... or "N"


@dataclass(frozen=True)
class Chords:
    """Contiguous segments from 0 to the track's duration (none if empty)."""

    segments: list[ChordSegment]

    def to_dict(self) -> dict:
        return {"chords": [{"start": s.start, "end": s.end, "label": s.label} for s in self.segments]}


@dataclass(frozen=True)
class _Frames:
    salience: np.ndarray  # (frames, 128) float32, by MIDI pitch, harmonics suppressed
    tonality: np.ndarray  # (frames,) share of 55 Hz–2 kHz energy in tonal peaks
    hop_seconds: float  # frame t is centred on t × hop_seconds


def _pitch_salience(y: np.ndarray, sr: int) -> _Frames:
    """Step 1 of the module docstring. The peak picking and tuning repeat
    key.py's ``_spectral_peaks`` / ``chroma_profile``, which fix the hop to
    half their window and sum over the track.

    Two passes so that memory stays bounded: the first keeps only each STFT
    block's tonal peaks (12 bytes each) and the running tuning sum; the
    second maps them to pitches once the tuning is known, a block at a time.
    """
    q = max(1, int(sr // TARGET_SR))
    fs = sr / q
    x = soxr.resample(y, sr, fs) if q > 1 else y
    n_fft = int(2 ** round(np.log2(WINDOW_SECONDS * fs)))
    hop = max(1, int(round(HOP_SECONDS * fs)))
    blocks: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
    tonality = np.zeros(n_frames(len(x), n_fft, hop))
    phasor = 0j  # Σ magnitude · exp(2πi · deviation from the 12-TET grid)
    offset = 0
    for block in stft_magnitude_blocks(x, n_fft, hop, BLOCK_FRAMES):
        fi, freq, mag, c = block_peaks(block, n_fft, fs)
        freq = freq.astype(np.float32)
        midi = 12 * np.log2(freq / 440.0) + 69
        phasor += complex(np.sum(mag * np.exp(2j * np.pi * (midi - np.round(midi)))))
        band = np.sum(np.square(c, dtype=np.float64), axis=1)
        peak_energy = np.bincount(fi, np.square(mag, dtype=np.float64), minlength=len(c))
        tonality[offset : offset + len(c)] = peak_energy / np.maximum(band, 1e-20)
        blocks.append((offset, fi.astype(np.int32), freq, mag))
        offset += len(c)
    # Circular mean: deviations of +0.49 and -0.49 semitones are neighbours.
    tuning = float(np.angle(phasor) / (2 * np.pi))
    salience = np.zeros((offset, 128), np.float32)
    while blocks:
        start, fi, freq, mag = blocks.pop(0)
        midi = 12 * np.log2(freq / 440.0) + 69 - tuning
        note = np.round(midi).astype(np.int64)
        # cos² weighting: a peak half-way between two semitones counts for neither.
        weight = mag * np.cos(np.pi * (midi - note)) ** 2
        ok = (note >= 0) & (note < 128)
        rows = int(fi.max()) + 1 if len(fi) else 0
        pitch = np.bincount(fi[ok] * 128 + note[ok], weight[ok], minlength=rows * 128)
        pitch = pitch.reshape(rows, 128).astype(np.float32)
        out = salience[start : start + rows]
        out[:] = pitch
        for shift, share in HARMONIC_SHIFTS:
            out[:, shift:] -= HARMONIC_SCALE * share * pitch[:, :-shift]
        np.maximum(out, 0, out=out)
    return _Frames(salience, tonality, hop / fs)


def _chroma(salience: np.ndarray, first_midi: int) -> np.ndarray:
    """Fold (frames, pitches from ``first_midi``) into (frames, 12), C first."""
    n_frames, n = salience.shape
    padded = np.zeros((n_frames, -(-n // 12) * 12), np.float64)
    padded[:, :n] = salience
    return np.roll(padded.reshape(n_frames, -1, 12).sum(axis=1), first_midi % 12, axis=1)


def _templates() -> np.ndarray:
    """(24, 12) unit-norm triad templates in the order of LABELS[:24]."""
    out = np.zeros((24, 12))
    for qi, q in enumerate(QUALITIES):
        for root in range(12):
            for w, interval in zip(TEMPLATE_WEIGHTS, TRIADS[q], strict=True):
                out[qi * 12 + root, (root + interval) % 12] = w
    return out / np.linalg.norm(out, axis=1, keepdims=True)


_TEMPLATES = _templates()
_ROOTS = np.tile(np.arange(12), 2)


def _scores(treble: np.ndarray, bass: np.ndarray, gate: np.ndarray) -> np.ndarray:
    """(steps, 25) scores, step 3 of the module docstring; N last."""
    norm = np.linalg.norm(treble, axis=1, keepdims=True)
    cos = (treble / np.maximum(norm, 1e-12)) @ _TEMPLATES.T
    bass_share = bass / np.maximum(bass.sum(axis=1, keepdims=True), 1e-12)
    chord = (cos + BASS_WEIGHT * bass_share[:, _ROOTS]) * gate[:, None]
    no_chord = N_SCORE + BASS_WEIGHT * bass_share.max(axis=1) * gate
    return np.concatenate([chord, no_chord[:, None]], axis=1)


@numba.njit(cache=True)
def _viterbi(loglik: np.ndarray, switch: float) -> np.ndarray:
    """Best state path for per-step log-likelihoods (steps, states) with a
    cost ``switch`` for every change of state. The transition matrix is
    uniform off the diagonal, so a step costs O(states), not O(states²)."""
    n, k = loglik.shape
    path = np.zeros(n, np.int64)
    if n == 0:
        return path
    back = np.zeros((n, k), np.int32)
    delta = loglik[0].copy()
    for t in range(1, n):
        best = 0
        for j in range(1, k):
            if delta[j] > delta[best]:
                best = j
        switched = delta[best] - switch
        for j in range(k):
            if delta[j] >= switched:
                back[t, j] = j
                delta[j] += loglik[t, j]
            else:
                back[t, j] = best
                delta[j] = switched + loglik[t, j]
    best = 0
    for j in range(1, k):
        if delta[j] > delta[best]:
            best = j
    path[n - 1] = best
    for t in range(n - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


def _beat_edges(beats: list[float], duration: float) -> np.ndarray:
    """Interval edges from 0 to ``duration`` at the given beats, with gaps
    longer than LONG_GAP × the median beat interval split evenly."""
    t = np.unique(np.asarray(beats, np.float64))
    t = t[(t > 0) & (t < duration)]
    edges = np.concatenate([[0.0], t, [duration]])
    if len(t) < 2:
        return edges
    step = float(np.median(np.diff(t)))
    out = [edges[:1]]
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        pieces = max(1, int(round((b - a) / step))) if b - a > LONG_GAP * step else 1
        out.append(np.linspace(a, b, pieces + 1)[1:])
    return np.concatenate(out)


def estimate_chords(y: np.ndarray, sr: int, beats: list[float] | None = None) -> Chords:
    """Chord segments of mono audio ``y`` (float, any length) at ``sr`` Hz,
    contiguous from 0 to the duration in seconds.

    ``beats`` (seconds) restricts label changes to those times; without it
    labels change on a ~93 ms grid. Labels are "<root>:maj", "<root>:min"
    (roots spelled with sharps, as :data:`workers.dsp.key.PITCH_CLASSES`) or
    "N" where there is no tonal content (silence, noise, drums alone).
    Vocabulary and scoring follow MIREX ACE "majmin"; other chords (7ths,
    sus, power chords) get the nearest triad. Empty input (or shorter than
    half a millisecond): no segments. Raises UnprocessableAudio for non-finite
    samples, ValueError for more than one channel.
    """
    y = np.asarray(y, np.float32)
    if y.ndim != 1:
        raise ValueError(f"expected mono samples (1-D), got shape {y.shape}")
    # One pass, no copy: a NaN or infinity anywhere makes the sum non-finite.
    if not np.isfinite(np.sum(y, dtype=np.float64)):
        raise UnprocessableAudio("samples must be finite (no NaN or infinity)")
    if len(y) == 0:
        return Chords([])
    duration = len(y) / sr
    fr = _pitch_salience(y, sr)
    level = fr.salience.sum(axis=1)
    # Reference level over frames with any tonal peak, so a track that is
    # mostly digital silence still gates its noise floor against its music.
    voiced = level[level > 0]
    ref = float(np.percentile(voiced, 90)) if len(voiced) else 0.0
    gate = np.clip(fr.tonality / GATE_TONALITY, 0, 1) * np.clip(level / (GATE_LEVEL * ref + 1e-12), 0, 1)
    treble = _chroma(fr.salience[:, TREBLE_MIDI:], TREBLE_MIDI)
    bass = _chroma(fr.salience[:, BASS_MIDI[0] : BASS_MIDI[1]], BASS_MIDI[0])
    hop, n = fr.hop_seconds, len(fr.salience)
    if beats is None:
        # Frame t stands for [(t - ½) hop, (t + ½) hop).
        edges = np.concatenate([[0.0], (np.arange(1, n) - 0.5) * hop, [duration]])
        weights = np.ones(n)
        scores = _scores(treble**COMPRESS, bass, gate)
    else:
        edges = _beat_edges(beats, duration)
        m = len(edges) - 1
        idx = np.clip(np.searchsorted(edges, np.arange(n) * hop, side="right") - 1, 0, m - 1)
        counts = np.bincount(idx, minlength=m)
        # Pool gate-weighted chroma, so gated frames (a drum fill) do not
        # dilute the interval; the interval's gate is its frames' mean.
        pooled_t, pooled_b = np.zeros((m, 12)), np.zeros((m, 12))
        np.add.at(pooled_t, idx, treble * gate[:, None])
        np.add.at(pooled_b, idx, bass * gate[:, None])
        gate_b = np.bincount(idx, gate, minlength=m) / np.maximum(counts, 1)
        weights = np.diff(edges) / hop
        scores = _scores(pooled_t**COMPRESS, pooled_b, gate_b)
    path = _viterbi(np.ascontiguousarray(scores * weights[:, None]), SWITCH_COST)
    keep = np.concatenate([[True], path[1:] != path[:-1]])
    starts = np.round(edges[:-1][keep], 3)
    ends = np.append(starts[1:], round(duration, 3))
    segments = [
        ChordSegment(float(a), float(b), LABELS[s])
        for a, b, s in zip(starts, ends, path[keep], strict=True)
        if b > a
    ]
    return Chords(_merge(segments))


def _merge(segments: list[ChordSegment]) -> list[ChordSegment]:
    """Close gaps left by dropped zero-length segments and merge equal
    neighbours, so segments stay contiguous."""
    out: list[ChordSegment] = []
    for s in segments:
        if out and out[-1].label == s.label:
            out[-1] = ChordSegment(out[-1].start, s.end, s.label)
        elif out:
            out.append(ChordSegment(out[-1].end, s.end, s.label))
        else:
            out.append(ChordSegment(0.0, s.end, s.label))
    return out


def warmup() -> None:
    """Import numba and compile the Viterbi kernel (~3 s cold, ~1 s with
    numba's on-disk cache, mostly its import) and load soxr and scipy's FFT
    plans, so the first job does not pay for them."""
    t = np.arange(22050) / 22050
    estimate_chords((0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 22050, beats=[0.5])
    estimate_chords((0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 22050)
