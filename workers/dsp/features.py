"""Shared front end of the analysis modules: the analysis sample rate and a
short-time Fourier transform computed in bounded-memory blocks.

Why 22 050 Hz: tempo needs the hi-hat band (5–10 kHz) for onsets, and key
needs nothing above ~5 kHz; 22 050 Hz keeps everything both need (Nyquist
11 025 Hz), is an integer divisor of 44 100 Hz (the commonest upload rate, so
resampling is a cheap 2:1), halves the work of 44.1/48 kHz, and is the rate
librosa's defaults are tuned for, so comparisons with it are like for like.

Why there is no shared STFT between tempo and key: the two want opposite
resolutions. Onset detection needs ~10 ms hops and ~50 ms windows; key needs
~1.3 Hz frequency bins to separate semitones in the bass (65 Hz to 69 Hz is
one semitone), i.e. ~0.75 s windows, and only the band below 2 kHz (so it
works on a 4× decimated copy). One transform serving both would either smear
onsets or cost a 16× longer FFT at every 11.6 ms hop. On a 3-minute track
estimate_tempo takes ~0.1 s and estimate_key ~0.04 s in all (measured by
bench/analysis.py): sharing could save at most part of the
latter, so the key-bpm job simply runs both on the one decoded, resampled
signal — that is the part worth sharing.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import numpy as np
from scipy import fft as sfft

ANALYSIS_SR = 22050

# Frames per STFT block. 2048 frames × 513 bins × complex64 ≈ 8 MB for a
# 1024-point FFT: working memory stays a few tens of MB whatever the length.
BLOCK_FRAMES = 2048


@lru_cache(maxsize=8)
def _window(n_fft: int) -> np.ndarray:
    # Periodic Hann (the STFT convention), scaled so a full-scale sine peaks
    # at magnitude ~0.5 whatever n_fft is: thresholds stay length-independent.
    w = np.hanning(n_fft + 1)[:-1]
    return (w / w.sum()).astype(np.float32)


def stft_magnitude_blocks(
    y: np.ndarray, n_fft: int, hop: int, block_frames: int = BLOCK_FRAMES
) -> Iterator[np.ndarray]:
    """Yield the magnitude STFT of ``y`` as consecutive blocks of frames.

    Frames are centred (frame ``t`` covers ``t*hop ± n_fft/2`` samples, with
    zero padding at the ends), as in librosa's ``center=True``. Each block is
    a float32 array of shape (≤ block_frames, n_fft // 2 + 1); magnitudes are
    normalised by the window sum (a full-scale sine gives ~0.5). Only one
    block's samples are ever copied, never the whole signal.
    """
    y = np.asarray(y, dtype=np.float32)
    pad = n_fft // 2
    total = n_frames(len(y), n_fft, hop)
    w = _window(n_fft)
    for f0 in range(0, total, block_frames):
        f1 = min(total, f0 + block_frames)
        # Samples [a, b) of the zero-padded signal, i.e. [a - pad, b - pad) of y.
        a, b = f0 * hop, (f1 - 1) * hop + n_fft
        chunk = np.zeros(b - a, np.float32)
        lo, hi = max(a - pad, 0), min(b - pad, len(y))
        if hi > lo:
            chunk[lo - (a - pad) : hi - (a - pad)] = y[lo:hi]
        frames = np.lib.stride_tricks.sliding_window_view(chunk, n_fft)[::hop]
        yield np.abs(sfft.rfft(frames * w, axis=-1)).astype(np.float32, copy=False)


def n_frames(n_samples: int, n_fft: int, hop: int) -> int:
    """Number of frames :func:`stft_magnitude_blocks` yields for ``n_samples``."""
    return 1 + max(0, (n_samples + 2 * (n_fft // 2) - n_fft) // hop)
