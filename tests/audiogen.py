"""Test audio, generated: tones encoded to the formats clients upload."""

from __future__ import annotations

import io
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 44100


def tone(
    seconds: float = 1.0, freq: float = 440.0, sr: int = SR, channels: int = 2, seed: int = 0
) -> np.ndarray:
    """A sine with a little seeded noise, so different seeds give different bytes."""
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t)
    x = x + 0.001 * np.random.default_rng(seed).standard_normal(len(t))
    return np.repeat(x[:, None], channels, axis=1).astype(np.float32)


def encode(x: np.ndarray, fmt: str, sr: int = SR) -> bytes:
    """Bytes of ``x`` as wav, flac, ogg (libsndfile) or mp3, m4a (ffmpeg)."""
    if fmt in ("wav", "flac", "ogg"):
        buf = io.BytesIO()
        sf.write(
            buf, x, sr, format=fmt.upper(), subtype={"wav": "PCM_16", "flac": "PCM_16", "ogg": "VORBIS"}[fmt]
        )
        return buf.getvalue()
    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "in.wav", Path(d) / f"out.{fmt}"
        sf.write(src, x, sr, subtype="PCM_16")
        codec = {"mp3": ["-c:a", "libmp3lame", "-b:a", "128k"], "m4a": ["-c:a", "aac", "-b:a", "128k"]}[fmt]
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), *codec, str(dst)], check=True)
        return dst.read_bytes()


def wav(seconds: float = 1.0, seed: int = 0, **kw) -> bytes:
    return encode(tone(seconds, seed=seed, **kw), "wav")


def struck_tone(midi: int, seconds: float, sr: int = 22050) -> np.ndarray:
    """A struck harmonic tone: 8 partials at 1/k², the k-th decaying with a
    time constant of 1.5/k s, 5 ms attack, 20 ms release. (With partials at
    1/k, as tests/synth.py's, the model also reports the 2nd and 4th harmonic
    of a pure additive tone as notes of their own, about half as loud.)"""
    f = 440.0 * 2.0 ** ((midi - 69) / 12)
    t = np.arange(int(seconds * sr)) / sr
    x = np.zeros_like(t)
    for k in range(1, 9):
        if k * f < 0.45 * sr:
            x += np.sin(2 * np.pi * k * f * t) * np.exp(-t * k / 1.5) / k**2
    return x * np.minimum(1.0, t / 0.005) * np.minimum(1.0, (t[-1] - t) / 0.02)
