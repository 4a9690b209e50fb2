"""workers.dsp.loudness against the EBU conformance signals, synthesised from
their published definitions (EBU Tech 3341 v3/v4 cases 1-6, Tech 3342 cases
1-4), against pyloudnorm, and on the true-peak and edge cases.

Levels of test tones are sine amplitudes: "-23 dBFS" is a sine whose peak is
10^(-23/20). EBU signals are at 48 kHz, like the EBU's own files.
"""

from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest
from scipy import signal

from workers.dsp import loudness
from workers.dsp.errors import UnprocessableAudio
from workers.dsp.loudness import Loudness, measure

SR = 48000

# ITU-R BS.1770-4 Tables 1 and 2: the K-weighting biquads, published for 48 kHz
# only, as (b0, b1, b2, a0, a1, a2).
BS1770_48K_SOS = np.array(
    [
        [1.53512485958697, -2.69169618940638, 1.19839281085285, 1.0, -1.69065929318241, 0.73248077421585],
        [1.0, -2.0, 1.0, 1.0, -1.99004745483398, 0.99007225036621],
    ]
)


def tone(segments: list[tuple[float, float]], channels: int = 2, sr: int = SR, freq: float = 1000.0):
    """A sine of ``freq`` Hz through (level dBFS, seconds) segments, phase
    continuous across them, the same on every channel."""
    amp = np.concatenate([np.full(round(s * sr), 10 ** (db / 20)) for db, s in segments])
    x = (amp * np.sin(2 * np.pi * freq * np.arange(len(amp)) / sr)).astype(np.float32)
    return np.repeat(x[:, None], channels, axis=1) if channels > 1 else x


def pinkish(seconds: float, sr: int, channels: int, seed: int) -> np.ndarray:
    """Noise with a 1/f power spectrum from 20 Hz to 20 kHz (0 outside), made
    in the frequency domain: random phases, exact magnitudes."""
    n = round(seconds * sr)
    f = np.fft.rfftfreq(n, 1 / sr)
    mag = np.where((f >= 20) & (f <= 20000), 1 / np.sqrt(np.maximum(f, 1.0)), 0.0)
    phase = np.random.default_rng(seed).uniform(0, 2 * np.pi, size=(channels, len(f)))
    x = np.fft.irfft(mag * np.exp(1j * phase), n).T
    return x / np.abs(x).max() * 0.5


def faded(x: np.ndarray, sr: int, seconds: float = 0.02) -> np.ndarray:
    # A hard start or end is itself a step whose band-limited reconstruction
    # overshoots; the true-peak cases are about the steady sine, so ramp in/out.
    r = round(seconds * sr)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(r) / r)
    env = np.ones(len(x))
    env[:r], env[-r:] = ramp, ramp[::-1]
    return x * (env[:, None] if x.ndim == 2 else env)


# EBU Tech 3341 (v3/v4) Table 1, cases 1-6: integrated loudness -23.0 +-0.1 LUFS
# (case 2: -33.0). Case 6 is 5.0 in L, R, C, Ls, Rs order.
TECH3341_CASES = {
    "1 stereo -23 dBFS 20 s": (lambda: tone([(-23, 20)]), -23.0),
    "2 stereo -33 dBFS 20 s": (lambda: tone([(-33, 20)]), -33.0),
    "3 -36/-23/-36 dBFS 10/60/10 s": (lambda: tone([(-36, 10), (-23, 60), (-36, 10)]), -23.0),
    "4 -72/-36/-23/-36/-72 dBFS 10/10/60/10/10 s": (
        lambda: tone([(-72, 10), (-36, 10), (-23, 60), (-36, 10), (-72, 10)]),
        -23.0,
    ),
    "5 -26/-20/-26 dBFS 20/20.1/20 s": (lambda: tone([(-26, 20), (-20, 20.1), (-26, 20)]), -23.0),
    "6 5.0 at -28/-28/-24/-30/-30 dBFS": (
        lambda: np.column_stack([tone([(db, 20)], channels=1) for db in (-28, -28, -24, -30, -30)]),
        -23.0,
    ),
}


@pytest.mark.parametrize("case", TECH3341_CASES)
def test_tech3341_integrated_loudness(case):
    make, expected = TECH3341_CASES[case]
    assert measure(make(), SR).integrated_lufs == pytest.approx(expected, abs=0.1)


