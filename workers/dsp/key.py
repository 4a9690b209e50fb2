"""Musical key of a track: tonic, mode, Camelot code and a confidence.

Method: two kinds of evidence, one front end.

1. **Front end**: the semitone pitch salience every 93 ms of
   :func:`workers.dsp.salience.pitch_salience` (tonal spectral peaks of a
   5.5 kHz copy, tuning-corrected), shared with the chord recogniser.
2. **Chords**: the chord probabilities of :mod:`workers.dsp.chords` on a
   0.3 s grid (no beat tracking: the key does not need the bar lines),
   Viterbi-decoded, scored against the 24 keys by
   :mod:`workers.dsp.tonality`: time share of each triad weighted by its
   scale degree, the opening and closing chord, dominant→tonic changes.
   This is what separates relative keys (C major / A minor share every
   note; the tonic chord and the V–i cadence do not) and neighbours a fifth
   apart.
3. **Profile**: the salience folded to 12 pitch classes, each frame
   normalised (each moment counts once), summed over the track and
   correlated with the Krumhansl–Kessler probe-tone profiles (Krumhansl &
   Kessler 1982; Krumhansl, *Cognitive Foundations of Musical Pitch*, 1990):
   the classic key finder, kept as a tie-breaker for music whose chords the
   recogniser cannot name (``PROFILE_WEIGHT`` × the correlation is added to
   the chord score).

The key is spelled as musicians write it (:mod:`workers.dsp.pitchclass`):
"Bb major", "F# major", "Eb minor", "C# minor".

Confidence = min(1, T / 0.2) · C · F² · (½ + ½ min(1, M / 0.15)), where T
is the share of the 55 Hz–2 kHz energy in tonal peaks (noise and drums
< 0.01; music with drums ~0.3), C the duration-weighted mean over the grid
of the best triad's gated probability ("how much of the track sounds like
triads": speech, noise and atonal clusters score low), F the share of that
chord time spent on triads diatonic to the key found (atonal music wanders
off any key), and M the score margin over the runner-up key.

Cost: ~0.05 s per minute of audio (the STFT and peak picking; the network,
Viterbi and key scores are a few ms). Memory: as :mod:`workers.dsp.chords`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from workers.dsp import chords, tonality
from workers.dsp.pitchclass import PITCH_CLASSES, key_tonic, pc_of
from workers.dsp.pitchclass import camelot as _camelot
from workers.dsp.salience import Salience, chroma

# Krumhansl & Kessler (1982) probe-tone ratings, index 0 = tonic.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])

PROFILE_WEIGHT = 0.3
FULL_MARGIN = 0.15
FULL_TONALITY = 0.2

__all__ = ["PITCH_CLASSES", "Key", "camelot", "estimate_key", "warmup"]


@dataclass(frozen=True)
class Key:
    """An estimated key. ``key`` is "<tonic> <mode>", conventionally spelled."""

    key: str
    tonic: str
    mode: str
    camelot: str
    confidence: float

    def to_dict(self) -> dict:
        return asdict(self)


def camelot(tonic: str, mode: str) -> str:
    """Camelot wheel code of a key named with sharps or flats: C major = 8B,
    A minor = 8A; one step clockwise is a fifth up (G major = 9B)."""
    return _camelot(pc_of(tonic), mode)


def _make_key(pc: int, mode: str, confidence: float) -> Key:
    tonic = key_tonic(pc, mode)
    return Key(f"{tonic} {mode}", tonic, mode, _camelot(pc, mode), round(float(confidence), 3))


def profile_scores(profile: np.ndarray) -> np.ndarray:
    """Pearson correlation of a 12-bin pitch-class profile (C first) with
    the 24 K–K key profiles: (24,) = major C..B, minor C..B."""
    c = profile - profile.mean()
    out = np.zeros(24)
    for m, template in enumerate((KK_MAJOR, KK_MINOR)):
        p = template - template.mean()
        denom = np.linalg.norm(c) * np.linalg.norm(p)
        if denom > 0:
            out[m * 12 : m * 12 + 12] = np.stack([np.roll(p, k) for k in range(12)]) @ c / denom
    return out


def estimate_key(y: np.ndarray, sr: int, salience: Salience | None = None) -> Key:
    """Estimate the key of mono audio ``y`` (float, any length) at ``sr`` Hz.
    ``salience``: ``pitch_salience(y, sr)`` when the caller has computed it
    already (``beats.beat_analysis`` returns it).

    Returns C major with confidence 0 when there is no tonal content
    (silence, empty input); noise, drums alone and speech get a confidence
    near 0. Raises UnprocessableAudio for non-finite samples, ValueError for
    more than one channel.
    """
    y = np.asarray(y, np.float32)
    if y.ndim != 1:
        raise ValueError(f"expected mono samples (1-D), got shape {y.shape}")
    if len(y) == 0:
        return _make_key(0, "major", 0.0)
    sal, edges, probs = chords.chord_analysis(y, sr, None, salience)
    frames = chroma(sal.salience, 0)
    energy = frames.sum(axis=1, keepdims=True)
    if not energy.any():
        return _make_key(0, "major", 0.0)
    # Per-frame normalisation with a floor, so near-silent frames (fades,
    # breaks) do not get a full vote of noise.
    floor = 0.05 * np.percentile(energy, 90)
    profile = (frames / np.maximum(energy, floor + 1e-12)).sum(axis=0)
    durations = np.diff(edges)
    path = chords.decode(probs)
    scores = tonality.key_scores(probs, durations, path) + PROFILE_WEIGHT * profile_scores(profile)
    order = np.argsort(scores)[::-1]
    mode_idx, pc = divmod(int(order[0]), 12)
    mode = ("major", "minor")[mode_idx]

    band_tonality = float(np.mean(sal.tonality[energy[:, 0] > floor]))
    weights = durations / max(float(durations.sum()), 1e-12)
    chordness = float(np.sum(weights * probs[:, :24].max(axis=1)))
    share = (probs[:, :24] * durations[:, None]).sum(axis=0)
    diatonic = tonality.diatonic_mask(pc, mode)
    fit = float(share[diatonic].sum() / share.sum()) if share.sum() > 0 else 0.0
    margin = float(scores[order[0]] - scores[order[1]])
    confidence = (
        min(1.0, band_tonality / FULL_TONALITY)
        * chordness
        * fit**2
        * (0.5 + 0.5 * min(1.0, margin / FULL_MARGIN))
    )
    return _make_key(pc, mode, confidence)


def warmup() -> None:
    """Run once on a short tone so the first job does not pay for loading
    the chord network, soxr and scipy's FFT plans."""
    t = np.arange(22050) / 22050
    estimate_key((0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 22050)
