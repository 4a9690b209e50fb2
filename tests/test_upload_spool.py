"""The upload's local copy (``shared.assets._Spool``) and ``audio.sample_span``.

Of an uncompressed WAV or AIFF the copy leaves the sample bytes out; the
prober must answer for it exactly as for the whole file (the same facts, the
same refusal), every byte around the samples must be there, and every other
kind of file must be copied whole. No services are needed.
"""

from __future__ import annotations

import io
import os
import random
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile

from shared import audio
from shared.assets import _Spool
from shared.errors import ApiError

SR = 44100
SECONDS = 25.0  # 4.4 MB of 16-bit stereo: several of the copy's chunks


def _tone(seconds: float = SECONDS) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    x = 0.3 * np.sin(2 * np.pi * 440.0 * t)
    return np.stack([x, 0.5 * x], axis=1).astype(np.float32)


def _encoded(fmt: str, subtype: str) -> bytes:
    buf = io.BytesIO()
    soundfile.write(buf, _tone(), SR, format=fmt, subtype=subtype)
    return buf.getvalue()


def _chunk(cid: bytes, body: bytes) -> bytes:
    return cid + struct.pack("<I", len(body)) + body + (b"\0" if len(body) & 1 else b"")


def _wav_with_chunks(before: int, after: int, data_size: int | None = None) -> bytes:
    """PCM WAV with an opaque chunk of ``before`` bytes ahead of the samples and
    a LIST chunk of ``after`` bytes behind them; ``data_size`` overrides the
    declared size of the samples (0xFFFFFFFF: a streaming encoder's)."""
    pcm = (_tone() * 32767).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 2, SR, SR * 4, 4, 16)
    data = b"data" + struct.pack("<I", len(pcm) if data_size is None else data_size) + pcm
    body = (
        b"WAVE"
        + _chunk(b"fmt ", fmt)
        + (_chunk(b"JUNK", os.urandom(before)) if before else b"")
        + data
        + (_chunk(b"LIST", b"INFO" + _chunk(b"ICMT", os.urandom(after - 12))) if after else b"")
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


FILES = {
    "pcm16_wav": lambda: _encoded("WAV", "PCM_16"),
    "float_wav": lambda: _encoded("WAV", "FLOAT"),
    "rf64": lambda: _encoded("RF64", "PCM_24"),
    "wavex": lambda: _encoded("WAVEX", "PCM_16"),
    "ulaw_wav": lambda: _encoded("WAV", "ULAW"),
    "aiff": lambda: _encoded("AIFF", "PCM_24"),
    "wav_chunks_around": lambda: _wav_with_chunks(before=300_000, after=700_000),
    "wav_streamed": lambda: _wav_with_chunks(before=0, after=0, data_size=0xFFFFFFFF),
    "wav_truncated": lambda: _encoded("WAV", "PCM_16")[:3_000_000],
    # Written whole: samples that are not plain numbers, other containers, a
    # header that does not reach the samples within the first HEAD_BYTES.
    "ima_adpcm_wav": lambda: _encoded("WAV", "IMA_ADPCM"),
    "ms_adpcm_wav": lambda: _encoded("WAV", "MS_ADPCM"),
    "flac": lambda: _encoded("FLAC", "PCM_16"),
    "w64": lambda: _encoded("W64", "PCM_16"),
    "wav_header_past_head": lambda: _wav_with_chunks(before=_Spool.HEAD_BYTES + 1000, after=0),
}
LEFT_OUT = {
    "pcm16_wav",
    "float_wav",
    "rf64",
    "wavex",
    "ulaw_wav",
    "aiff",
    "wav_chunks_around",
    "wav_streamed",
    "wav_truncated",
}


def _spool(data: bytes, path: Path, seed: int) -> None:
    """Feed ``data`` to a _Spool as an upload arrives: a small first chunk,
    then chunks of random sizes."""
    rng = random.Random(seed)
    with open(path, "wb") as f:
        spool = _Spool(f)
        pos, first = 0, True
        while pos < len(data):
            n = 65536 if first else rng.randint(1, 400_000)
            spool.write(memoryview(data)[pos : pos + n])
            pos, first = pos + n, False
        spool.close()


def _answer(path: Path) -> audio.AudioInfo | str:
    try:
        return audio.probe(path)
    except ApiError as e:
        return f"{e.status} {e.message}"


@pytest.mark.parametrize("kind", sorted(FILES))
def test_probe_answers_the_same_for_the_copy(tmp_path: Path, kind: str) -> None:
    data = FILES[kind]()
    whole, copy = tmp_path / "whole", tmp_path / "copy"
    whole.write_bytes(data)
    _spool(data, copy, seed=len(kind))
    assert copy.stat().st_size == len(data)
    assert _answer(copy) == _answer(whole)
    if kind == "wav_truncated":
        assert "truncated" in str(_answer(copy))

    copied = copy.read_bytes()
    span = audio.sample_span(data[: _Spool.HEAD_BYTES])
    if kind not in LEFT_OUT:
        assert span is None or span[0] > _Spool.HEAD_BYTES or kind == "wav_header_past_head"
        assert copied == data
        return
    assert span is not None
    start, end = span[0], len(data) if span[1] is None else min(span[1], len(data))
    assert end - start > len(data) // 2
    assert copied[:start] == data[:start]  # every header byte
    assert copied[end:] == data[end:]  # and every byte after the samples
    assert copy.stat().st_blocks * 512 < len(data) // 4  # the samples' place is a hole


def test_sample_span_finds_the_samples() -> None:
    data = _wav_with_chunks(before=1000, after=5000)
    start, end = audio.sample_span(data[:4096]) or (0, 0)
    pcm = (_tone() * 32767).astype("<i2").tobytes()
    assert data[start:end] == pcm
    assert audio.sample_span(data[: start - 1]) is None  # the header is cut before the samples
    aiff = _encoded("AIFF", "PCM_16")
    start, end = audio.sample_span(aiff[:4096]) or (0, 0)
    assert end == len(aiff) and end - start == int(SR * SECONDS) * 4
    assert audio.sample_span(_encoded("WAV", "IMA_ADPCM")[:4096]) is None
    wavex = bytearray(_encoded("WAVEX", "PCM_16")[:4096])
    assert audio.sample_span(bytes(wavex)) is not None
    wavex[44:46] = struct.pack("<H", 2)  # the sub-format GUID's tag: MS ADPCM
    assert audio.sample_span(bytes(wavex)) is None
    assert audio.sample_span(b"ID3\x03" + bytes(100)) is None
