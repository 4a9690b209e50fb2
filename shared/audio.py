"""Identify an uploaded audio file and refuse anything that is not decodable audio.

``probe(path)`` is called on every upload (files up to 500 MB), so it never reads
a whole file: it sniffs the first bytes, checks the container structure for
truncation by reading a few headers (and at most the last ~70 kB for Ogg), asks
libsndfile (through ``soundfile``) for the stream parameters, and falls back to
``ffprobe`` for containers libsndfile cannot read (M4A/MP4, raw ADTS AAC, WebM,
...). Every refusal is an ``ApiError(415, ...)`` with a sentence a person can act
on.

How truncation is detected, per format:

* WAV / RF64 / AIFF: the size of the ``data`` / ``SSND`` chunk is compared with
  the bytes the file actually holds (libsndfile silently shortens such files).
* FLAC, Ogg Vorbis, other libsndfile formats: the last block of frames declared
  by the header is decoded; a short read or an error means the file was cut.
* Ogg (Vorbis, Opus, ...): the last Ogg page must be complete and carry the
  end-of-stream flag.
* MP4 / M4A / MOV: every top-level box must fit inside the file.
* Matroska / WebM: the Segment element (when its size is known) must fit.
* MP3: the total byte count in the Xing/Info/VBRI header (written by LAME,
  ffmpeg and most encoders) must fit in the file. An MP3 *without* such a header
  is a plain sequence of self-synchronising frames; a cut one is still playable
  audio, and there is no cheap way to tell it was cut, so it is accepted.
* Everything handled by ffprobe (M4A, AAC, WebM, ...) additionally has its last
  second decoded with ``ffmpeg -sseof -1``; any decoder error refuses the file.
  A raw ADTS AAC file cut exactly on a frame boundary cannot be told apart from
  a complete one (same reasoning as MP3).

ffprobe/ffmpeg only ever see the file through the ``file:`` protocol and with a
whitelist of audio demuxers, so an uploaded HLS playlist or concat script cannot
make them open other files or URLs.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import struct
import subprocess
from dataclasses import dataclass
from typing import BinaryIO

import soundfile

from shared.errors import ApiError

__all__ = ["EXTENSION_MIME", "FFMPEG_DEMUXERS", "AudioInfo", "probe", "sample_span"]

log = logging.getLogger(__name__)

#: Short format name (as in ``AudioInfo.format``) -> MIME type.
EXTENSION_MIME: dict[str, str] = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "opus": "audio/ogg",
    "mp3": "audio/mpeg",
    "m4a": "audio/mp4",
    "mp4": "video/mp4",
    "aac": "audio/aac",
    "aiff": "audio/aiff",
    "webm": "audio/webm",
    "mka": "audio/x-matroska",
    "mkv": "video/x-matroska",
    "caf": "audio/x-caf",
    "au": "audio/basic",
    "w64": "audio/x-w64",
    "amr": "audio/amr",
    "wma": "audio/x-ms-wma",
    "ac3": "audio/ac3",
    "eac3": "audio/eac3",
    "wv": "audio/x-wavpack",
    "ape": "audio/x-ape",
    "tta": "audio/x-tta",
    "mpc": "audio/x-musepack",
}

#: Seconds allowed for each ffprobe / ffmpeg call.
SUBPROCESS_TIMEOUT_S = 30.0

_SUPPORTED_HINT = "Supported formats include WAV, FLAC, OGG, Opus, MP3, M4A/AAC and AIFF."

# Demuxers ffprobe/ffmpeg may use. Anything else (images, playlists such as HLS,
# concat scripts, subtitles, "tty" text...) is refused before it is parsed.
FFMPEG_DEMUXERS = ",".join(
    [
        "wav",
        "w64",
        "aiff",
        "flac",
        "ogg",
        "mp3",
        "mov",
        "mp4",
        "m4a",
        "aac",
        "matroska",
        "webm",
        "caf",
        "amr",
        "amrnb",
        "amrwb",
        "asf",
        "au",
        "ac3",
        "eac3",
        "wv",
        "ape",
        "tta",
        "mpc",
        "mpc8",
    ]
)

# libsndfile reports SF_COUNT_MAX frames when a stream does not declare its length.
_UNKNOWN_FRAMES = 2**62
# Frames decoded at the declared end of a libsndfile stream to prove it is there.
_TAIL_FRAMES = 1024
# Largest possible Ogg page: 27-byte header + 255 lacing values + 255 * 255 bytes.
_OGG_MAX_PAGE = 27 + 255 + 255 * 255
# Bound on how many chunks / boxes a header walk visits.
_MAX_WALK = 100_000


@dataclass(frozen=True)
class AudioInfo:
    """What ``probe`` found out about a decodable audio file.

    Attributes:
        format: short container/codec name, a key of ``EXTENSION_MIME``
            ("wav", "flac", "ogg", "opus", "mp3", "m4a", "aac", "aiff", "webm", ...).
        mime_type: MIME type of that format, e.g. "audio/wav", "audio/mpeg".
        duration_s: duration of the (first) audio stream in seconds, > 0.
        sample_rate: sample rate in Hz.
        channels: number of audio channels.
    """

    format: str
    mime_type: str
    duration_s: float
    sample_rate: int
    channels: int


def probe(path: str | os.PathLike) -> AudioInfo:
    """Identify the audio file at ``path`` (format, duration in seconds, rate in Hz, channels).

    Reads only headers and the last few kilobytes of the file; may run ffprobe
    and ffmpeg (each bounded by ``SUBPROCESS_TIMEOUT_S`` seconds).

    Raises:
        ApiError(415, "<clear sentence>"): the file is not decodable audio: empty,
            not audio at all, a container without an audio stream, audio with no
            frames, truncated or damaged audio, or a format this server cannot read.
        OSError: ``path`` itself cannot be opened (a server-side problem, not the
            uploaded bytes).
    """
    path = os.path.abspath(os.fspath(path))
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise ApiError(415, "The uploaded file is empty (0 bytes); upload a non-empty audio file.")
        head = f.read(64)
        try:
            kind = _sniff(head)
            extra = _check_structure(f, kind, size, head)
        except ApiError:
            raise
        except Exception as exc:  # any parse failure is the upload's fault
            log.warning("audio structure check failed for %s", path, exc_info=True)
            raise _refuse("its header could not be parsed") from exc
    try:
        return _identify(path, kind, extra)
    except ApiError:
        raise
    except Exception as exc:  # never let a decoder error escape as a 500
        log.warning("unexpected error while probing %s", path, exc_info=True)
        raise _refuse("it could not be read as audio") from exc


# --------------------------------------------------------------------------- errors


def _refuse(reason: str, hint: str = "") -> ApiError:
    message = f"The uploaded file is not decodable audio ({reason})."
    if hint:
        message += " " + hint
    return ApiError(415, message)


def _truncated(detail: str) -> ApiError:
    return _refuse(
        f"it looks truncated: {detail}",
        "Upload the complete file again.",
    )


# --------------------------------------------------------------------------- sniffing

# Kinds libsndfile reads natively; everything else goes to ffprobe first.
_SNDFILE_KINDS = {"wav", "aiff", "flac", "ogg", "mp3", "id3", "caf", "au", "w64"}


def _sniff(head: bytes) -> str | None:
    """Guess the container from its first bytes; None when unknown."""
    magic = head[:4]
    if magic in (b"RIFF", b"RIFX", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return "wav"
    if magic == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if magic == b"fLaC":
        return "flac"
    if magic == b"OggS":
        return "ogg"
    if magic == b"caff":
        return "caf"
    if magic == b".snd":
        return "au"
    if head[:16] == b"riff\x2e\x91\xcf\x11\xa5\xd6\x28\xdb\x04\xc1\x00\x00":
        return "w64"
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"):
        return "mp4"
    if magic == b"\x1a\x45\xdf\xa3":
        return "ebml"
    if head[:3] == b"ID3":
        return "id3"
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:
        # MPEG audio frame sync; layer bits 00 are ADTS AAC.
        return "adts" if (head[1] & 0x06) == 0 else "mp3"
    return None


# --------------------------------------------------------------------------- sample data

# WAVE format tags with one fixed-size code per sample (PCM, IEEE float,
# A-law, mu-law): the frame count follows from the byte count, whatever the
# codes are. WAVE_FORMAT_EXTENSIBLE (0xFFFE) names one of them in the first
# two bytes of its sub-format GUID.
_PLAIN_WAVE_TAGS = {0x0001, 0x0003, 0x0006, 0x0007}
_EXTENSIBLE = 0xFFFE


def sample_span(head: bytes) -> tuple[int, int | None] | None:
    """Where the samples of an uncompressed WAV (RIFF, RF64, BW64) or AIFF file
    lie, read from the file's first bytes: ``(first byte, end)``, ``end``
    None when the header leaves the length open (a WAV written by a streaming
    encoder: the samples run to the end of the file).

    None when ``head`` is not such a file, or does not reach the start of the
    samples. The prober's answer does not depend on the values of these bytes
    (only on the headers around them and on the file's size), which is what
    lets an upload's local copy leave them out (``shared.assets``).
    """
    magic, form = head[:4], head[8:12]
    if magic in (b"RIFF", b"RF64", b"BW64") and form == b"WAVE":
        return _wave_span(head)
    if magic == b"FORM" and form == b"AIFF":  # not AIFC: its samples may be compressed
        return _aiff_span(head)
    return None


def _wave_span(head: bytes) -> tuple[int, int | None] | None:
    pos, tag, ds64_size = 12, None, None
    while pos + 8 <= len(head):
        chunk_id = head[pos : pos + 4]
        (size,) = struct.unpack("<I", head[pos + 4 : pos + 8])
        if chunk_id == b"fmt " and pos + 10 <= len(head):
            (tag,) = struct.unpack("<H", head[pos + 8 : pos + 10])
            if tag == _EXTENSIBLE and size >= 26 and pos + 34 <= len(head):
                (tag,) = struct.unpack("<H", head[pos + 32 : pos + 34])
        elif chunk_id == b"ds64" and pos + 24 <= len(head):
            (ds64_size,) = struct.unpack("<Q", head[pos + 16 : pos + 24])
        elif chunk_id == b"data":
            if tag not in _PLAIN_WAVE_TAGS:
                return None
            start = pos + 8
            if size == 0xFFFFFFFF:
                return start, None if ds64_size is None else start + ds64_size
            return start, start + size
        pos += 8 + size + (size & 1)
    return None


def _aiff_span(head: bytes) -> tuple[int, int | None] | None:
    pos = 12
    while pos + 16 <= len(head):
        chunk_id = head[pos : pos + 4]
        (size,) = struct.unpack(">I", head[pos + 4 : pos + 8])
        if chunk_id == b"SSND":
            return pos + 16, pos + 8 + size  # after its offset and block-size fields
        pos += 8 + size + (size & 1)
    return None


# --------------------------------------------------------------------------- structure checks


def _check_structure(f: BinaryIO, kind: str | None, size: int, head: bytes) -> dict:
    """Cheap header-level truncation checks; returns facts later steps can use."""
    if kind == "wav":
        _check_riff(f, size)
    elif kind == "aiff":
        _check_aiff(f, size)
    elif kind == "ogg":
        _check_ogg(f, size)
    elif kind == "mp4":
        _check_mp4(f, size)
    elif kind == "ebml":
        return {"doctype": _check_ebml(f, size)}
    elif kind in ("mp3", "id3"):
        _check_mp3(f, size, head)
    return {}


def _check_riff(f: BinaryIO, size: int) -> None:
    """WAV/RF64: the ``data`` chunk must not extend past the end of the file."""
    f.seek(0)
    riff_id = f.read(12)[:4]
    endian = ">" if riff_id == b"RIFX" else "<"
    ds64_data_size = None
    pos = 12
    for _ in range(_MAX_WALK):
        if pos + 8 > size:
            return
        f.seek(pos)
        header = f.read(8)
        if len(header) < 8:
            return
        chunk_id = header[:4]
        (chunk_size,) = struct.unpack(endian + "I", header[4:])
        if chunk_id == b"ds64":
            body = f.read(16)
            if len(body) == 16:
                ds64_data_size = struct.unpack("<Q", body[8:16])[0]
        if chunk_id == b"data":
            if chunk_size == 0xFFFFFFFF:
                if riff_id in (b"RF64", b"BW64") and ds64_data_size is not None:
                    chunk_size = ds64_data_size
                else:
                    return  # written by a streaming encoder: length unknown
            available = size - (pos + 8)
            if chunk_size > available:
                raise _truncated(
                    f"the WAV header declares {chunk_size} bytes of audio "
                    f"but the file holds only {max(available, 0)}"
                )
            return
        pos += 8 + chunk_size + (chunk_size & 1)
    return


def _check_aiff(f: BinaryIO, size: int) -> None:
    """AIFF/AIFC: the ``SSND`` chunk must not extend past the end of the file."""
    pos = 12
    for _ in range(_MAX_WALK):
        if pos + 8 > size:
            return
        f.seek(pos)
        header = f.read(8)
        if len(header) < 8:
            return
        chunk_id = header[:4]
        (chunk_size,) = struct.unpack(">I", header[4:])
        if chunk_id == b"SSND":
            available = size - (pos + 8)
            if chunk_size > available:
                raise _truncated(
                    f"the AIFF header declares {chunk_size} bytes of audio "
                    f"but the file holds only {max(available, 0)}"
                )
            return
        pos += 8 + chunk_size + (chunk_size & 1)


def _check_ogg(f: BinaryIO, size: int) -> None:
    """Ogg: the last page must be complete and flagged end-of-stream.

    Reads at most the last ``_OGG_MAX_PAGE + 4`` bytes (~64 kB). A stream dumped
    from a live source without an end-of-stream page is refused as truncated.
    """
    start = max(0, size - (_OGG_MAX_PAGE + 4))
    f.seek(start)
    tail = f.read()
    pos = tail.rfind(b"OggS")
    while pos >= 0:
        page = tail[pos:]
        if len(page) < 27:
            raise _truncated("its last Ogg page is cut short")
        if page[4] != 0:  # not a page (version must be 0): "OggS" inside packet data
            pos = tail.rfind(b"OggS", 0, pos)
            continue
        n_segments = page[26]
        if len(page) < 27 + n_segments:
            raise _truncated("its last Ogg page is cut short")
        body = sum(page[27 : 27 + n_segments])
        if 27 + n_segments + body > len(page):
            raise _truncated("its last Ogg page is cut short")
        if not page[5] & 0x04:
            raise _truncated("the Ogg stream ends without an end-of-stream page")
        return
    # No page in the last 64 kB: a damaged file; libsndfile/ffprobe will decide.


def _check_mp4(f: BinaryIO, size: int) -> None:
    """MP4/M4A/MOV: every top-level box must fit inside the file."""
    pos = 0
    for _ in range(_MAX_WALK):
        if pos + 8 > size:
            return  # a few stray trailing bytes do not hide any audio
        f.seek(pos)
        header = f.read(16)
        (box_size,) = struct.unpack(">I", header[:4])
        box_type = header[4:8]
        if not all(0x20 <= c < 0x7F for c in box_type):
            return  # not a box: trailing junk after the last box
        header_len = 8
        if box_size == 1:
            if len(header) < 16:
                raise _truncated("its last MP4 box header is cut short")
            (box_size,) = struct.unpack(">Q", header[8:16])
            header_len = 16
        elif box_size == 0:
            return  # box extends to the end of the file by definition
        if box_size < header_len:
            raise _refuse(f"its MP4 box '{box_type.decode('ascii')}' has an invalid size")
        if pos + box_size > size:
            raise _truncated(
                f"the MP4 box '{box_type.decode('ascii')}' declares {box_size} bytes "
                f"but only {size - pos} remain in the file"
            )
        pos += box_size


def _read_vint(f: BinaryIO, keep_marker: bool) -> tuple[int, int, bool]:
    """Read an EBML variable-length integer: (value, length in bytes, all-ones)."""
    first = f.read(1)
    if not first:
        raise EOFError
    b0 = first[0]
    length = 1
    mask = 0x80
    while length <= 8 and not b0 & mask:
        mask >>= 1
        length += 1
    if length > 8:
        raise ValueError("invalid EBML integer")
    rest = f.read(length - 1)
    if len(rest) < length - 1:
        raise EOFError
    value = b0 if keep_marker else b0 & (mask - 1)
    all_ones = (b0 & (mask - 1)) == mask - 1
    for c in rest:
        value = (value << 8) | c
        all_ones = all_ones and c == 0xFF
    return value, length, all_ones


def _check_ebml(f: BinaryIO, size: int) -> str:
    """Matroska/WebM: the Segment must fit in the file. Returns the DocType."""
    f.seek(0)
    doctype = ""
    try:
        element_id, _, _ = _read_vint(f, keep_marker=True)
        header_size, _, _ = _read_vint(f, keep_marker=False)
        header_start = f.tell()
        if element_id != 0x1A45DFA3 or header_size > 4096:
            return doctype
        while f.tell() < header_start + header_size:
            child_id, _, _ = _read_vint(f, keep_marker=True)
            child_size, _, _ = _read_vint(f, keep_marker=False)
            data = f.read(min(child_size, 64))
            if child_id == 0x4282:  # DocType
                doctype = data.decode("ascii", "replace").rstrip("\x00")
            f.seek(f.tell() - len(data) + child_size)
        f.seek(header_start + header_size)
        segment_id, _, _ = _read_vint(f, keep_marker=True)
        segment_size, _, unknown = _read_vint(f, keep_marker=False)
    except (EOFError, ValueError):
        raise _truncated("its Matroska/WebM header is cut short") from None
    if segment_id == 0x18538067 and not unknown:
        available = size - f.tell()
        if segment_size > available:
            raise _truncated(
                f"the WebM/Matroska segment declares {segment_size} bytes but the file holds only {available}"
            )
    return doctype


_MPEG_SIDE_INFO = {  # (MPEG-1?, mono?) -> Layer III side-information length
    (True, False): 32,
    (True, True): 17,
    (False, False): 17,
    (False, True): 9,
}


def _check_mp3(f: BinaryIO, size: int, head: bytes) -> None:
    """MP3: when a Xing/Info/VBRI header states the stream length, it must fit.

    The byte count in those headers covers the MPEG frames from the first one
    (the header frame itself) to the last, excluding ID3 tags.
    """
    offset = 0
    if head[:3] == b"ID3" and len(head) >= 10:
        s = head[6:10]
        offset = 10 + ((s[0] & 0x7F) << 21 | (s[1] & 0x7F) << 14 | (s[2] & 0x7F) << 7 | s[3] & 0x7F)
        if head[5] & 0x10:  # footer present
            offset += 10
    if offset + 4 > size:
        if head[:3] == b"ID3":
            raise _refuse("it holds an ID3 tag but no audio frames")
        return
    f.seek(offset)
    frame = f.read(4 + 32 + 2 + 16)
    if len(frame) < 4 or frame[0] != 0xFF or (frame[1] & 0xE0) != 0xE0:
        return  # junk before the first frame; leave it to the decoder
    version_bits = (frame[1] >> 3) & 0x03
    layer_bits = (frame[1] >> 1) & 0x03
    if version_bits == 0x01 or layer_bits != 0x01:  # reserved version, or not Layer III
        return
    mono = (frame[3] >> 6) == 0x03
    side_info = _MPEG_SIDE_INFO[(version_bits == 0x03, mono)]
    declared = None
    for at in (4 + side_info, 4 + side_info + 2):  # +2: some encoders count the CRC
        tag = frame[at : at + 4]
        if tag in (b"Xing", b"Info"):
            body = frame[at + 4 : at + 16]
            if len(body) < 12:
                return
            (flags,) = struct.unpack(">I", body[:4])
            fields = body[4:]
            if flags & 0x01:
                fields = fields[4:]
            if flags & 0x02 and len(fields) >= 4:
                (declared,) = struct.unpack(">I", fields[:4])
            break
    else:
        if frame[36:40] == b"VBRI" and len(frame) >= 50:
            (declared,) = struct.unpack(">I", frame[46:50])
    if declared and offset + declared > size:
        raise _truncated(
            f"its MP3 header declares {declared} bytes of audio but the file holds only {size - offset}"
        )


# --------------------------------------------------------------------------- identification


def _identify(path: str, kind: str | None, extra: dict) -> AudioInfo:
    ffprobe = shutil.which("ffprobe")
    if kind in _SNDFILE_KINDS or (kind is None and ffprobe is None):
        info = _probe_sndfile(path)
        if info is not None:
            return info
    if ffprobe is None:
        raise _refuse("its format is not supported on this server", _SUPPORTED_HINT)
    return _probe_ffprobe(ffprobe, path, extra)


_SNDFILE_FORMATS = {
    "WAV": "wav",
    "WAVEX": "wav",
    "RF64": "wav",
    "FLAC": "flac",
    "MP3": "mp3",
    "AIFF": "aiff",
    "CAF": "caf",
    "AU": "au",
    "W64": "w64",
}


def _probe_sndfile(path: str) -> AudioInfo | None:
    """Read the stream parameters with libsndfile; None if it cannot open the file."""
    try:
        snd = soundfile.SoundFile(path)
    except (RuntimeError, ValueError, TypeError, OSError):
        return None  # soundfile.LibsndfileError is a RuntimeError
    with snd:
        major, subtype = snd.format, snd.subtype
        sample_rate, channels, frames = int(snd.samplerate), int(snd.channels), int(snd.frames)
        if frames >= _UNKNOWN_FRAMES:
            return None  # e.g. a FLAC stream with no total in STREAMINFO: ask ffprobe
        if sample_rate <= 0 or channels <= 0:
            raise _refuse("its header declares no sample rate or channels")
        if frames <= 0:
            raise _refuse("it has an audio header but contains no audio frames")
        # MPEG frame counts (MP3 files, MP3-in-WAV) are estimates when there is no
        # Xing header, and a cut MP3 was already checked against its Xing byte
        # count: skip the tail read for them.
        if not subtype.startswith("MPEG") and snd.seekable():
            n = max(1, min(frames, _TAIL_FRAMES, 65536 // channels))
            try:
                snd.seek(frames - n)
                got = len(snd.read(n, dtype="float32", always_2d=True))
            except (RuntimeError, ValueError) as exc:
                raise _truncated("the audio ends before the length its header declares") from exc
            if got < n:
                raise _truncated("the audio ends before the length its header declares")
    if major == "OGG":
        fmt = "opus" if subtype == "OPUS" else "ogg"
    else:
        fmt = _SNDFILE_FORMATS.get(major, major.lower())
    return AudioInfo(
        format=fmt,
        mime_type=EXTENSION_MIME.get(fmt, "application/octet-stream"),
        duration_s=frames / sample_rate,
        sample_rate=sample_rate,
        channels=channels,
    )


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=SUBPROCESS_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise _refuse(f"it could not be analysed within {SUBPROCESS_TIMEOUT_S:g} seconds") from exc
    except OSError as exc:
        log.error("cannot run %s: %s", cmd[0], exc)
        raise _refuse("its format is not supported on this server", _SUPPORTED_HINT) from exc


def _to_int(value: object) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 0


def _to_float(value: object) -> float:
    try:
        result = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return result if math.isfinite(result) and result > 0 else 0.0


def _probe_ffprobe(ffprobe: str, path: str, extra: dict) -> AudioInfo:
    """Identify the file with ffprobe, then decode its last second with ffmpeg."""
    url = "file:" + path
    proc = _run(
        [
            ffprobe,
            "-v",
            "error",
            "-format_whitelist",
            FFMPEG_DEMUXERS,
            "-show_streams",
            "-show_format",
            "-of",
            "json",
            url,
        ]
    )
    if proc.returncode != 0:
        raise _refuse("it is not a recognised audio format, or it is damaged", _SUPPORTED_HINT)
    try:
        data = json.loads(proc.stdout)
    except ValueError as exc:
        raise _refuse("it could not be analysed") from exc
    if not isinstance(data, dict):
        raise _refuse("it could not be analysed")
    streams = [s for s in data.get("streams") or [] if isinstance(s, dict)]
    container = data.get("format")
    if not isinstance(container, dict):
        container = {}
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    video = [
        s
        for s in streams
        if s.get("codec_type") == "video"
        and not (s.get("disposition") or {}).get("attached_pic")  # cover art is not video
    ]
    if not audio:
        if video:
            raise _refuse("it is a video with no audio stream")
        raise _refuse("it contains no audio stream", _SUPPORTED_HINT)
    stream = audio[0]
    index = _to_int(stream.get("index"))
    codec = str(stream.get("codec_name") or "")
    sample_rate = _to_int(stream.get("sample_rate"))
    channels = _to_int(stream.get("channels"))
    if not codec or sample_rate <= 0 or channels <= 0:
        raise _refuse("its audio stream uses a codec this server cannot decode", _SUPPORTED_HINT)

    duration = (
        _to_float(stream.get("duration"))
        or _to_float(container.get("duration"))
        or _duration_from_packets(ffprobe, url, index)
    )
    if duration <= 0:
        raise _refuse("it has an audio header but contains no audio frames")

    _check_tail_decodes(url, index)

    fmt = _ffprobe_format(str(container.get("format_name") or ""), codec, bool(video), extra)
    mime = EXTENSION_MIME.get(fmt, "application/octet-stream")
    if fmt == "webm" and video:
        mime = "video/webm"
    return AudioInfo(
        format=fmt, mime_type=mime, duration_s=duration, sample_rate=sample_rate, channels=channels
    )


def _duration_from_packets(ffprobe: str, url: str, index: int) -> float:
    """Duration in seconds from the timestamps of the last packets (streams with no declared length)."""
    proc = _run(
        [
            ffprobe,
            "-v",
            "error",
            "-format_whitelist",
            FFMPEG_DEMUXERS,
            "-select_streams",
            str(index),
            "-read_intervals",
            "999999999%",
            "-show_entries",
            "packet=pts_time,duration_time",
            "-of",
            "csv=p=0",
            url,
        ]
    )
    end = 0.0
    for line in proc.stdout.decode("ascii", "replace").splitlines():
        parts = line.split(",")
        if len(parts) >= 2:
            end = max(end, _to_float(parts[0]) + _to_float(parts[1]))
    return end


def _check_tail_decodes(url: str, index: int) -> None:
    """Decode the last second of stream ``index``; any decoder error means truncated or damaged."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return  # structural checks only
    proc = _run(
        [
            ffmpeg,
            "-nostdin",
            "-hide_banner",
            "-v",
            "error",
            "-format_whitelist",
            FFMPEG_DEMUXERS,
            "-sseof",
            "-1",
            "-i",
            url,
            "-map",
            f"0:{index}",
            "-f",
            "null",
            "-",
        ]
    )
    if proc.returncode != 0 or proc.stderr.strip():
        raise _truncated("its last second of audio cannot be decoded")


def _ffprobe_format(format_name: str, codec: str, has_video: bool, extra: dict) -> str:
    names = format_name.split(",")
    first = names[0] if names else ""
    if "mp4" in names or "mov" in names:
        return "mp4" if has_video else "m4a"
    if first == "matroska":
        if extra.get("doctype") == "webm":
            return "webm"
        return "mkv" if has_video else "mka"
    if first == "ogg":
        return "opus" if codec == "opus" else "ogg"
    if first == "asf":
        return "wma"
    if first in ("amrnb", "amrwb"):
        return "amr"
    if first == "mpc8":
        return "mpc"
    return first or codec
