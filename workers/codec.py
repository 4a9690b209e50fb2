"""Decoding uploads to samples and encoding job outputs: worker-side only.

The web process probes uploads (``shared.audio``) but never decodes them, so
numpy-heavy decoding and encoding live here, next to the jobs that use them.

Two ways in and out. ``decode``/``encode`` hold the whole signal in memory
(float32: 10 MB per stereo minute at 44.1 kHz). ``open_source`` and
``Encoder`` work in blocks, for the jobs whose memory must not grow with
the track (separation, mastering): the source is read from disk block by
block, as many passes as the job needs, and outputs are written as they
are computed.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

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


# --------------------------------------------------------------------------- decoding in blocks

_LIBSNDFILE = ("wav", "flac", "ogg", "mp3", "aiff", "w64", "au", "caf")
BLOCK_FRAMES = 1 << 16
_PIPE_BYTES = 1 << 20


class FileSource:
    """A decoded audio file read from disk in blocks: the
    ``workers.dsp.blocks.BlockSource`` of a job's input. Either a file
    libsndfile reads (``raw`` False) or headerless float32 samples
    (``raw`` True), interleaved, ``channels`` per frame."""

    def __init__(self, path: Path, sample_rate: int, frames: int, channels: int, raw: bool) -> None:
        self.path = Path(path)
        self.sample_rate = int(sample_rate)
        self.frames = int(frames)
        self.channels = int(channels)
        self.raw = raw

    def blocks(self, size: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
        """float32 (m, channels) blocks of at most ``size`` frames, from the start."""
        if self.raw:
            with open(self.path, "rb") as f:
                while True:
                    x = np.fromfile(f, dtype=np.float32, count=size * self.channels)
                    if not len(x):
                        return
                    yield x.reshape(-1, self.channels)
        else:
            try:
                with soundfile.SoundFile(os.fspath(self.path)) as f:
                    while True:
                        x = f.read(size, dtype="float32", always_2d=True)
                        if not len(x):
                            return
                        yield x
            except (soundfile.LibsndfileError, RuntimeError) as exc:
                raise ApiError(422, f"The audio could not be decoded ({exc})") from None


def open_source(path: str | os.PathLike, info: AudioInfo, workdir: str | os.PathLike) -> FileSource:
    """The probed file at ``path`` as a block source, with the samples
    :func:`decode` gives: decoded once, in blocks, to a raw float32 file in
    ``workdir`` (libsndfile where it reads the format, ffmpeg otherwise), so
    that no pass holds the track in memory, and every pass reads raw float32
    (several times faster than libsndfile converts even 16-bit WAV; 10 MB of
    disk per minute of 44.1 kHz stereo). Raises ApiError(422) if decoding
    fails."""
    p = Path(path)
    raw = Path(workdir) / "decoded.f32"
    if info.format in _LIBSNDFILE:
        try:
            with soundfile.SoundFile(os.fspath(p)) as f, open(raw, "wb") as out:
                frames = 0
                while True:
                    x = f.read(BLOCK_FRAMES, dtype="float32", always_2d=True)
                    if not len(x):
                        break
                    x.tofile(out)
                    frames += len(x)
                if frames:
                    return FileSource(raw, f.samplerate, frames, f.channels, raw=True)
        except (soundfile.LibsndfileError, RuntimeError, ValueError) as exc:
            log.info("libsndfile could not decode %s (%s); trying ffmpeg", p, exc)
    _ffmpeg_to_raw(p, info, raw)
    frames = raw.stat().st_size // (4 * info.channels)
    os.truncate(raw, frames * 4 * info.channels)  # whole frames only, as decode() reshapes them
    return FileSource(raw, info.sample_rate, frames, info.channels, raw=True)


def _ffmpeg_to_raw(path: Path, info: AudioInfo, out_path: Path, timeout_s: float = 600) -> None:
    """ffmpeg's float32 samples of ``path`` streamed into ``out_path``."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise ApiError(422, "This audio format cannot be decoded on this server (ffmpeg is missing)")
    cmd = [
        ffmpeg, "-nostdin", "-v", "error", "-format_whitelist", FFMPEG_DEMUXERS,
        "-i", os.fspath(path), "-map", "0:a:0", "-f", "f32le", "-acodec", "pcm_f32le",
        "-ac", str(info.channels), "-ar", str(info.sample_rate), "pipe:1",
    ]  # fmt: skip
    deadline = time.monotonic() + timeout_s
    with (
        open(out_path, "wb") as out,
        subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        ) as proc,
    ):
        assert proc.stdout is not None and proc.stderr is not None
        # ffmpeg's stderr is -v error: short. Read it after stdout closes.
        written = 0
        while chunk := proc.stdout.read(_PIPE_BYTES):
            out.write(chunk)
            written += len(chunk)
            if time.monotonic() > deadline:
                proc.kill()
                raise ApiError(422, "Decoding the audio took too long")
        stderr = proc.stderr.read()
        code = proc.wait()
    frame_bytes = 4 * info.channels
    if code != 0 or written < frame_bytes:
        raise ApiError(422, f"The audio could not be decoded ({stderr.decode(errors='replace')[-200:]})")


def read_blocks(path: str | os.PathLike, size: int = BLOCK_FRAMES) -> tuple[int, int, Iterator[np.ndarray]]:
    """(sample rate, channels, float32 blocks) of a file libsndfile reads
    (a job's own output, read back to be measured), in one pass."""
    info = soundfile.info(os.fspath(path))
    source = FileSource(Path(path), info.samplerate, info.frames, info.channels, raw=False)
    return info.samplerate, info.channels, source.blocks(size)


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
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[:, None]
    with Encoder(path, sr, x.shape[1], fmt) as enc:
        enc.write(x)
    return enc.mime


class Encoder:
    """Writes consecutive float (frames, channels) blocks to ``path`` as
    ``fmt`` (a key of :data:`ENCODINGS`) as they come: libsndfile encodes
    WAV, FLAC and MP3 incrementally, so no output is held whole. Samples
    are clipped to [-1, 1] (PCM cannot hold more); MP3 at a rate Layer III
    does not have is resampled to 44.1 kHz (soxr HQ, streamed). A context
    manager; ``mime`` is the file's MIME type."""

    def __init__(self, path: str | os.PathLike, sr: int, channels: int, fmt: str) -> None:
        container, subtype, self.mime = ENCODINGS[fmt]
        self.channels = channels
        self._resampler = None
        if fmt == "mp3" and sr not in _MP3_RATES:
            self._resampler = soxr.ResampleStream(sr, 44100, channels, dtype="float32", quality="HQ")
            sr = 44100
        self._file = soundfile.SoundFile(
            os.fspath(path), "w", samplerate=sr, channels=channels, format=container, subtype=subtype
        )

    def write(self, block: np.ndarray) -> None:
        y = np.clip(np.asarray(block, dtype=np.float32), -1.0, 1.0)
        if self._resampler is not None:
            y = self._resampler.resample_chunk(y, last=False)
        if len(y):
            self._file.write(y)

    def close(self) -> None:
        if self._file.closed:
            return
        if self._resampler is not None:
            tail = self._resampler.resample_chunk(np.zeros((0, self.channels), np.float32), last=True)
            if len(tail):
                self._file.write(tail)
        self._file.close()

    def __enter__(self) -> Encoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
