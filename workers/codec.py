"""Decoding uploads to samples and encoding job outputs: worker-side only.

The web process probes uploads (``shared.audio``) but never decodes them, so
numpy-heavy decoding and encoding live here, next to the jobs that use them.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess

import numpy as np
import soundfile
import soxr

from shared.audio import FFMPEG_DEMUXERS, AudioInfo
from shared.errors import ApiError

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- decoding


def decode(path: str | os.PathLike, info: AudioInfo) -> tuple[np.ndarray, int]:
    """Decode a probed file to float32 samples, shape (frames, channels), at
    its native sample rate. libsndfile where it can read the format (no
    subprocess), ffmpeg otherwise. Raises ApiError(422) if decoding fails."""
    p = os.fspath(path)
    if info.format in ("wav", "flac", "ogg", "mp3", "aiff", "w64", "au", "caf"):
        try:
            x, sr = soundfile.read(p, dtype="float32", always_2d=True)
            return x, int(sr)
        except (soundfile.LibsndfileError, RuntimeError, ValueError) as exc:
            log.info("libsndfile could not decode %s (%s); trying ffmpeg", p, exc)
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise ApiError(422, "This audio format cannot be decoded on this server (ffmpeg is missing)")
    cmd = [
        ffmpeg, "-nostdin", "-v", "error", "-format_whitelist", FFMPEG_DEMUXERS,
        "-i", p, "-map", "0:a:0", "-f", "f32le", "-acodec", "pcm_f32le",
        "-ac", str(info.channels), "-ar", str(info.sample_rate), "pipe:1",
    ]  # fmt: skip
    try:
        out = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=600, check=False)
    except subprocess.TimeoutExpired:
        raise ApiError(422, "Decoding the audio took too long") from None
    if out.returncode != 0 or not out.stdout:
        raise ApiError(422, f"The audio could not be decoded ({out.stderr.decode(errors='replace')[-200:]})")
    x = np.frombuffer(out.stdout, dtype=np.float32).reshape(-1, info.channels)
    return x, info.sample_rate


# --------------------------------------------------------------------------- encoding

# Output formats of the jobs that write audio: (libsndfile format, subtype,
# MIME type). 16-bit PCM for WAV and FLAC (CD quality); MP3 at libsndfile's
# default VBR quality (about 128-160 kb/s for music).
ENCODINGS = {
    "wav": ("WAV", "PCM_16", "audio/wav"),
    "flac": ("FLAC", "PCM_16", "audio/flac"),
    "mp3": ("MP3", "MPEG_LAYER_III", "audio/mpeg"),
}
# MPEG-1/2 Layer III sample rates; other rates are resampled to 44.1 kHz for MP3.
_MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


def encode(x: np.ndarray, sr: int, fmt: str, path: str | os.PathLike) -> str:
    """Write float samples (frames, channels) as ``fmt`` (a key of
    :data:`ENCODINGS`); returns the MIME type. Samples are clipped to
    [-1, 1] (PCM cannot hold more)."""
    container, subtype, mime = ENCODINGS[fmt]
    y = np.clip(np.asarray(x, dtype=np.float32), -1.0, 1.0)
    if fmt == "mp3" and sr not in _MP3_RATES:
        y, sr = soxr.resample(y, sr, 44100, quality="HQ").astype(np.float32), 44100
    soundfile.write(os.fspath(path), y, sr, format=container, subtype=subtype)
    return mime
