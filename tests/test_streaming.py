"""Bounded memory for long tracks (issue 11, part 6): separation and
mastering work on blocks read from disk, and their block forms give the
samples of the whole-array forms.

Asserted: the streaming loudness meter equals ``measure`` exactly for any
block size; the exact streaming percentile equals ``np.percentile``;
``separate_stream`` and ``master_stream`` give the same samples whatever the
source's block size (seams between blocks and chunks are bit-identical), the
same as ``separate``/``master``; the model's ``vocals_stream`` equals
``vocals`` (when the model is installed); the decoders read in blocks give
``decode``'s samples and the block encoder ``encode``'s bytes. And the
regression that matters: on a track much longer than a chunk, the Python
heap (tracemalloc, which numpy reports to) peaks far below the size of the
track's stems or master, so nothing whole-track is allocated.
"""

from __future__ import annotations

import os
import subprocess
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile
import synth

from shared.audio import probe
from workers import codec
from workers.dsp import loudness, mastering, separation
from workers.dsp.blocks import ArraySource, concatenate
from workers.dsp.errors import UnprocessableAudio


class Blocks(ArraySource):
    """An in-memory source read in blocks of a chosen size."""

    def __init__(self, x: np.ndarray, sr: int, size: int) -> None:
        super().__init__(x, sr)
        self.size = size

    def blocks(self, size: int | None = None):
        return super().blocks(self.size)


class Generated:
    """A long signal made block by block (never held whole): a generated
    mix, repeated, with a slow level change so no two repeats are equal."""

    def __init__(self, seconds: float, sr: int, block: int = 4096) -> None:
        self.unit, _ = synth.separation_mix(6.0, sr, seed=2, channels=2)
        self.sample_rate, self.channels, self.block = sr, 2, block
        self.frames = int(seconds * sr)

    def blocks(self, size: int | None = None):
        n_unit = len(self.unit)
        for a in range(0, self.frames, self.block):
            idx = np.arange(a, min(self.frames, a + self.block))
            level = 0.5 + 0.4 * np.sin(2 * np.pi * idx / (37.0 * self.sample_rate))
            yield (self.unit[idx % n_unit] * level[:, None]).astype(np.float32)


# --------------------------------------------------------------------------- loudness


@pytest.mark.parametrize(
    ("sr", "channels", "dtype"), [(44100, 2, np.float32), (11025, 1, np.float64), (48000, 6, np.float32)]
)
def test_meter_equals_measure_for_any_block_size(sr, channels, dtype):
    rng = np.random.default_rng(1)
    n = sr * 5 + 123
    x = (rng.uniform(-0.5, 0.5, (n, channels)) * np.linspace(0, 1, n)[:, None]).astype(dtype)
    ref = loudness.measure(x, sr)
    for size in (37, 1000, 4410, 65536, n):
        meter = loudness.LoudnessMeter(sr, channels)
        for a in range(0, n, size):
            meter.add(x[a : a + size])
        got = meter.result()
        assert got == ref, size
        np.testing.assert_array_equal(got.short_term, ref.short_term)
        assert got.to_dict() == ref.to_dict()


def test_meter_names_the_first_bad_sample():
    x = np.full((44100, 2), 0.1, np.float32)
    x[30000, 1] = np.nan
    meter = loudness.LoudnessMeter(44100, 2)
    meter.add(x[:20000])
    with pytest.raises(UnprocessableAudio, match=r"sample 30000 of channel 1"):
        meter.add(x[20000:])


def test_stream_percentile_is_numpys():
    rng = np.random.default_rng(0)
    cases = [
        rng.random(1001).astype(np.float32),
        (rng.random(20003) ** 8).astype(np.float32),
        np.full(100, 0.3, np.float32),
        np.concatenate([np.zeros(990), np.ones(10)]).astype(np.float32),
        np.array([0.5], np.float32),
    ]
    for v in cases:
        for q in (99.9, 99.0, 50.0, 0.0, 100.0):
            for size in (7, 4096):
                got, top = mastering._stream_percentile(
                    lambda v=v, s=size: (v[a : a + s] for a in range(0, len(v), s)), q
                )
                assert got == float(np.percentile(v, q)) and top == float(v.max())


