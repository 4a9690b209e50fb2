"""Semitone pitch salience from tonal spectral peaks: the front end shared
by key, chords and the structure analysis.

1. Decimate to ~5.5 kHz (nothing above 2 kHz is used) and take an STFT.
2. Keep *tonal* spectral peaks only — local maxima at least 4× the local
   geometric-mean level over ±21 Hz — so drum noise contributes little;
   refine each peak's frequency by parabolic interpolation of log magnitude
   (in the spirit of Gómez's HPCP, INFORMS J. Computing 18(3), 2006).
3. Tuning: the magnitude-weighted circular mean of the peaks' deviations
   from the 12-TET grid (A4 = 440 Hz), so tracks tuned up to ±50 cents off
   440 Hz map to the right semitones.
4. Salience per frame and MIDI pitch with cos² weighting (a peak half-way
   between two semitones counts for neither); the 3rd and 5th harmonics of
   each pitch (a twelfth and two octaves and a major third above it) are
   subtracted assuming 1/h amplitudes, scaled by ``harmonic_scale``.

:func:`pitch_salience` (chords, structure) uses 0.37 s windows every 93 ms
and half the harmonic subtraction: a chord's own tones sit exactly where its
bass's harmonics land (the root's 3rd harmonic is on the chord's fifth), so
the full share erases the fifth of minor chords. The key's track-level
profile (``workers/dsp/key.py``) uses 0.74 s windows and the full share.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr
from scipy.ndimage import uniform_filter1d

from workers.dsp.features import n_frames, stft_magnitude_blocks

FMIN_HZ = 55.0  # A1: the bass register; the kick drum's body sits below it
FMAX_HZ = 2000.0  # fundamentals and low partials; higher up is mostly harmonics and noise
TARGET_SR = 5512.5  # ~2.5 × FMAX_HZ
PEAK_CONTRAST = 4.0  # tonal peak: ≥ 4× the local geometric-mean magnitude
CONTRAST_HZ = 43.0  # width of that local neighbourhood
# Subtracted share of the pitch 19 (3rd harmonic) and 28 (5th harmonic)
# semitones below, for a 1/h amplitude spectrum.
HARMONIC_SHIFTS = ((19, 1 / 3), (28, 1 / 5))

WINDOW_SECONDS = 0.37  # 2048 samples at 5.5 kHz: 2.7 Hz bins
HOP_SECONDS = 0.093  # 512 samples at 5.5 kHz
HARMONIC_SCALE = 0.5  # share of the 1/h harmonic subtraction (module docstring)
BLOCK_FRAMES = 512


def block_peaks(
    block: np.ndarray, n_fft: int, fs: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tonal peaks of a block of STFT magnitudes (frames × bins) in FMIN_HZ..FMAX_HZ:
    local maxima at least PEAK_CONTRAST × their neighbourhood's geometric mean,
    refined by parabolic interpolation on log magnitude.

    Returns (frame index in the block, frequency Hz, magnitude, the band's
    magnitudes)."""
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


@dataclass(frozen=True)
class Salience:
    salience: np.ndarray  # (frames, 128) float32, by MIDI pitch, harmonics suppressed
    tonality: np.ndarray  # (frames,) share of 55 Hz–2 kHz energy in tonal peaks
    hop_seconds: float  # frame t is centred on t × hop_seconds
    tuning_cents: float  # reference offset from A4 = 440 Hz, in [-50, 50)


def pitch_salience(y: np.ndarray, sr: int) -> Salience:
    """Semitone salience of mono ``y`` at ``sr`` Hz every ~93 ms (module
    docstring). Two passes so that memory stays bounded: the first keeps only
    each STFT block's tonal peaks (12 bytes each) and the running tuning sum;
    the second maps them to pitches once the tuning is known, a block at a
    time."""
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
    return Salience(salience, tonality, hop / fs, 100.0 * tuning)


def chroma(salience: np.ndarray, first_midi: int) -> np.ndarray:
    """Fold (frames, pitches from ``first_midi``) into (frames, 12), C first."""
    frames, n = salience.shape
    padded = np.zeros((frames, -(-n // 12) * 12), np.float64)
    padded[:, :n] = salience
    return np.roll(padded.reshape(frames, -1, 12).sum(axis=1), first_midi % 12, axis=1)
