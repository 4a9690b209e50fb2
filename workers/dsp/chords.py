"""Chord labels over time: the 24 major and minor triads plus "N" (no chord),
the MIREX "majmin" vocabulary.

Method:

1. **Pitch salience** every 93 ms from tonal spectral peaks
   (:func:`workers.dsp.salience.pitch_salience`: 0.37 s windows on a 5.5 kHz
   copy, tuning-corrected, half the 1/h harmonic subtraction).
2. **Intervals**: the beats (the chords job passes those of
   :func:`workers.dsp.beats.track_beats`), gaps longer than twice the median
   beat interval split evenly; without beats a 0.3 s grid (the network is trained on both).
3. **Classifier**: :mod:`workers.dsp.chordnet` turns each interval's mean
   and minimum salience over MIDI 28-95, its level and its neighbours' into
   probabilities of the 25 labels. A small network trained on rendered
   music, because a template score follows whatever pitch classes are
   loudest, and a lead mixed over the harmony with passing tones then
   decides the chord (its docstring says more).
4. **Gate**: the chord probabilities are scaled by a gate in [0, 1] that
   closes for intervals with little tonal energy relative to the track
   (< 5 % of the 90th percentile) or little tonality (< 5 % of the
   55 Hz–2 kHz energy in tonal peaks: noise, drums), the rest going to N.
   The network never saw drums alone or noise, the gate has.
5. **Smoothing**: Viterbi over the 25 labels on log probabilities with a
   cost ``SWITCH_COST`` per change — the HMM with a uniform transition
   matrix (Bello & Pickens, ISMIR 2005; Cho & Bello, IEEE TASLP 2014).
6. **Spelling**: roots are named as in the track's key (estimated from the
   same probabilities, :mod:`workers.dsp.tonality`): ``Bb:maj`` in F major,
   ``A#:maj`` in F# major (:mod:`workers.dsp.pitchclass`).

Accuracy and its history: ``docs/accuracy.md`` and ``bench/docs/tonal.md``.
Cost: ~0.05 s CPU per minute of audio beyond the beat tracking (the STFT and
peak picking; the network and the Viterbi pass take a few ms). Memory beyond
the input: the 5.5 kHz copy (¼ of a float32 input), one STFT block
(~20 MB), ~0.6 kB per 93 ms frame of salience and ~6 kB per interval of
features: ~60 MB for 20 minutes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from workers.dsp import chordnet, tonality
from workers.dsp.errors import UnprocessableAudio
from workers.dsp.pitchclass import PITCH_CLASSES, chord_root
from workers.dsp.salience import Salience, pitch_salience
from workers.dsp.salience import chroma as _chroma  # noqa: F401  (workers/dsp/structure.py imports it)

QUALITIES = ("maj", "min")
TRIADS = {"maj": (0, 4, 7), "min": (0, 3, 7)}
# Index i < 24: root i % 12, quality QUALITIES[i // 12]; index 24: no chord.
# Sharps here; the labels returned are spelled in the track's key (step 6).
LABELS = tuple(f"{pc}:{q}" for q in QUALITIES for pc in PITCH_CLASSES) + ("N",)

TREBLE_MIDI = 48  # C3: lowest pitch of a treble chroma (workers/dsp/structure.py)
BASS_MIDI = (33, 55)  # A1 .. F#3 (55–185 Hz), end exclusive: its bass chroma
GRID_SECONDS = 0.3  # intervals without beats (a beat at 200 BPM)
SWITCH_COST = 2.0  # log-probability units per label change
PROB_FLOOR = 1e-4
GATE_TONALITY = 0.05  # interval tonality from which the gate is fully open
GATE_LEVEL = 0.05  # interval salience / 90th percentile over voiced intervals, idem
LONG_GAP = 2.0  # beat gaps longer than this × the median interval get split

_pitch_salience = pitch_salience  # the name workers/dsp/structure.py imports


@dataclass(frozen=True)
class ChordSegment:
    """One label over [start, end) in seconds (ms precision)."""

    start: float
    end: float
    label: str  # "C:maj", "A:min", "Bb:maj", "F#:min", ... or "N"


@dataclass(frozen=True)
class Chords:
    """Contiguous segments from 0 to the track's duration (none if empty)."""

    segments: list[ChordSegment]

    def to_dict(self) -> dict:
        return {"chords": [{"start": s.start, "end": s.end, "label": s.label} for s in self.segments]}


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