# --------------------------------------------------------------------------- separation


def test_separation_blocks_are_seamless(monkeypatch):
    # Several cross-faded chunks (5 s, 1 s overlap) in both DSP stages; the
    # source read in blocks of many sizes gives the same stems, bit for bit.
    monkeypatch.setattr(separation, "CHUNK_SECONDS", 5.0)
    monkeypatch.setattr(separation, "OVERLAP_SECONDS", 1.0)
    x, _ = synth.separation_mix(13.0, 16000, seed=6, channels=2)
    whole = separation.separate(x, 16000, 4, None)
    for size in (999, 16000, 1 << 16):
        stream = separation.separate_stream(Blocks(x.astype(np.float32), 16000, size), 4, None)
        assert stream.names == separation.STEMS[4] and stream.frames == len(x)
        got = {name: [] for name in stream.names}
        for block in stream.blocks:
            assert len({len(b) for b in block.values()}) == 1
            for name, b in block.items():
                got[name].append(b)
        for name in stream.names:
            np.testing.assert_array_equal(
                np.concatenate(got[name]), whole.stems[name], err_msg=f"{name} {size}"
            )


def _traced_peak(run) -> int:
    """Peak bytes numpy and Python allocate while ``run()`` runs."""
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_separation_memory_does_not_grow_with_length(monkeypatch):
    # 3 s chunks at 16 kHz; 30 s and 90 s: the stems of 90 s would be 46 MB as arrays.
    monkeypatch.setattr(separation, "CHUNK_SECONDS", 3.0)
    monkeypatch.setattr(separation, "OVERLAP_SECONDS", 1.0)
    longest = 0

    def run(source: Generated) -> None:
        nonlocal longest
        for block in separation.separate_stream(source, 4, None).blocks:
            longest = max(longest, len(block["vocals"]))

    run(Generated(8.0, 16000))  # imports (librosa...) allocate too: not counted
    sources = Generated(30.0, 16000), Generated(90.0, 16000)
    short, long = (_traced_peak(lambda s=s: run(s)) for s in sources)
    assert longest <= 3 * 16000
    whole_stems = 4 * 90 * 16000 * 2 * 4
    assert long < short + 2**20 and long < whole_stems / 2, (short, long)


@pytest.fixture(scope="module")
def model():
    from workers.dsp.spleeter import SpleeterModel

    model_dir = Path(os.environ.get("AUDIOQ_MODEL_DIR") or Path.home() / ".cache" / "audioq" / "models")
    m = SpleeterModel.load(model_dir)
    if m is None:
        pytest.skip("no Spleeter model in the model directory (ops.models.fetch_spleeter)")
    return m


def test_model_stream_equals_the_whole_array(model):
    # 30 s: three network segments and their overlap-added joins.
    x, _ = synth.separation_mix(30.0, 44100, seed=4, channels=2)
    x = x.astype(np.float32)
    whole = model.vocals(x)
    for size in (1000, 1 << 16, 500_000):
        got = np.concatenate(list(model.vocals_stream(x[a : a + size] for a in range(0, len(x), size))))
        np.testing.assert_array_equal(got, whole)


# --------------------------------------------------------------------------- mastering


