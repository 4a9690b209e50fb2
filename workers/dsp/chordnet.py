"""A small learned chord classifier: beat-synchronous pitch features in, the
probabilities of the 24 major/minor triads and "N" out.

Why learned: a template method scores the pitch classes present, so a lead
that is louder than the harmony and spends much of its time on scale steps
outside the chord (passing tones, appoggiaturas) outvotes the comping
instrument, and the chord goes wherever the melody leans. Which register a
note is in, whether it sustains across the beat, what the bass does and what
sounded in the neighbouring beats all tell a harmony note from a melody
note; a classifier can weigh them, a template cannot. (Template matching and
HMM smoothing: Bello & Pickens, ISMIR 2005; the case for learned front ends:
Korzeniowski & Widmer, "Feature learning for chord recognition: the deep
chroma extractor", ISMIR 2016; bass and treble: Mauch & Dixon, ISMIR 2010.)

Features, per beat interval, from the semitone pitch salience of
:func:`workers.dsp.chords._pitch_salience` (tonal spectral peaks of a 5.5 kHz
copy, 0.37 s windows every 93 ms, partial harmonic suppression), MIDI 28-95
(E1-B6, 68 semitones):

* the *mean* salience over the interval's frames, and the *minimum* (a note
  that sustains through the whole beat — the harmony — survives the minimum;
  a melody note that moves within the beat does not);
* each scaled by the interval's loudest semitone and log-compressed,
  log(1 + 100 x) / log(101), so the balance of the mix matters less than
  which notes sound;
* the interval's level relative to the track (log of its summed salience
  over the 90th percentile of all intervals', clipped at -8), which tells
  silence and fades ("N") from music;
* for the interval and its two neighbours on each side (5 × 137 = 685 inputs):
  chords last at least a beat or two, melody notes less.

Network: 685 → 256 → 128 → 25, ReLU, softmax; ~210 k weights stored as
float16 (``data/chordnet.npz``, ~0.4 MB). It is trained by
``bench/train_chords.py`` from scratch on songs rendered for the purpose
(``bench/songgen.py`` "train" style: FluidR3 GM and TimGM6mb, every melodic
GM program in its role, random voicings, inversions, mix balances, reverb on
or off), with every example transposed to all 12 keys, and never on the
benchmark's held-out split. Inference is three matrix products per beat: a
3-minute song (~360 beats) takes ~1 ms.
"""

from __future__ import annotations

import numpy as np

from workers.dsp import mlp

MIDI_LO, MIDI_HI = 28, 96  # E1 .. B6 (end exclusive): the salience stops at 2 kHz (~B6)
N_PITCH = MIDI_HI - MIDI_LO
CONTEXT = 2  # neighbouring intervals on each side
LOG_GAIN = 100.0
LEVEL_FLOOR = -8.0
N_CLASSES = 25  # 12 major, 12 minor (roots C..B), N
WEIGHTS = "chordnet"  # workers/dsp/data/chordnet.npz


def interval_features(salience: np.ndarray, hop_s: float, edges: np.ndarray) -> np.ndarray:
    """Per-interval features (m, 2 · N_PITCH + 1) of a salience (frames, 128)
    whose frame t is centred at t · ``hop_s`` seconds, for the intervals
    between consecutive ``edges`` (seconds, increasing): mean and minimum
    salience over the frames centred in each interval (the nearest frame
    when none is), normalised and compressed, and the interval's level."""
    s = np.asarray(salience[:, MIDI_LO:MIDI_HI], np.float64)
    n, m = len(s), len(edges) - 1
    if n == 0 or m <= 0:
        return np.zeros((max(m, 0), 2 * N_PITCH + 1))
    idx = np.searchsorted(edges, np.arange(n) * hop_s, side="right") - 1
    inside = (idx >= 0) & (idx < m)
    mean = np.zeros((m, N_PITCH))
    np.add.at(mean, idx[inside], s[inside])
    counts = np.bincount(idx[inside], minlength=m).astype(np.float64)
    low = np.full((m, N_PITCH), np.inf)
    np.minimum.at(low, idx[inside], s[inside])
    empty = counts == 0
    if empty.any():
        mid = 0.5 * (edges[:-1] + edges[1:])[empty]
        nearest = np.clip(np.round(mid / hop_s).astype(np.int64), 0, n - 1)
        mean[empty] = s[nearest]
        low[empty] = s[nearest]
        counts[empty] = 1.0
    mean /= counts[:, None]
    total = mean.sum(axis=1)
    ref = np.percentile(total, 90) if m else 0.0
    level = np.log(np.maximum(total, 1e-12) / max(ref, 1e-12))
    level = np.clip(level, LEVEL_FLOOR, 2.0)
    peak = np.maximum(mean.max(axis=1, keepdims=True), 1e-12)
    scale = np.log1p(LOG_GAIN)
    out = np.empty((m, 2 * N_PITCH + 1))
    out[:, :N_PITCH] = np.log1p(LOG_GAIN * mean / peak) / scale
    out[:, N_PITCH : 2 * N_PITCH] = np.log1p(LOG_GAIN * low / peak) / scale
    out[:, -1] = level / -LEVEL_FLOOR
    return out


def with_context(features: np.ndarray) -> np.ndarray:
    """Stack each interval's features with its CONTEXT neighbours on each
    side (the first and last repeated beyond the ends: the track's edge is
    not evidence of silence): (m, (2 · CONTEXT + 1) · d)."""
    m, d = features.shape
    if m == 0:
        return np.zeros((0, (2 * CONTEXT + 1) * d))
    padded = np.concatenate(
        [np.repeat(features[:1], CONTEXT, 0), features, np.repeat(features[-1:], CONTEXT, 0)]
    )
    return np.concatenate([padded[k : k + m] for k in range(2 * CONTEXT + 1)], axis=1)


def transpose(features: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Interval features and class labels moved up ``k`` semitones (the
    pitch axes shift, vacated semitones read 0): training augmentation."""
    out = np.zeros_like(features)
    d = 2 * N_PITCH + 1
    for block in range(features.shape[1] // d):
        base = block * d
        for part in (0, N_PITCH):
            a, b = base + part, base + part + N_PITCH
            if k >= 0:
                out[:, a + k : b] = features[:, a : b - k]
            else:
                out[:, a : b + k] = features[:, a - k : b]
        out[:, base + d - 1] = features[:, base + d - 1]
    lab = labels.copy()
    chord = lab < 24
    lab[chord] = (lab[chord] // 12) * 12 + (lab[chord] % 12 + k) % 12
    return out, lab


def predict(features: np.ndarray) -> np.ndarray:
    """Class probabilities (m, 25) for interval features (m, 2 · N_PITCH + 1)
    from :func:`interval_features`; classes as ``workers.dsp.chords.LABELS``
    (C:maj … B:maj, C:min … B:min, N)."""
    x = mlp.forward(with_context(features), WEIGHTS)
    x -= x.max(axis=1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=1, keepdims=True)
    return x.astype(np.float64)
