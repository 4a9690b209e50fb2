"""Musical key of a track: tonic, mode, Camelot code and a confidence.

Method (a Krumhansl–Schmuckler key finder on a peak-based pitch-class
profile, in the spirit of Gómez's HPCP, INFORMS J. Computing 18(3), 2006):

1. Decimate to ~5.5 kHz (nothing above 2 kHz is used) and take an STFT with
   ~0.74 s windows (1.35 Hz bins: semitones stay separate down to 55 Hz).
2. Keep *tonal* spectral peaks only — local maxima at least 4× the local
   geometric-mean level over ±21 Hz — so drum noise contributes little;
   refine each peak's frequency by parabolic interpolation of log magnitude.
3. Tuning: the magnitude-weighted circular mean of the peaks' deviations
   from the 12-TET grid (A4 = 440 Hz) gives the reference offset, so tracks
   tuned up to ±50 cents off 440 Hz map to the right pitch classes.
4. Pitch salience per frame at semitone resolution; the 3rd and 5th
   harmonics of each pitch (which land a fifth and a major third above it)
   are subtracted assuming 1/h amplitudes. Without this, the 5th partials
   of the root and fifth of a minor chord outweigh its minor third and a
   minor key reads as the parallel major.
5. Fold to 12 pitch classes, normalise each frame (each moment counts once,
   not the loudest), sum over the track and correlate with the 24 rotations
   of the Krumhansl–Kessler profiles (Krumhansl & Kessler 1982; Krumhansl,
   *Cognitive Foundations of Musical Pitch*, 1990). K–K's minor profile
   weights the natural (♭7) and the raised (7) seventh about equally, so
   both harmonic-minor (i–iv–V) and natural-minor pop/EDM loops
   (i–♭VI–♭VII) are recognised; Temperley's profiles, tried too, miss the
   latter.

Confidence = min(1, T / 0.2) · min(1, (r1 − r2) / 0.1) · max(0, r1), where
r1, r2 are the best and second-best of the 24 correlations and T the share of
the band's spectral energy in tonal peaks. The margin term is 0 when two keys
tie (usually relative or parallel keys) and saturates at a 0.1 gap, about
what separates a clear key from its neighbours; the tonality term keeps
noise and drum-only audio (T < 0.01; chords with drums ~0.3) near 0, since
their few chance peaks can correlate with any profile.

Cost: ~40 ms for a 3-minute track. Memory: the decimated signal (a quarter
of the input), STFT blocks of 256 frames and the list of spectral peaks:
48 MB peak beyond the input for 20 minutes (bench/analysis.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import soxr
from scipy.ndimage import uniform_filter1d

from workers.dsp.features import stft_magnitude_blocks

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")

# Krumhansl & Kessler (1982) probe-tone ratings, index 0 = tonic.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])

FMIN_HZ = 55.0  # A1: the bass register; the kick drum's body sits below it
FMAX_HZ = 2000.0  # fundamentals and low partials; higher up is mostly harmonics and noise
TARGET_SR = 5512.5  # ~2.5 × FMAX_HZ
WINDOW_SECONDS = 0.74  # 1.35 Hz bins at 5.5 kHz: 55 Hz and 58 Hz are 2 bins apart
PEAK_CONTRAST = 4.0  # tonal peak: ≥ 4× the local geometric-mean magnitude
CONTRAST_HZ = 43.0  # width of that local neighbourhood
# Subtracted share of the pitch 19 (3rd harmonic) and 28 (5th harmonic)
# semitones below, for a 1/h amplitude spectrum.
HARMONIC_SHIFTS = ((19, 1 / 3), (28, 1 / 5))
BLOCK_FRAMES = 256
# Confidence scales (see the module docstring): a correlation margin of 0.1
# is about the gap between a clear key and its relative or parallel key;
# mixes of chords and drums measure ~0.3 tonality, noise and drums < 0.01.
FULL_MARGIN = 0.1
FULL_TONALITY = 0.2


@dataclass(frozen=True)
class Key:
    """An estimated key. ``key`` is "<tonic> <mode>" with sharps only."""

    key: str
    tonic: str
    mode: str
    camelot: str
    confidence: float

    def to_dict(self) -> dict:
        return asdict(self)


def camelot(tonic: str, mode: str) -> str:
    """Camelot wheel code: C major = 8B, A minor = 8A; one step clockwise is
    a fifth up (G major = 9B). Relative keys share the number."""
    pc = PITCH_CLASSES.index(tonic)
    major_pc = pc if mode == "major" else (pc + 3) % 12
    number = (7 * major_pc + 8) % 12 or 12
    return f"{number}{'B' if mode == 'major' else 'A'}"


def _make_key(pc: int, mode: str, confidence: float) -> Key:
    tonic = PITCH_CLASSES[pc]
    return Key(f"{tonic} {mode}", tonic, mode, camelot(tonic, mode), round(float(confidence), 3))


@dataclass(frozen=True)
class _Peaks:
    frame: np.ndarray  # STFT frame index of each peak
    freq: np.ndarray  # Hz, interpolated
    mag: np.ndarray  # linear magnitude
    n_frames: int
    tonality: float  # share of the band's spectral energy (55 Hz–2 kHz) in tonal peaks


def block_peaks(
    block: np.ndarray, n_fft: int, fs: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tonal peaks of a block of STFT magnitudes (frames × bins) in FMIN_HZ..FMAX_HZ:
    local maxima at least PEAK_CONTRAST × their neighbourhood's geometric mean,
    refined by parabolic interpolation on log magnitude.

    Returns (frame index in the block, frequency Hz, magnitude, the band's
    magnitudes). Shared with the chord recogniser."""
    lo = max(1, int(FMIN_HZ * n_fft / fs))
    hi = min(n_fft // 2 - 1, int(np.ceil(FMAX_HZ * n_fft / fs)))
    width = max(3, int(CONTRAST_HZ * n_fft / fs) | 1)
    m = block[:, lo - 1 : hi + 2]  # one guard bin each side
    c = m[:, 1:-1]
    log_m = np.log(m + 1e-7)
    local = np.exp(uniform_filter1d(log_m, width, axis=1, mode="nearest"))[:, 1:-1]
    is_peak = (c > m[:, :-2]) & (c >= m[:, 2:]) & (c > PEAK_CONTRAST * local) & (c > 1e-5)
    fi, bi = np.nonzero(is_peak)
    a, b, g = log_m[fi, bi], log_m[fi, bi + 1], log_m[fi, bi + 2]
    denom = a - 2 * b + g
    delta = np.where(denom < 0, 0.5 * (a - g) / np.where(denom < 0, denom, -1.0), 0.0)
    return fi, (lo + bi + delta) * fs / n_fft, c[fi, bi], c


def _spectral_peaks(y: np.ndarray, sr: int) -> _Peaks:
    """Tonal peaks of the decimated STFT."""
    q = max(1, int(sr // TARGET_SR))
    fs = sr / q
    x = soxr.resample(y, sr, fs) if q > 1 else y
    n_fft = int(2 ** round(np.log2(WINDOW_SECONDS * fs)))
    hop = n_fft // 2
    frames, freqs, mags = [], [], []
    offset = 0
    band_energy = tonal_energy = 0.0
    for block in stft_magnitude_blocks(x, n_fft, hop, BLOCK_FRAMES):
        fi, freq, mag, c = block_peaks(block, n_fft, fs)
        frames.append(fi + offset)
        freqs.append(freq)
        mags.append(mag)
        band_energy += float(np.sum(np.square(c, dtype=np.float64)))
        tonal_energy += float(np.sum(np.square(mag, dtype=np.float64)))
        offset += len(block)
    if not frames:
        return _Peaks(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), 0, 0.0)
    return _Peaks(
        np.concatenate(frames),
        np.concatenate(freqs),
        np.concatenate(mags).astype(np.float64),
        offset,
        tonal_energy / band_energy if band_energy > 0 else 0.0,
    )


@dataclass(frozen=True)
class Chroma:
    """Track-level pitch-class profile."""

    profile: np.ndarray  # 12 values, C first, summing to 1 (all zero: no tonal content)
    tuning_cents: float  # reference offset from A4 = 440 Hz, in [-50, 50)
    tonality: float  # share of 55 Hz–2 kHz spectral energy in tonal peaks, [0, 1]


def chroma_profile(y: np.ndarray, sr: int) -> Chroma:
    """Pitch-class profile of mono audio ``y`` at ``sr`` Hz (steps 1–5 of
    the module docstring)."""
    peaks = _spectral_peaks(np.asarray(y, np.float32), sr)
    frame, freq, mag, n_frames = peaks.frame, peaks.freq, peaks.mag, peaks.n_frames
    if len(freq) == 0:
        return Chroma(np.zeros(12), 0.0, 0.0)
    midi = 12 * np.log2(freq / 440.0) + 69
    # Circular mean: deviations of +0.49 and -0.49 semitones are neighbours.
    dev = midi - np.round(midi)
    tuning = float(np.angle(np.sum(mag * np.exp(2j * np.pi * dev))) / (2 * np.pi))
    midi = midi - tuning
    note = np.round(midi).astype(np.int64)
    # cos² weighting: a peak half-way between two semitones counts for neither.
    weight = mag * np.cos(np.pi * (midi - note)) ** 2
    ok = (note >= 0) & (note < 128)
    pitch = np.zeros((n_frames, 128))
    np.add.at(pitch, (frame[ok], note[ok]), weight[ok])
    salience = pitch.copy()
    for shift, share in HARMONIC_SHIFTS:
        salience[:, shift:] -= share * pitch[:, :-shift]
    np.maximum(salience, 0, out=salience)
    chroma = _fold(salience)
    # Per-frame normalisation with a floor, so near-silent frames (fades,
    # breaks) do not get a full vote of noise.
    energy = chroma.sum(axis=1, keepdims=True)
    floor = 0.05 * np.percentile(energy, 90) if n_frames else 0.0
    chroma = chroma / np.maximum(energy, floor + 1e-12)
    total = chroma.sum(axis=0)
    s = total.sum()
    return Chroma(total / s if s > 0 else np.zeros(12), 100.0 * tuning, peaks.tonality)


def _fold(salience: np.ndarray) -> np.ndarray:
    """Sum a (frames, 128) semitone salience into (frames, 12) pitch classes."""
    padded = np.zeros((salience.shape[0], 132))
    padded[:, :128] = salience
    return padded.reshape(salience.shape[0], 11, 12).sum(axis=1)


def key_scores(chroma: np.ndarray) -> np.ndarray:
    """Pearson correlation of ``chroma`` with the 24 K–K key profiles:
    shape (2, 12) = (major/minor, tonic pitch class)."""
    c = chroma - chroma.mean()
    out = np.zeros((2, 12))
    for m, profile in enumerate((KK_MAJOR, KK_MINOR)):
        p = profile - profile.mean()
        rot = np.stack([np.roll(p, k) for k in range(12)])
        denom = np.linalg.norm(c) * np.linalg.norm(p)
        out[m] = rot @ c / denom if denom > 0 else 0.0
    return out


def estimate_key(y: np.ndarray, sr: int) -> Key:
    """Estimate the key of mono audio ``y`` (float, any length) at ``sr`` Hz.

    Returns C major with confidence 0 when there is no tonal peak at all
    (silence, empty input); noise and drums alone give some key with a
    confidence below 0.1.
    """
    chroma = chroma_profile(y, sr)
    if not chroma.profile.any():
        return _make_key(0, "major", 0.0)
    flat = key_scores(chroma.profile).ravel()
    order = np.argsort(flat)[::-1]
    r1, r2 = float(flat[order[0]]), float(flat[order[1]])
    mode_idx, pc = divmod(int(order[0]), 12)
    confidence = min(1.0, chroma.tonality / FULL_TONALITY) * min(1.0, (r1 - r2) / FULL_MARGIN) * max(0.0, r1)
    return _make_key(pc, ("major", "minor")[mode_idx], confidence)


def warmup() -> None:
    """Run once on a short tone so the first job does not pay for loading
    soxr and scipy's FFT plans (a few tens of ms; nothing is JIT-compiled)."""
    t = np.arange(22050) / 22050
    estimate_key((0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 22050)