def test_tech3341_case7_substitute_programme():
    """Case 7 is an authentic programme file we cannot ship. Substitute: stereo
    broadband noise (1/f, 20 Hz-20 kHz) whose K-weighted power is computed
    from its exact spectrum and the published 48 kHz filter, then scaled to
    -23 LUFS; the meter must read -23.0 +-0.1 like for the real file."""
    x = pinkish(20, SR, channels=2, seed=7)
    spectra = np.abs(np.fft.rfft(x, axis=0)) ** 2
    _, h = signal.sosfreqz(BS1770_48K_SOS, worN=np.fft.rfftfreq(len(x), 1 / SR), fs=SR)
    # Parseval: the K-weighted mean square is the spectrum-weighted share of the plain one.
    weighted_ms = np.mean(x**2, axis=0) * (spectra * np.abs(h[:, None]) ** 2).sum(0) / spectra.sum(0)
    predicted = -0.691 + 10 * np.log10(weighted_ms.sum())
    x = x * 10 ** ((-23.0 - predicted) / 20)

    assert measure(x, SR).integrated_lufs == pytest.approx(-23.0, abs=0.1)


def test_momentary_and_short_term_max_of_a_steady_sine_equal_integrated():
    result = measure(tone([(-23, 10)]), SR)
    assert result.momentary_max_lufs == pytest.approx(-23.0, abs=0.1)
    assert result.short_term_max_lufs == pytest.approx(-23.0, abs=0.1)
    assert result.integrated_lufs == pytest.approx(-23.0, abs=0.1)


def test_window_lengths_from_a_one_second_burst():
    # 1 s at -20 LUFS in silence: a whole 400 ms window fits inside the burst
    # (momentary max -20), a 3 s window holds it a third of the time
    # (short-term max -20 + 10 log10(1/3) = -24.77).
    result = measure(tone([(-200, 4), (-20, 1), (-200, 5)]), SR)
    assert result.momentary_max_lufs == pytest.approx(-20.0, abs=0.1)
    assert result.short_term_max_lufs == pytest.approx(-20 + 10 * np.log10(1 / 3), abs=0.1)


# EBU Tech 3342 Table 1, cases 1-4: stereo 1 kHz sine, loudness range +-1 LU.
TECH3342_CASES = {
    "1 -20/-30 dBFS": ([-20, -30], 10.0),
    "2 -20/-15 dBFS": ([-20, -15], 5.0),
    "3 -40/-20 dBFS": ([-40, -20], 20.0),
    "4 -50/-35/-20/-35/-50 dBFS": ([-50, -35, -20, -35, -50], 15.0),
}


@pytest.mark.parametrize("case", TECH3342_CASES)
def test_tech3342_loudness_range(case):
    levels, expected = TECH3342_CASES[case]
    x = tone([(db, 20) for db in levels])
    assert measure(x, SR).loudness_range_lu == pytest.approx(expected, abs=1.0)


@pytest.mark.parametrize(
    ("sr", "channels"), [(44100, 2), (48000, 2), (44100, 1)], ids=["44k1-stereo", "48k-stereo", "44k1-mono"]
)
def test_integrated_agrees_with_pyloudnorm(sr, channels):
    x = pinkish(10, sr, channels, seed=sr + channels) * 0.3
    x = x[:, 0] if channels == 1 else x
    reference = pyloudnorm.Meter(sr).integrated_loudness(x)
    assert measure(x, sr).integrated_lufs == pytest.approx(reference, abs=0.1)


def test_k_weighting_at_48k_reproduces_the_published_coefficients():
    derived = loudness._k_weighting_sos(48000)
    published = BS1770_48K_SOS[:, [0, 1, 2, 4, 5]]
    np.testing.assert_allclose(derived, published, atol=1e-8)


@pytest.mark.parametrize("sr", [8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000, 192000])
def test_reference_tone_reads_the_same_at_every_sample_rate(sr):
    # Coefficients are derived per rate; reusing the 48 kHz ones would misread
    # everywhere else. 11 025 Hz also exercises hops of 1102/1103 samples.
    assert measure(tone([(-23, 5)], sr=sr), sr).integrated_lufs == pytest.approx(-23.0, abs=0.1)


