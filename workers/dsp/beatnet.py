"""The beat-activation network: how likely a beat falls on each onset frame.

Why: the onset envelopes alone do not say which onsets are beats. Comping on
the off-beats, a ride or hi-hat in eighths, a shuffle's swung eighths all
make onsets between the beats as strong as (or stronger than) those on them,
and a tracker that follows the strongest periodic onsets then sits half a
beat (or a swung eighth) off, or at twice or half the tempo. What tells the
beat is the pattern around the onset — the kick and bass on it, a snare on
every other one, the comping's hit half a beat later — which a small
network over a few seconds of context can learn (the approach of
Böck & Schedl, "Enhanced beat tracking with context-aware neural networks",
DAFx 2011, and madmom's RNN beat processors, with a much smaller model).

Inputs: the three onset bands of :func:`workers.dsp.tempo.onset_bands` (low
< 200 Hz, mid, high > 4 kHz), each over its RMS over the track and
log-compressed, then read around the frame in two rings (LAYOUT): max-pooled
over 3 frames (35 ms) every 3 frames out to ±0.7 s (41 steps), and max-pooled
over 9 frames (105 ms) every 9 frames from 0.75 s to 2.74 s on each side (2 ×
20 steps): 3 × 81 = 243 inputs. beats-3 read ±1.4 s at 35 ms alone; at slow
tempi that is one or two beats each side, too little to tell a beat from an
eighth, and the same inputs spread over ±2.7 s (each side a bar of 4/4 at 88
BPM, one or two backbeat snares at 60) doubled or halved fewer songs and left fewer
half a beat off (bench/docs/tonal.md, "beats-4").
Network: 243 → 64 → 32 → 1, ReLU, a logistic output; ~18 k weights in
float16 (``data/beats.npz``), trained by ``bench/train_beats.py`` on
``bench/songgen.py`` "train"-style songs (FluidR3 GM and TimGM6mb), never
on the held-out split. Cost: one (frames × 243) matrix and three matrix
products: ~0.01 s per minute of audio.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import maximum_filter1d

from workers.dsp import mlp

# Where the network reads the pooled bands, relative to the frame: rings of
# (max-pool width in frames, offsets in frames). 11.6 ms frames.
INNER_POOL, INNER_STEPS = 3, 20  # 35 ms steps out to ±0.7 s
OUTER_POOL, OUTER_STEPS = 9, 20  # then 105 ms steps out to ±2.74 s
_OUTER_START = INNER_POOL * INNER_STEPS + (OUTER_POOL + 1) // 2  # first outer window just past the inner ring
LAYOUT: tuple[tuple[int, tuple[int, ...]], ...] = (
    (INNER_POOL, tuple(k * INNER_POOL for k in range(-INNER_STEPS, INNER_STEPS + 1))),
    (
        OUTER_POOL,
        tuple(sorted(sign * (_OUTER_START + j * OUTER_POOL) for sign in (-1, 1) for j in range(OUTER_STEPS))),
    ),
)
WEIGHTS = "beats"  # workers/dsp/data/beats.npz (bench/train_beats.py)
BLOCK_FRAMES = 8192  # frames whose inputs are built at once: 8192 × 243 float32 = 8 MB


def _reach() -> int:
    return max(abs(o) for _, offsets in LAYOUT for o in offsets)


def _pooled(bands: np.ndarray) -> dict[int, np.ndarray]:
    """Each band over its RMS, log-compressed, max-pooled over each width of
    LAYOUT, zero-padded by the context's reach on both sides: width → (3,
    frames + 2 · reach) float32."""
    n = bands.shape[1]
    rms = np.sqrt(np.mean(np.square(bands, dtype=np.float64), axis=1, keepdims=True))
    x = np.log1p(bands / np.maximum(rms, 1e-12)).astype(np.float32)
    reach = _reach()
    out = {}
    for width, _ in LAYOUT:
        padded = np.zeros((bands.shape[0], n + 2 * reach), np.float32)
        padded[:, reach : reach + n] = maximum_filter1d(x, width, axis=1)
        out[width] = padded
    return out


def _context(pooled: dict[int, np.ndarray], start: int, stop: int) -> np.ndarray:
    """Network inputs of frames [start, stop) from :func:`_pooled`."""
    reach = _reach()
    cols = [
        pooled[width][:, reach + start + o : reach + stop + o] for width, offsets in LAYOUT for o in offsets
    ]
    return np.concatenate(cols, axis=0).T


def activation_inputs(bands: np.ndarray) -> np.ndarray:
    """Inputs (frames, 3 · offsets of LAYOUT) of the network for onset
    envelopes ``bands`` (3, frames): each band over its RMS over the track,
    log-compressed, max-pooled, read at the offsets of LAYOUT around each
    frame (zeros beyond the ends). For training; :func:`activation` builds
    them a block at a time."""
    return _context(_pooled(bands), 0, bands.shape[1])


def activation(bands: np.ndarray) -> np.ndarray:
    """Probability (float64) per onset frame that a beat falls on it, for
    the envelopes of :func:`workers.dsp.tempo.onset_bands`. Inputs are built
    BLOCK_FRAMES frames at a time (~8 MB), so memory does not grow with the
    track beyond the envelopes themselves."""
    n = bands.shape[1]
    out = np.zeros(n)
    if n == 0:
        return out
    padded = _pooled(bands)
    for start in range(0, n, BLOCK_FRAMES):
        stop = min(n, start + BLOCK_FRAMES)
        logit = mlp.forward(_context(padded, start, stop), WEIGHTS)[:, 0]
        out[start:stop] = 1.0 / (1.0 + np.exp(-logit.astype(np.float64)))
    return out
