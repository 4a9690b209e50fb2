"""Stem separation (workers/dsp/separation.py) on generated mixes with known
stems (tests/synth.py ``separation_mix``: drums, bass, chords and a sung-like
voice at 0 dB against the rest).

Asserted, for the DSP fallback (no model): stem names, shapes, dtype and
channel counts for mono (1-D), stereo and 3-channel input at 22.05 and
48 kHz; the stems sum back to the mixture; each stem's SI-SDR is at least
1 dB better than the mixture's as an estimate of it (measured on the 12 s
stereo mix: vocals +8.7 dB, drums +8.6, bass +6.6, other +6.5); progress is non-decreasing in
[0, 1] and ends at 1; long input is processed in cross-faded chunks that
still sum back; too short, silent, non-finite input and a bad stem count
are 422s. With the Spleeter model in the model directory (skipped
otherwise): the same contract through the resampling path, and vocals at
least 6 dB better than the mixture. ``pytest -s`` prints the SI-SDRs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import synth

from workers.dsp import separation
from workers.dsp.errors import DspError
from workers.dsp.separation import STEMS, Separation, separate

SR = 22050
MIN_GAIN_DB = 1.0  # every fallback stem: SI-SDR at least this much over the mixture's


def si_sdr(est: np.ndarray, ref: np.ndarray) -> float:
    e = np.asarray(est, np.float64).T.ravel()
    r = np.asarray(ref, np.float64).T.ravel()
    e, r = e - e.mean(), r - r.mean()
    target = (e @ r) / (r @ r) * r
    return float(10 * np.log10((target @ target) / ((e - target) @ (e - target) + 1e-20)))


@pytest.fixture(scope="module")
def mix() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    return synth.separation_mix(12.0, SR, seed=3, channels=2)


@pytest.fixture(scope="module")
def fallback4(mix) -> tuple[Separation, list[float]]:
    calls: list[float] = []
    return separate(mix[0], SR, 4, None, progress=calls.append), calls


def test_four_stems_shapes_and_sum(mix, fallback4):
    x, _ = mix
    sep, _ = fallback4
    assert sep.model == separation.FALLBACK_MODEL
    assert sep.sample_rate == SR
    assert tuple(sep.stems) == STEMS[4]
    for stem in sep.stems.values():
        assert stem.shape == x.shape and stem.dtype == np.float32
        assert np.isfinite(stem).all()
    assert np.max(np.abs(sum(s.astype(np.float64) for s in sep.stems.values()) - x)) < 1e-5
    d = sep.to_dict()
    assert d == {"model": "dsp-fallback", "sample_rate": SR, "stems": list(STEMS[4]), "channels": 2,
                 "duration_s": round(len(x) / SR, 3)}  # fmt: skip


def test_each_fallback_stem_beats_the_mixture(mix, fallback4):
    x, truth = mix
    sep, _ = fallback4
    for name in STEMS[4]:
        got, floor = si_sdr(sep.stems[name], truth[name]), si_sdr(x, truth[name])
        print(f"{name}: {got:.1f} dB (mixture {floor:.1f} dB)")
        assert got > floor + MIN_GAIN_DB, name


def test_two_stems_match_the_four_stem_vocals(mix, fallback4):
    x, truth = mix
    sep2 = separate(x, SR, 2, None)
    assert tuple(sep2.stems) == STEMS[2]
    np.testing.assert_allclose(sep2.stems["vocals"], fallback4[0].stems["vocals"], atol=1e-6)
    assert np.max(np.abs(sep2.stems["vocals"] + sep2.stems["accompaniment"] - x)) < 1e-5
    accompaniment = truth["drums"] + truth["bass"] + truth["other"]
    got, floor = si_sdr(sep2.stems["accompaniment"], accompaniment), si_sdr(x, accompaniment)
    print(f"accompaniment: {got:.1f} dB (mixture {floor:.1f} dB)")
    assert got > floor + MIN_GAIN_DB


def test_progress_is_monotone_and_ends_at_one(fallback4):
    _, calls = fallback4
    assert len(calls) >= 2
    assert all(0.0 <= c <= 1.0 for c in calls)
    assert all(b >= a for a, b in zip(calls, calls[1:], strict=False))
    assert calls[-1] == 1.0


@pytest.mark.parametrize("sr, channels", [(22050, 1), (48000, 3)])
def test_any_rate_and_channel_count(sr, channels):
    x, truth = synth.separation_mix(4.0, sr, seed=5, channels=1 if channels == 1 else 2)
    if channels == 1:
        x, truth = x[:, 0], {k: v[:, 0] for k, v in truth.items()}
    else:  # a third channel: the left one again, slightly quieter
        x = np.concatenate([x, 0.5 * x[:, :1]], axis=1)
        truth = {k: np.concatenate([v, 0.5 * v[:, :1]], axis=1) for k, v in truth.items()}
    sep = separate(x, sr, 4, None)
    assert sep.sample_rate == sr
    for stem in sep.stems.values():
        assert stem.shape == x.shape
    assert np.max(np.abs(sum(s.astype(np.float64) for s in sep.stems.values()) - x)) < 1e-5
    # Better than the mixture even on 4 s (one repetition period is enough).
    assert si_sdr(sep.stems["vocals"], truth["vocals"]) > si_sdr(x, truth["vocals"]) + MIN_GAIN_DB


def test_long_input_is_chunked_and_still_sums_back(monkeypatch):
    # Smaller chunks than the 60 s default, so that three cross-faded chunks
    # run on a short signal.
    monkeypatch.setattr(separation, "CHUNK_SECONDS", 5.0)
    monkeypatch.setattr(separation, "OVERLAP_SECONDS", 1.0)
    x, truth = synth.separation_mix(13.0, 16000, seed=6, channels=2)
    calls: list[float] = []
    sep = separate(x, 16000, 4, None, progress=calls.append)
    assert np.max(np.abs(sum(s.astype(np.float64) for s in sep.stems.values()) - x)) < 1e-5
    assert len(calls) >= 6 and calls[-1] == 1.0
    assert all(b >= a for a, b in zip(calls, calls[1:], strict=False))
    # No seam: the vocals near the chunk boundaries are no worse than overall.
    assert si_sdr(sep.stems["vocals"], truth["vocals"]) > si_sdr(x, truth["vocals"]) + MIN_GAIN_DB


@pytest.mark.parametrize(
    "x, sr, n, words",
    [
        (np.full((10000, 2), 0.1, np.float32), 22050, 2, "at least 1 s"),
        (np.zeros((44100, 2), np.float32), 22050, 4, "silent"),
        (np.full(44100, np.nan, np.float32), 22050, 2, "NaN"),
        (np.ones((44100, 2), np.float32) * 0.1, 22050, 3, "2 or 4"),
        (np.ones((44100, 2), np.float32) * 0.1, 4000, 2, "sample rate"),
        (np.ones((44100, 2, 2), np.float32) * 0.1, 22050, 2, "array"),
    ],
)
def test_unprocessable_input_is_refused(x, sr, n, words):
    with pytest.raises(DspError) as e:
        separate(x, sr, n, None)
    assert words in e.value.message


# --------------------------------------------------------------------------- with the model


def _model():
    model_dir = Path(os.environ.get("AUDIOQ_MODEL_DIR") or Path.home() / ".cache" / "audioq" / "models")
    try:
        from workers.dsp.spleeter import SpleeterModel
    except ImportError:
        return None
    return SpleeterModel.load(model_dir)


@pytest.fixture(scope="module")
def model():
    m = _model()
    if m is None:
        pytest.skip("no Spleeter model in the model directory (ops.models.fetch_spleeter)")
    return m


@pytest.mark.parametrize("n_stems", [2, 4])
def test_model_through_the_resampler(model, n_stems):
    # 22.05 kHz mono in: resampled to the model's 44.1 kHz stereo and back.
    x, truth = synth.separation_mix(10.0, SR, seed=3, channels=1)
    x, truth = x[:, 0], {k: v[:, 0] for k, v in truth.items()}
    calls: list[float] = []
    sep = separate(x, SR, n_stems, model, progress=calls.append)
    assert sep.model == (model.name if n_stems == 2 else model.name + "+dsp-4stem")
    assert tuple(sep.stems) == STEMS[n_stems]
    for stem in sep.stems.values():
        assert stem.shape == x.shape and stem.dtype == np.float32
    assert np.max(np.abs(sum(s.astype(np.float64) for s in sep.stems.values()) - x)) < 1e-5
    assert calls[-1] == 1.0 and all(b >= a for a, b in zip(calls, calls[1:], strict=False))
    got, floor = si_sdr(sep.stems["vocals"], truth["vocals"]), si_sdr(x, truth["vocals"])
    print(f"model vocals at 22.05 kHz mono: {got:.1f} dB (mixture {floor:.1f} dB)")
    assert got > floor + MIN_GAIN_DB


def test_model_vocals_stereo_44k(model):
    x, truth = synth.separation_mix(10.0, 44100, seed=3, channels=2)
    sep = separate(x, 44100, 2, model)
    got, floor = si_sdr(sep.stems["vocals"], truth["vocals"]), si_sdr(x, truth["vocals"])
    print(f"model vocals at 44.1 kHz stereo: {got:.1f} dB (mixture {floor:.1f} dB)")
    assert got > floor + 6.0