def test_true_peak_finds_the_intersample_peak():
    # 0.5 sin(2 pi fs/4 t + 45 deg): every sample is +-0.3536 (-9.03 dBFS), the
    # waveform between them reaches 0.5 (-6.02 dBTP).
    x = faded(0.5 * np.sin(2 * np.pi * (SR / 4) * np.arange(SR) / SR + np.pi / 4), SR)
    result = measure(np.column_stack([x, x]), SR)
    assert result.sample_peak_dbfs == pytest.approx(20 * np.log10(0.5 * np.sqrt(0.5)), abs=0.01)
    assert result.true_peak_dbtp == pytest.approx(-6.02, abs=0.3)


# Inter-sample peak tones of the kind in EBU Tech 3341 v3 (true-peak cases):
# sines at fs/4, fs/6, fs/8 phased so the peak falls between samples, with the
# Tech 3341 tolerance +0.2/-0.4 dB.
@pytest.mark.parametrize(
    ("divisor", "phase_deg", "amplitude_db"),
    [(4, 0.0, -6.0), (4, 45.0, -6.0), (6, 60.0, -6.0), (8, 67.5, -6.0), (4, 45.0, 3.0)],
)
@pytest.mark.parametrize("sr", [44100, 48000])
def test_true_peak_of_intersample_tones(sr, divisor, phase_deg, amplitude_db):
    t = np.arange(sr) / sr
    x = faded(10 ** (amplitude_db / 20) * np.sin(2 * np.pi * sr / divisor * t + np.radians(phase_deg)), sr)
    tp = measure(x, sr).true_peak_dbtp
    assert amplitude_db - 0.4 <= tp <= amplitude_db + 0.2


def test_sample_peak_is_the_largest_absolute_sample_over_channels():
    x = np.zeros((SR, 2), np.float32)
    x[1000, 0], x[2000, 1] = 0.25, -0.5
    result = measure(x, SR)
    assert result.sample_peak_dbfs == pytest.approx(20 * np.log10(0.5))
    assert result.true_peak_dbtp >= result.sample_peak_dbfs


def test_true_peak_kernel_matches_a_direct_convolution_across_blocks():
    # Block edges of the compiled kernel must be seamless: compare with the
    # plain full convolution (signal silent before and after) per phase.
    x = np.random.default_rng(3).uniform(-1, 1, size=(5 * loudness._TRUE_PEAK_BLOCK + 37, 1))
    taps = loudness._TRUE_PEAK_TAPS
    expected = max(np.abs(np.convolve(x[:, 0], taps[p])).max() for p in range(4))
    for chunk in (1 << 20, 1000, 37):  # seamless across the memory-bounding chunks too
        got = loudness._true_peak(x, 0, loudness._TRUE_PEAK_TAPS_REVERSED, loudness._TRUE_PEAK_BLOCK, chunk)
        assert got == pytest.approx(expected, rel=1e-12)


def test_hop_energy_kernel_matches_scipy_sosfilt():
    sr = 11025  # hops of alternating lengths
    x = np.random.default_rng(4).uniform(-1, 1, size=(sr * 2 + 123, 2)).astype(np.float32)
    sos = loudness._k_weighting_sos(sr)
    edges = np.arange(21, dtype=np.int64) * sr // 10
    energy, peak, bad = loudness._k_weighted_hop_energy(x, 1, sos, edges)
    y = signal.sosfilt(np.insert(sos, 3, 1.0, axis=1), x[:, 1].astype(np.float64))
    expected = np.add.reduceat(y[: edges[-1]] ** 2, edges[:-1])
    np.testing.assert_allclose(energy, expected, rtol=1e-9)
    assert (peak, bad) == (np.abs(x[:, 1]).max(), -1)


def test_lfe_does_not_count_towards_loudness_but_does_towards_peaks():
    front_l, front_r, centre, ls, rs = (tone([(db, 10)], channels=1) for db in (-28, -28, -24, -30, -30))
    quiet_lfe = np.zeros_like(centre)
    loud_lfe = tone([(0, 10)], channels=1, freq=60.0)
    without = measure(np.column_stack([front_l, front_r, centre, quiet_lfe, ls, rs]), SR)
    with_lfe = measure(np.column_stack([front_l, front_r, centre, loud_lfe, ls, rs]), SR)
    assert with_lfe.integrated_lufs == pytest.approx(without.integrated_lufs, abs=1e-9)
    assert with_lfe.integrated_lufs == pytest.approx(-23.0, abs=0.1)
    assert with_lfe.sample_peak_dbfs == pytest.approx(0.0, abs=0.01)


