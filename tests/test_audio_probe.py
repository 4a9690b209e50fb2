"""Tests for shared.audio.probe: format detection and refusal of non-audio/truncated uploads.

All test audio is generated here (soundfile for WAV/FLAC/OGG/AIFF, ffmpeg for
MP3/M4A/AAC/Opus/WebM); no services are needed.
"""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile

from shared import audio
from shared.audio import EXTENSION_MIME, AudioInfo, probe
from shared.errors import ApiError

HAVE_FFMPEG = shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None
needs_ffmpeg = pytest.mark.skipif(not HAVE_FFMPEG, reason="ffmpeg/ffprobe not installed")

SR = 44100
SECONDS = 2.0


def _tone() -> np.ndarray:
    """2 s, 440 Hz, stereo float32 tone at 44.1 kHz."""
    t = np.arange(int(SR * SECONDS)) / SR
    x = 0.3 * np.sin(2 * np.pi * 440.0 * t)
    return np.stack([x, x], axis=1).astype(np.float32)


def _ffmpeg(*args: str) -> None:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y", *args],
        check=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Complete test files by name."""
    d = tmp_path_factory.mktemp("media")
    tone = _tone()
    files = {
        "wav": d / "tone.wav",
        "flac": d / "tone.flac",
        "ogg": d / "tone.ogg",
        "aiff": d / "tone.aiff",
    }
    soundfile.write(files["wav"], tone, SR, subtype="PCM_16")
    soundfile.write(files["flac"], tone, SR)
    soundfile.write(files["ogg"], tone, SR, format="OGG", subtype="VORBIS")
    soundfile.write(files["aiff"], tone, SR, subtype="PCM_16")
    if HAVE_FFMPEG:
        src = str(files["wav"])
        encodes = {
            "mp3": ("tone.mp3", ["-c:a", "libmp3lame", "-b:a", "128k"]),
            "m4a": ("tone.m4a", ["-c:a", "aac", "-b:a", "128k"]),
            "m4a_faststart": ("tone_fs.m4a", ["-c:a", "aac", "-movflags", "+faststart"]),
            "aac": ("tone.aac", ["-c:a", "aac", "-f", "adts"]),
            "opus": ("tone.opus", ["-c:a", "libopus"]),
            "webm": ("tone.webm", ["-c:a", "libopus"]),
        }
        for key, (name, args) in encodes.items():
            files[key] = d / name
            _ffmpeg("-i", src, *args, str(files[key]))
    return files


def _cut(src: Path, dst: Path, keep: int | None = None) -> Path:
    """Copy the first ``keep`` bytes of ``src`` (default: half) to ``dst``."""
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2 if keep is None else keep])
    return dst


def _assert_refused(path: Path, *words: str) -> ApiError:
    with pytest.raises(ApiError) as excinfo:
        probe(path)
    err = excinfo.value
    assert err.status == 415
    assert err.message.startswith("The uploaded file ")
    for word in words:
        assert word in err.message
    return err


# ------------------------------------------------------------------ recognised formats

SNDFILE_CASES = [
    ("wav", "wav", "audio/wav"),
    ("flac", "flac", "audio/flac"),
    ("ogg", "ogg", "audio/ogg"),
    ("aiff", "aiff", "audio/aiff"),
]
FFMPEG_CASES = [
    ("mp3", "mp3", "audio/mpeg", SR),
    ("m4a", "m4a", "audio/mp4", SR),
    ("m4a_faststart", "m4a", "audio/mp4", SR),
    ("aac", "aac", "audio/aac", SR),
    ("opus", "opus", "audio/ogg", 48000),
    ("webm", "webm", "audio/webm", 48000),
]


@pytest.mark.parametrize(("key", "fmt", "mime"), SNDFILE_CASES)
def test_probe_soundfile_formats(media: dict[str, Path], key: str, fmt: str, mime: str) -> None:
    info = probe(media[key])
    assert isinstance(info, AudioInfo)
    assert (info.format, info.mime_type, info.sample_rate, info.channels) == (fmt, mime, SR, 2)
    assert info.duration_s == pytest.approx(SECONDS, abs=0.1)
    assert EXTENSION_MIME[info.format] == info.mime_type


@needs_ffmpeg
@pytest.mark.parametrize(("key", "fmt", "mime", "rate"), FFMPEG_CASES)
def test_probe_encoded_formats(media: dict[str, Path], key: str, fmt: str, mime: str, rate: int) -> None:
    info = probe(str(media[key]))
    assert (info.format, info.mime_type, info.sample_rate, info.channels) == (fmt, mime, rate, 2)
    # Lossy encoders add priming/padding samples; 0.1 s covers them.
    assert info.duration_s == pytest.approx(SECONDS, abs=0.1)
    assert EXTENSION_MIME[info.format] == info.mime_type


@needs_ffmpeg
def test_probe_flac_without_declared_length(tmp_path: Path, media: dict[str, Path]) -> None:
    # FLAC written to a pipe has no sample count in STREAMINFO.
    flac = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(media["wav"]), "-f", "flac", "-"],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    path = tmp_path / "piped.flac"
    path.write_bytes(flac)
    info = probe(path)
    assert (info.format, info.sample_rate, info.channels) == ("flac", SR, 2)
    assert info.duration_s == pytest.approx(SECONDS, abs=0.1)

    _assert_refused(_cut(path, tmp_path / "piped_cut.flac"), "truncated")


def test_probe_mono_and_other_rate(tmp_path: Path) -> None:
    path = tmp_path / "mono.wav"
    soundfile.write(path, np.zeros(8000 * 3, dtype=np.float32), 8000)
    info = probe(path)
    assert (info.format, info.sample_rate, info.channels) == ("wav", 8000, 1)
    assert info.duration_s == pytest.approx(3.0)


# ------------------------------------------------------------------ not audio at all


def test_refuses_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    _assert_refused(path, "empty")


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"Hello, this is a plain text file.\n" * 20, id="text"),
        pytest.param(b'{"audio": "not really", "n": [1, 2, 3]}\n', id="json"),
        pytest.param(
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x02"
            b"\x00\x00\x00\x90\x91h6" + b"\x00" * 200,
            id="png",
        ),
        pytest.param(random.Random(42).randbytes(50_000), id="random"),
        pytest.param(b"RIFF\x24\x00\x00\x00WAVEfmt ", id="riff-stub"),
    ],
)
def test_refuses_non_audio(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "upload.bin"
    path.write_bytes(payload)
    _assert_refused(path, "not decodable audio")


@needs_ffmpeg
def test_refuses_video_without_audio(tmp_path: Path) -> None:
    path = tmp_path / "silent_video.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=duration=1:size=64x64:rate=10", "-c:v", "mpeg4", str(path))
    _assert_refused(path, "no audio stream")


@needs_ffmpeg
def test_refuses_playlist_pointing_at_other_files(tmp_path: Path, media: dict[str, Path]) -> None:
    # An HLS playlist would make ffmpeg open other files or URLs; it must not be followed.
    path = tmp_path / "upload.bin"
    path.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nfile://{media['aac']}\n#EXT-X-ENDLIST\n")
    _assert_refused(path, "not decodable audio")


# ------------------------------------------------------------------ header but no audio


def test_refuses_header_only_wav(tmp_path: Path) -> None:
    path = tmp_path / "header_only.wav"
    soundfile.write(path, np.zeros((0, 2), dtype=np.float32), SR)
    assert path.stat().st_size == 44
    _assert_refused(path, "no audio frames")


def test_refuses_header_only_ogg(tmp_path: Path) -> None:
    path = tmp_path / "header_only.ogg"
    soundfile.write(path, np.zeros((0, 2), dtype=np.float32), SR, format="OGG")
    _assert_refused(path, "no audio frames")


def test_refuses_wav_header_without_its_data(tmp_path: Path, media: dict[str, Path]) -> None:
    # The first 44 bytes of a full WAV: a header declaring 2 s of audio, and nothing else.
    _assert_refused(_cut(media["wav"], tmp_path / "hdr.wav", keep=44), "truncated")


# ------------------------------------------------------------------ truncated audio


@pytest.mark.parametrize("key", ["wav", "flac", "ogg", "aiff"])
def test_refuses_truncated_soundfile_formats(tmp_path: Path, media: dict[str, Path], key: str) -> None:
    src = media[key]
    _assert_refused(_cut(src, tmp_path / f"half{src.suffix}"), "truncated")
    # Losing only the last few bytes is caught too.
    size = src.stat().st_size
    _assert_refused(_cut(src, tmp_path / f"short{src.suffix}", keep=size - 3), "truncated")


def test_truncated_wav_message_gives_sizes(tmp_path: Path, media: dict[str, Path]) -> None:
    err = _assert_refused(_cut(media["wav"], tmp_path / "half.wav"), "truncated")
    assert "352800 bytes" in err.message  # 2 s * 44100 Hz * 2 channels * 2 bytes


@needs_ffmpeg
@pytest.mark.parametrize("key", ["m4a", "m4a_faststart", "opus", "webm", "mp3"])
def test_refuses_truncated_encoded_formats(tmp_path: Path, media: dict[str, Path], key: str) -> None:
    # mp3 here carries a Xing/Info header (ffmpeg and LAME write one); an MP3 without
    # it is a bare frame sequence whose truncation cannot be detected, so it is not tested.
    src = media[key]
    _assert_refused(_cut(src, tmp_path / f"half{src.suffix}"), "truncated")


def _adts_frame_starts(data: bytes) -> list[int]:
    starts, pos = [], 0
    while pos + 7 <= len(data) and data[pos] == 0xFF and (data[pos + 1] & 0xF6) == 0xF0:
        starts.append(pos)
        (word,) = struct.unpack(">I", data[pos + 3 : pos + 7])
        pos += (word >> 13) & 0x1FFF  # 13-bit frame_length
    return starts


@needs_ffmpeg
def test_refuses_truncated_adts_aac(tmp_path: Path, media: dict[str, Path]) -> None:
    data = media["aac"].read_bytes()
    starts = _adts_frame_starts(data)
    assert len(starts) > 10
    middle = starts[len(starts) // 2]
    cut = middle + (starts[len(starts) // 2 + 1] - middle) // 2  # inside a frame
    path = tmp_path / "cut.aac"
    path.write_bytes(data[:cut])
    _assert_refused(path, "truncated")


# ------------------------------------------------------------------ robustness


def test_only_api_errors_escape_for_corrupted_headers(tmp_path: Path, media: dict[str, Path]) -> None:
    rng = random.Random(7)
    keys = ["wav", "flac", "ogg", "aiff"] + (["mp3", "m4a_faststart"] if HAVE_FFMPEG else [])
    originals = {k: media[k].read_bytes() for k in keys}
    path = tmp_path / "corrupt.bin"
    for i in range(24):
        data = bytearray(originals[keys[i % len(keys)]])
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(min(len(data), 128))] = rng.randrange(256)
        path.write_bytes(bytes(data))
        try:
            info = probe(path)
        except ApiError as err:
            assert err.status == 415
        else:
            assert info.duration_s > 0 and info.sample_rate > 0 and info.channels > 0


@needs_ffmpeg
def test_without_ffprobe_m4a_is_unsupported(monkeypatch: pytest.MonkeyPatch, media: dict[str, Path]) -> None:
    monkeypatch.setattr(audio.shutil, "which", lambda name: None)
    _assert_refused(media["m4a"], "not supported")
    # libsndfile formats still work without ffmpeg.
    assert probe(media["flac"]).format == "flac"


def test_missing_path_is_not_an_upload_error(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        probe(tmp_path / "does-not-exist.wav")