def interval_edges(beats: list[float] | None, duration: float, hop_seconds: float) -> np.ndarray:
    """Edges (s) of the intervals labelled: the beats (step 2), or a
    GRID_SECONDS grid without beats or with fewer than two inside the track.
    Intervals are at least one salience hop long."""
    inside = [] if beats is None else [b for b in beats if 0 < b < duration]
    if len(inside) >= 2:
        edges = _beat_edges(inside, duration)
    else:
        pieces = max(1, int(round(duration / GRID_SECONDS)))
        edges = np.linspace(0.0, duration, pieces + 1)
    keep = np.concatenate([[True], np.diff(edges) >= 0.5 * hop_seconds])
    keep[-1] = True
    edges = edges[keep]
    if len(edges) > 2 and edges[-1] - edges[-2] < 0.5 * hop_seconds:
        edges = np.delete(edges, -2)
    return edges


def _gate(sal, edges: np.ndarray) -> np.ndarray:
    """Per-interval gate in [0, 1] (step 4)."""
    n, m = len(sal.salience), len(edges) - 1
    level = sal.salience.sum(axis=1)
    voiced = level[level > 0]
    ref = float(np.percentile(voiced, 90)) if len(voiced) else 0.0
    frame_gate = np.clip(sal.tonality / GATE_TONALITY, 0, 1) * np.clip(
        level / (GATE_LEVEL * ref + 1e-12), 0, 1
    )
    idx = np.clip(np.searchsorted(edges, np.arange(n) * sal.hop_seconds, side="right") - 1, 0, m - 1)
    counts = np.bincount(idx, minlength=m)
    gate = np.bincount(idx, frame_gate, minlength=m) / np.maximum(counts, 1)
    empty = counts == 0
    if empty.any():
        mid = 0.5 * (edges[:-1] + edges[1:])[empty]
        gate[empty] = frame_gate[np.clip(np.round(mid / sal.hop_seconds).astype(np.int64), 0, n - 1)]
    return gate


def chord_analysis(
    y: np.ndarray, sr: int, beats: list[float] | None = None, salience: Salience | None = None
) -> tuple[Salience, np.ndarray, np.ndarray]:
    """The salience (step 1), the interval edges (s, from 0 to the duration)
    and the gated probabilities (intervals, 25) of the labels of
    :data:`LABELS` (steps 2–4). Shared with the key finder and the downbeat
    tracker. ``salience``: ``pitch_salience(y, sr)`` if the caller has it."""
    duration = len(y) / sr
    sal = pitch_salience(y, sr) if salience is None else salience
    edges = interval_edges(beats, duration, sal.hop_seconds)
    if len(sal.salience) == 0:
        probs = np.zeros((len(edges) - 1, 25))
        probs[:, 24] = 1.0
        return sal, edges, probs
    probs = chordnet.predict(chordnet.interval_features(sal.salience, sal.hop_seconds, edges))
    gate = _gate(sal, edges)
    probs[:, :24] *= gate[:, None]
    probs[:, 24] = 1.0 - probs[:, :24].sum(axis=1)
    return sal, edges, probs


def decode(probs: np.ndarray) -> np.ndarray:
    """Label index per interval (step 5)."""
    return _viterbi(np.ascontiguousarray(np.log(probs + PROB_FLOOR)), SWITCH_COST)


def estimate_chords(
    y: np.ndarray, sr: int, beats: list[float] | None = None, salience: Salience | None = None
) -> Chords:
    """Chord segments of mono audio ``y`` (float, any length) at ``sr`` Hz,
    contiguous from 0 to the duration in seconds.

    ``beats`` (seconds) are where labels may change; without them (or with
    fewer than two inside the track) labels change on a 0.3 s grid. Labels
    are "<root>:maj", "<root>:min" with the root spelled as in the track's
    key ("Bb:maj", "F#:min"; :mod:`workers.dsp.pitchclass`), or "N" where
    there is no tonal content (silence, noise, drums alone). Vocabulary and
    scoring follow MIREX ACE "majmin"; other chords (7ths, sus, power
    chords) get the nearest triad. Empty input: no segments. Raises
    UnprocessableAudio for non-finite samples, ValueError for more than one
    channel. ``salience``: ``pitch_salience(y, sr)`` when the caller has
    computed it already (``beats.beat_analysis`` returns it).
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
    _, edges, probs = chord_analysis(y, sr, beats, salience)
    path = decode(probs)
    found = tonality.key_from_chords(probs, np.diff(edges), path)
    key_pc, mode = (found[0], found[1]) if found is not None else (None, "major")
    names = [
        "N" if s == 24 else f"{chord_root(s % 12, key_pc, mode)}:{QUALITIES[s // 12]}" for s in range(25)
    ]
    keep = np.concatenate([[True], path[1:] != path[:-1]])
    starts = np.round(edges[:-1][keep], 3)
    ends = np.append(starts[1:], round(duration, 3))
    segments = [
        ChordSegment(float(a), float(b), names[s])
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
    numba's on-disk cache, mostly its import), load the network's weights,
    soxr and scipy's FFT plans, so the first job does not pay for them."""
    t = np.arange(22050) / 22050
    estimate_chords((0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 22050, beats=[0.5])
    estimate_chords((0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 22050)