def test_digital_silence_is_all_none():
    nothing = Loudness(None, None, None, None, None, None)
    assert measure(np.zeros((5 * SR, 2), np.float32), SR) == nothing
    assert measure(np.zeros((0, 2)), SR) == nothing
    assert measure(np.zeros(0), SR) == nothing


def test_input_shorter_than_a_block_has_peaks_but_no_loudness():
    result = measure(tone([(-20, 0.3)]), SR)
    assert result.integrated_lufs is None
    assert result.momentary_max_lufs is None
    assert result.short_term_max_lufs is None
    assert result.loudness_range_lu is None
    assert result.sample_peak_dbfs == pytest.approx(-20.0, abs=0.01)


def test_shorter_than_three_seconds_has_no_range_or_short_term():
    result = measure(tone([(-23, 2)]), SR)
    assert result.integrated_lufs == pytest.approx(-23.0, abs=0.1)
    assert (result.loudness_range_lu, result.short_term_max_lufs) == (None, None)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_raise(bad):
    x = tone([(-20, 1)])
    x[12345, 1] = bad
    with pytest.raises(UnprocessableAudio, match=r"sample 12345 of channel 1 .* NaN or infinite"):
        measure(x, SR)


@pytest.mark.parametrize(
    ("x", "sr"),
    [
        (np.zeros((SR, 2), np.int16), SR),  # PCM not scaled to float
        (np.zeros((SR, 2, 1)), SR),
        (np.zeros((SR, 0)), SR),
        (np.zeros((SR, 2)), 4000),
        (np.zeros((SR, 2)), 44100.5),
    ],
    ids=["int16", "3-d", "no-channels", "sr-too-low", "fractional-sr"],
)
def test_bad_input_raises(x, sr):
    with pytest.raises(ValueError):
        measure(x, sr)


def test_layout_and_precision_of_the_input_do_not_matter():
    x = tone([(-20, 4), (-30, 4)])
    reference = measure(x, SR)
    assert measure(x.astype(np.float64), SR).to_dict() == reference.to_dict()
    assert measure(np.asfortranarray(x), SR) == reference
    assert measure(np.repeat(x, 2, axis=1)[:, ::2], SR) == reference  # strided view


def test_to_dict_rounds_to_hundredths_and_keeps_the_field_names():
    d = Loudness(-23.004, 1.236, -0.5, None, -20.0, -21.999).to_dict()
    assert d == {
        "integrated_lufs": -23.0,
        "loudness_range_lu": 1.24,
        "true_peak_dbtp": -0.5,
        "sample_peak_dbfs": None,
        "momentary_max_lufs": -20.0,
        "short_term_max_lufs": -22.0,
        "short_term_lufs": {"start_s": 3.0, "hop_s": 0.1, "values": []},
    }


def test_short_term_series_follows_the_level_every_100_ms():
    """A 1 kHz sine at -30 dBFS for 6 s, then -20 dBFS for 6 s (stereo reads
    as its level, as Tech 3341's cases do): one 3 s window every 100 ms; a
    window straddling the step reads the power mean of its two parts."""
    result = measure(tone([(-30, 6), (-20, 6)]), SR)
    series = result.to_dict()["short_term_lufs"]
    values = series["values"]
    assert (series["start_s"], series["hop_s"]) == (3.0, 0.1)
    assert len(values) == 12 * 10 - 30 + 1  # windows ending at 3.0, 3.1, ... 12.0 s
    assert values[0] == pytest.approx(-30.0, abs=0.1)  # [0, 3 s)
    assert values[-1] == pytest.approx(-20.0, abs=0.1)  # [9, 12 s)
    straddle = 10 * np.log10((10**-3 + 10**-2) / 2)  # [4.5, 7.5 s): half and half
    assert values[45] == pytest.approx(straddle, abs=0.1)
    assert np.all(np.diff(values) >= -1e-9)  # never falls on a rising step
    assert max(values) == result.to_dict()["short_term_max_lufs"]


def test_short_term_series_is_null_where_silent_and_empty_below_three_seconds():
    x = np.concatenate([np.zeros((4 * SR, 2), np.float32), tone([(-20, 4)])])  # digital silence first
    values = measure(x, SR).to_dict()["short_term_lufs"]["values"]
    assert values[0] is None and values[-1] == pytest.approx(-20.0, abs=0.1)
    assert measure(tone([(-23, 2)]), SR).to_dict()["short_term_lufs"]["values"] == []