def _song(seconds: float, sr: int) -> np.ndarray:
    y, _, _ = synth.song(120, seconds, sr=sr, seed=3)
    y = y.astype(np.float32)
    y[: len(y) // 2] *= 0.2  # a quiet verse: the compressor and the limiter both work
    return np.stack([y, 0.8 * y], axis=1)


def test_master_blocks_are_seamless():
    x = _song(8.0, 44100)
    whole = mastering.master(x, 44100, -10.0, -1.0)
    for size in (17, 1000, 4097, 1 << 16):
        done = mastering.master_stream(Blocks(x, 44100, size), -10.0, -1.0)
        assert done.to_dict() == whole.to_dict()
        np.testing.assert_array_equal(np.concatenate(list(done.blocks())), whole.audio, err_msg=str(size))


def test_limiter_blocks_equal_the_whole_array_gain():
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((30000, 2)) * 0.3).astype(np.float32)
    limiter = mastering._Limiter(ArraySource(x, 44100), -1.0, 10.0)
    gain_db = 6.0
    peaks = np.concatenate([p for _, p in mastering._side_chain(ArraySource(x, 44100).blocks(4096))])
    whole = mastering._interpolated_peaks(x, mastering._TAPS_REVERSED, mastering._BLOCK)
    np.testing.assert_array_equal(peaks, whole)
    scale = 10 ** (gain_db / 20)
    gain = mastering._limiter_gain(whole, scale, 10 ** (-1 / 20), limiter.lookahead, 8, limiter.release)
    expected = x * (gain * np.float32(scale))[:, None]
    got = np.concatenate(list(limiter.blocks(ArraySource(x, 44100).blocks(777), gain_db)))
    np.testing.assert_array_equal(got, expected)


def test_mastering_memory_does_not_grow_with_length():
    # 1 and 3 minutes at 16 kHz stereo: the longer is 23 MB as one float32 array.
    results = []

    def run(source: Generated) -> None:
        done = mastering.master_stream(source, -12.0, -1.0)
        for _ in done.blocks():
            pass
        results.append(done)

    mastering.warmup()
    sources = Generated(60.0, 16000), Generated(180.0, 16000)
    short, long = (_traced_peak(lambda s=s: run(s)) for s in sources)
    for done in results:
        assert done.output["integrated_lufs"] == pytest.approx(-12.0, abs=0.5)
        assert done.output["true_peak_dbtp"] <= -1.0
    assert long < short + 2**20 and long < 180 * 16000 * 2 * 4 / 4, (short, long)


# --------------------------------------------------------------------------- codec


@pytest.fixture(scope="module")
def encoded(tmp_path_factory) -> tuple[Path, np.ndarray]:
    d = tmp_path_factory.mktemp("codec")
    x, _ = synth.separation_mix(5.0, 44100, seed=5)
    x = (0.9 * x / np.abs(x).max()).astype(np.float32)
    for fmt in ("wav", "flac", "mp3"):
        codec.encode(x, 44100, fmt, d / f"a.{fmt}")
    return d, x


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3"])
def test_block_encoder_writes_encodes_bytes(encoded, fmt, tmp_path):
    d, x = encoded
    with codec.Encoder(tmp_path / f"b.{fmt}", 44100, 2, fmt) as enc:
        for a in range(0, len(x), 5000):
            enc.write(x[a : a + 5000])
    assert (tmp_path / f"b.{fmt}").read_bytes() == (d / f"a.{fmt}").read_bytes()


@pytest.mark.parametrize("name", ["a.wav", "a.flac", "a.mp3", "a.m4a"])
def test_open_source_reads_decodes_samples(encoded, name, tmp_path):
    d, _ = encoded
    path = d / name
    if name.endswith(".m4a"):  # only ffmpeg decodes it
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(d / "a.wav"), str(path)], check=True)
    info = probe(path)
    ref, sr = codec.decode(path, info)
    source = codec.open_source(path, info, tmp_path)
    assert (source.sample_rate, source.channels, source.frames) == (sr, ref.shape[1], len(ref))
    assert source.raw  # decoded once to raw float32 on disk
    np.testing.assert_array_equal(concatenate(source.blocks(4096), source.frames, source.channels), ref)
    sr2, channels, blocks = codec.read_blocks(d / "a.wav")
    assert (sr2, channels) == (44100, 2) and sum(len(b) for b in blocks) == soundfile.info(d / "a.wav").frames
