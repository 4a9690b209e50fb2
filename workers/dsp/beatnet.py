"""The beat-activation network: how likely a beat falls on each onset frame.

Why: the onset envelopes alone do not say which onsets are beats. Comping on
the off-beats, a ride or hi-hat in eighths, a shuffle's swung eighths all
make onsets between the beats as strong as (or stronger than) those on them,
and a tracker that follows the strongest periodic onsets then sits half a
beat (or a swung eighth) off, or at twice or half the tempo. What tells the
beat is the pattern around the onset — the kick and bass on it, a snare on
every other one, the comping's hit half a beat later — which a small
network over a second and a half of context can learn (the approach of
Böck & Schedl, "Enhanced beat tracking with context-aware neural networks",
DAFx 2011, and madmom's RNN beat processors, with a much smaller model).

Inputs: the three onset bands of :func:`workers.dsp.tempo.onset_bands` (low
< 200 Hz, mid, high > 4 kHz), each over its RMS over the track and
log-compressed, max-pooled over ACT_POOL frames (35 ms), read at ACT_CONTEXT
pooled steps on each side of the frame (±1.4 s): 3 × 81 = 243 inputs.
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

ACT_POOL = 3  # onset frames max-pooled per context step (35 ms)
ACT_CONTEXT = 40  # pooled steps each side (±1.4 s)
WEIGHTS = "beats"  # workers/dsp/data/beats.npz (bench/train_beats.py)
BLOCK_FRAMES = 8192  # frames whose inputs are built at once: 8192 × 243 float32 = 8 MB


def _pooled(bands: np.ndarray) -> np.ndarray:
    """Each band over its RMS, log-compressed, max-pooled over ACT_POOL
    frames, zero-padded by the context's reach on both sides: (3, frames +
    2 · reach) float32."""
    n = bands.shape[1]
    rms = np.sqrt(np.mean(np.square(bands, dtype=np.float64), axis=1, keepdims=True))
    x = np.log1p(bands / np.maximum(rms, 1e-12)).astype(np.float32)
    reach = ACT_CONTEXT * ACT_POOL
    padded = np.zeros((bands.shape[0], n + 2 * reach), np.float32)
    padded[:, reach : reach + n] = maximum_filter1d(x, ACT_POOL, axis=1)
    return padded


def _context(padded: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Network inputs of frames [start, stop) from :func:`_pooled`."""
    reach = ACT_CONTEXT * ACT_POOL
    cols = [
        padded[:, reach + start + k * ACT_POOL : reach + stop + k * ACT_POOL]
        for k in range(-ACT_CONTEXT, ACT_CONTEXT + 1)
    ]
    return np.concatenate(cols, axis=0).T


def activation_inputs(bands: np.ndarray) -> np.ndarray:
    """Inputs (frames, 3 · (2 · ACT_CONTEXT + 1)) of the network for onset
    envelopes ``bands`` (3, frames): each band over its RMS over the track,
    log-compressed, max-pooled over ACT_POOL frames, read at ACT_CONTEXT
    pooled steps either side of each frame (zeros beyond the ends). For
    training; :func:`activation` builds them a block at a time."""
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
