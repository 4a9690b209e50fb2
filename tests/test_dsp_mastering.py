"""workers.dsp.mastering: loudness target and true-peak ceiling, re-measured
by our own meter, on generated songs (tests/synth.py) made quiet, loud and
clipped, very dynamic (quiet verse, loud chorus) or rich in inter-sample
peaks; mono and stereo, 44.1 and 48 kHz, several targets and ceilings. Also
the 422s (silence, too short, bad options, unreachable target), stereo
linking, plain gain when no limiting is needed, and determinism.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import synth

from workers.dsp import mastering
from workers.dsp.errors import OptionOutOfRange, UnprocessableAudio
from workers.dsp.loudness import measure
from workers.dsp.mastering import CEILING_DBTP_RANGE, TARGET_LUFS_RANGE, Mastered, master

SECONDS = 8.0


def song(sr: int, seed: int = 0, seconds: float = SECONDS) -> np.ndarray:
    """A drums + chords + bass song, float64 mono peaking at 0.9."""
    y, _, _ = synth.song(100 + 7 * seed, seconds, sr=sr, seed=seed)
    return y.astype(np.float64)


def stereo(y: np.ndarray, sr: int) -> np.ndarray:
    """A stereo image: the right channel a little quieter and 3 ms later."""
    d = int(0.003 * sr)
    return np.stack([y, 0.8 * np.concatenate([np.zeros(d), y[:-d]])], axis=1)


def quiet(sr: int, channels: int) -> np.ndarray:
    y = song(sr, seed=1) * 10 ** (-30 / 20)  # peaks near -31 dBFS
    return stereo(y, sr) if channels == 2 else y


def clipped(sr: int, channels: int) -> np.ndarray:
    """Driven 12 dB into full scale and hard-clipped: loud, flat, with true
    peaks over 0 dBTP between the clipped samples."""
    y = np.clip(song(sr, seed=2) * 4.0, -1.0, 1.0)
    return stereo(y, sr) if channels == 2 else y


def dynamic(sr: int, channels: int) -> np.ndarray:
    """A verse 20 dB down, then the loud chorus."""
    y = song(sr, seed=3)
    half = len(y) // 2
    y[:half] *= 0.1
    return stereo(y, sr) if channels == 2 else y


def intersample(sr: int, channels: int) -> np.ndarray:
    """A song with 10 ms bursts of a sine at sr/4, phase 45°, twice a
    second: every burst sample is at most 0.707 of the sine's peak, so the
    true peak is 3 dB over the sample peak."""
    y = song(sr, seed=4) * 0.3
    n = np.arange(len(y))
    width = int(0.01 * sr)
    env = np.zeros(len(y))
    for start in range(sr // 4, len(y) - width, sr // 2):
        env[start : start + width] = np.hanning(width)
    y = y + 0.9 * env * np.sin(np.pi / 2 * n + np.pi / 4)
    return stereo(y, sr) if channels == 2 else y


MATERIAL = {"quiet": quiet, "clipped": clipped, "dynamic": dynamic, "intersample": intersample}


def check(x: np.ndarray, sr: int, target: float, ceiling: float) -> Mastered:
    m = master(x, sr, target_lufs=target, ceiling_dbtp=ceiling)
    assert m.audio.dtype == np.float32
    assert m.audio.shape == x.shape
    assert np.isfinite(m.audio).all()
    out = measure(m.audio, sr)
    assert out.integrated_lufs == pytest.approx(target, abs=0.5), m.to_dict()
    assert out.true_peak_dbtp <= ceiling, m.to_dict()
    # The reported output levels are the meter's on the returned audio.
    assert m.output["integrated_lufs"] == pytest.approx(out.integrated_lufs, abs=1e-6)
    assert m.output["true_peak_dbtp"] == pytest.approx(out.true_peak_dbtp, abs=1e-6)
    inp = measure(x, sr)
    assert m.input["integrated_lufs"] == pytest.approx(inp.integrated_lufs, abs=1e-6)
    return m


@pytest.mark.parametrize(
    ("material", "sr", "channels", "target", "ceiling"),
    [
        ("quiet", 44100, 2, -14.0, -1.0),
        ("quiet", 48000, 1, -12.0, -1.0),
        ("clipped", 44100, 2, -14.0, -1.0),
        ("clipped", 48000, 2, -9.0, -0.1),
        ("clipped", 44100, 1, -23.0, -2.0),
        ("dynamic", 48000, 2, -14.0, -1.0),
        ("dynamic", 44100, 1, -16.0, -1.5),
        ("dynamic", 44100, 2, -10.0, -1.0),
        ("intersample", 44100, 2, -15.0, -1.0),
        ("intersample", 48000, 1, -21.0, -3.0),
        ("quiet", 44100, 2, -30.0, -6.0),
        ("dynamic", 48000, 2, -12.0, 0.0),
    ],
)
def test_target_and_ceiling(material, sr, channels, target, ceiling):
    check(MATERIAL[material](sr, channels), sr, target, ceiling)


def test_limiter_holds_true_peak_not_only_sample_peak():
    sr = 44100
    x = intersample(sr, 2)
    m = check(x, sr, -15.0, -1.0)
    out = measure(m.audio, sr)
    # The bursts keep true peak well above sample peak in the input; a
    # sample-peak limiter at the ceiling would leave the output ~3 dB over.
    inp = measure(x, sr)
    assert inp.true_peak_dbtp - inp.sample_peak_dbfs > 2.0
    assert out.true_peak_dbtp <= -1.0


def test_plain_gain_when_the_peaks_fit():
    """Turning a track down (or up within its headroom) is a pure gain:
    exact loudness, waveform unchanged up to float32 rounding."""
    sr = 48000
    x = stereo(song(sr, seed=5), sr)
    m = master(x, sr, target_lufs=-24.0, ceiling_dbtp=-1.0)
    assert m.output["integrated_lufs"] == pytest.approx(-24.0, abs=0.01)
    k = 10 ** (m.gain_db / 20)
    np.testing.assert_allclose(m.audio, x * k, rtol=0, atol=2e-7)
    before = measure(x, sr)
    assert m.gain_db == pytest.approx(-24.0 - before.integrated_lufs, abs=0.01)


def test_stereo_linked():
    """One gain for both channels: a right channel at exactly half the left
    stays at half, however hard the limiter works."""
    sr = 44100
    y = np.clip(song(sr, seed=6) * 2.0, -1, 1)
    x = np.stack([y, 0.5 * y], axis=1)
    m = check(x, sr, -9.0, -1.0)
    np.testing.assert_allclose(m.audio[:, 1], 0.5 * m.audio[:, 0], rtol=1e-6, atol=1e-9)


def test_mono_shape_and_deterministic():
    sr = 44100
    x = dynamic(sr, 1).astype(np.float32)
    a = master(x, sr, -12.0, -1.0)
    b = master(x.copy(), sr, -12.0, -1.0)
    assert a.audio.shape == x.shape and a.audio.ndim == 1
    assert np.array_equal(a.audio, b.audio)
    assert a.to_dict() == b.to_dict()
    # The input is not modified in place.
    assert np.array_equal(x, dynamic(sr, 1).astype(np.float32))


def test_to_dict_and_progress():
    sr = 48000
    seen: list[float] = []
    m = master(quiet(sr, 2), sr, progress=seen.append)
    d = json.loads(json.dumps(m.to_dict()))
    assert set(d) == {"input", "output", "gain_db"}
    for side in ("input", "output"):
        assert set(d[side]) == {"integrated_lufs", "true_peak_dbtp"}
    assert d["output"]["integrated_lufs"] == pytest.approx(-14.0, abs=0.5)
    assert d["gain_db"] > 10  # the quiet song was brought up
    assert seen == sorted(seen) and seen[-1] == 1.0 and 0 < seen[0] < 1


def test_unreachable_target_is_refused_and_the_reported_level_is_reachable():
    """A very dynamic track (a drum kit peaking 20 dB over its loudness) at
    -6 LUFS under -3 dBTP: 422 naming the loudest clean level, and mastering
    to that level then works."""
    sr = 44100
    x = stereo(synth.drum_pattern(90, SECONDS, sr=sr, pattern="halftime", seed=7).astype(np.float64), sr)
    with pytest.raises(UnprocessableAudio) as e:
        master(x, sr, target_lufs=-6.0, ceiling_dbtp=-3.0)
    loudest = float(re.search(r"(-?\d+(\.\d+)?) LUFS\.", e.value.message).group(1))
    assert loudest < -6.5
    check(x, sr, loudest - 0.05, -3.0)


@pytest.mark.parametrize(
    ("x", "sr", "why"),
    [
        (np.zeros((48000 * 2, 2)), 48000, "silent"),
        (np.full(48000, 1e-6), 48000, "silent"),  # -120 dBFS: under the -70 LUFS gate
        (song(48000)[: int(0.3 * 48000)], 48000, "shorter"),
        (np.array([0.1, np.nan] * 24000), 48000, "NaN"),
        (song(48000)[:48000], 4000, "8000"),
    ],
)
def test_unprocessable_audio_is_refused(x, sr, why):
    with pytest.raises(UnprocessableAudio) as e:
        master(x, sr)
    assert why in e.value.message


@pytest.mark.parametrize(
    ("target", "ceiling"),
    [
        (TARGET_LUFS_RANGE[0] - 1, -1.0),
        (TARGET_LUFS_RANGE[1] + 1, -1.0),
        (-14.0, CEILING_DBTP_RANGE[1] + 0.5),
        (-14.0, CEILING_DBTP_RANGE[0] - 1),
        (float("nan"), -1.0),
        ("loud", -1.0),
    ],
)
def test_options_out_of_range_are_refused(target, ceiling):
    with pytest.raises(OptionOutOfRange):
        master(song(44100)[:44100], 44100, target_lufs=target, ceiling_dbtp=ceiling)


def test_warmup_runs():
    mastering.warmup()
