"""Programme loudness, loudness range and true peak of a whole signal.

Follows ITU-R BS.1770-4 (K-weighting, gated integrated loudness, true peak
by 4x oversampling, Annex 2) with the EBU R 128 measures on top: momentary
(400 ms) and short-term (3 s) loudness as in EBU Tech 3341, and loudness
range as in EBU Tech 3342.

How it stays fast and small on a 20-minute track: each channel is read once
by a compiled loop that runs the two K-weighting biquads and sums the squared
output into 100 ms hops. Every quantity needs only those hop sums: a 400 ms
gating block with 75 % overlap is 4 consecutive hops, a 3 s short-term block
at the 10 Hz rate of Tech 3342 is 30. True peak is a second compiled pass
over fixed-size blocks. Neither pass allocates anything proportional to the
input: working memory is the hop sums (80 bytes per second of audio and
channel, ~1 MB for 20 minutes of stereo) and a C-contiguous float32/float64
input is never copied.

:class:`LoudnessMeter` gives the same measures, exactly, for a signal fed
block by block (a file read from disk, a master as it is rendered): the
filters' state and the open hop are carried from block to block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numba
import numpy as np

from workers.dsp.errors import UnprocessableAudio

# BS.1770-4 eq. 2: the -0.691 dB offset makes a 997 Hz sine at 0 dBFS on one
# channel read -3.01 LKFS once K-weighted.
_OFFSET_DB = -0.691
_ABSOLUTE_GATE_LUFS = -70.0
_RELATIVE_GATE_LU = -10.0  # BS.1770-4 integrated loudness
_LRA_RELATIVE_GATE_LU = -20.0  # Tech 3342
_LRA_PERCENTILES = (10.0, 95.0)  # Tech 3342

_HOPS_PER_SECOND = 10  # 100 ms hops: the 75 % overlap of BS.1770-4, the 10 Hz of Tech 3342
_MOMENTARY_HOPS = 4  # 400 ms
_SHORT_TERM_HOPS = 30  # 3 s

# Below 8 kHz the 1.7 kHz shelf of the K-weighting sits too close to Nyquist
# for the bilinear transform to keep its shape; no real upload is that slow.
MIN_SAMPLE_RATE = 8000

# K-weighting as analog prototypes (centre frequency in Hz, Q, gain in dB),
# the parameters that reproduce the 48 kHz coefficients of BS.1770-4 Tables 1
# and 2 through the bilinear transform (the derivation libebur128 uses).
# Re-deriving per rate keeps the response the same at 44.1, 96, 192 kHz, ...
# where reusing the 48 kHz coefficients would shift it.
_SHELF_HZ = 1681.974450955533
_SHELF_Q = 0.7071752369554196
_SHELF_GAIN_DB = 3.999843853973347
_SHELF_VB_EXPONENT = 0.4996667741545416  # mid-band gain of the fitted shelf, as a power of Vh
_HIGHPASS_HZ = 38.13547087602444
_HIGHPASS_Q = 0.5003270373238773

# BS.1770-4 Annex 2: the 48-tap interpolating FIR, one row per phase of the
# 4x oversampler, 12 taps each (rows 2 and 3 are rows 1 and 0 reversed).
_TRUE_PEAK_TAPS = np.array(
    [
        [
            0.0017089843750, 0.0109863281250, -0.0196533203125, 0.0332031250000,
            -0.0594482421875, 0.1373291015625, 0.9721679687500, -0.1022949218750,
            0.0476074218750, -0.0266113281250, 0.0148925781250, -0.0083007812500,
        ],
        [
            -0.0291748046875, 0.0292968750000, -0.0517578125000, 0.0891113281250,
            -0.1665039062500, 0.4650878906250, 0.7797851562500, -0.2003173828125,
            0.1015625000000, -0.0582275390625, 0.0330810546875, -0.0189208984375,
        ],
        [
            -0.0189208984375, 0.0330810546875, -0.0582275390625, 0.1015625000000,
            -0.2003173828125, 0.7797851562500, 0.4650878906250, -0.1665039062500,
            0.0891113281250, -0.0517578125000, 0.0292968750000, -0.0291748046875,
        ],
        [
            -0.0083007812500, 0.0148925781250, -0.0266113281250, 0.0476074218750,
            -0.1022949218750, 0.9721679687500, 0.1373291015625, -0.0594482421875,
            0.0332031250000, -0.0196533203125, 0.0109863281250, 0.0017089843750,
        ],
    ]
)  # fmt: skip
_TRUE_PEAK_TAPS_REVERSED = np.ascontiguousarray(_TRUE_PEAK_TAPS[:, ::-1])

# Samples per true-peak block: its two 8 kB working buffers stay in L1 cache,
# which is what lets the inner loop run at SIMD speed.
_TRUE_PEAK_BLOCK = 1024

# BS.1770-4 channel weights G_i by channel count, in WAV/SMPTE channel order.
# Table 4: 1.41 (+1.5 dB) for loudspeakers at 60..120 degrees azimuth (the
# surrounds), 1.0 elsewhere, 0 for LFE. 7.1's back pair (135..150 degrees)
# is therefore 1.0, unlike its side pair.
_CHANNEL_WEIGHTS: dict[int, tuple[float, ...]] = {
    1: (1.0,),  # mono, played from one loudspeaker
    2: (1.0, 1.0),  # L R
    3: (1.0, 1.0, 1.0),  # L R C
    4: (1.0, 1.0, 1.41, 1.41),  # quad: L R Ls Rs
    5: (1.0, 1.0, 1.0, 1.41, 1.41),  # 5.0: L R C Ls Rs
    6: (1.0, 1.0, 1.0, 0.0, 1.41, 1.41),  # 5.1: L R C LFE Ls Rs
    7: (1.0, 1.0, 1.0, 0.0, 1.0, 1.41, 1.41),  # 6.1: L R C LFE Cs Ls Rs
    8: (1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.41, 1.41),  # 7.1: L R C LFE Lb Rb Ls Rs
}


@dataclass(frozen=True)
class Loudness:
    """Loudness measures of one signal; None where a measure is undefined.

    Levels are absolute: LUFS for loudness, LU for the range, dBTP and dBFS
    for peaks (0 dB = full scale, 1.0).
    """

    integrated_lufs: float | None  # None when every block is gated out (silence, < 400 ms)
    loudness_range_lu: float | None  # None below 3 s or when every short-term block is gated out
    true_peak_dbtp: float | None  # max over channels; None for digital silence
    sample_peak_dbfs: float | None  # max over channels; None for digital silence
    momentary_max_lufs: float | None  # loudest 400 ms window; None below 400 ms or silence
    short_term_max_lufs: float | None  # loudest 3 s window; None below 3 s or silence
    # Short-term loudness (EBU Tech 3341, 3 s window) every SHORT_TERM_HOP_S,
    # value k for the window ending at SHORT_TERM_START_S + k * hop (LUFS;
    # -inf for digital silence). Empty below 3 s.
    short_term: np.ndarray = field(default_factory=lambda: np.empty(0), compare=False, repr=False)

    def to_dict(self) -> dict:
        """The fields by name, rounded to 0.01 dB (finer than any meter reads);
        the short-term series as ``short_term_lufs: {start_s, hop_s, values}``
        with null where the window is silent."""
        out: dict = {
            k: None if v is None else round(v, 2)
            for k, v in (
                ("integrated_lufs", self.integrated_lufs),
                ("loudness_range_lu", self.loudness_range_lu),
                ("true_peak_dbtp", self.true_peak_dbtp),
                ("sample_peak_dbfs", self.sample_peak_dbfs),
                ("momentary_max_lufs", self.momentary_max_lufs),
                ("short_term_max_lufs", self.short_term_max_lufs),
            )
        }
        out["short_term_lufs"] = {
            "start_s": SHORT_TERM_START_S,
            "hop_s": SHORT_TERM_HOP_S,
            "values": [round(float(v), 2) if np.isfinite(v) else None for v in self.short_term],
        }
        return out


#: The short-term series: one value per 100 ms hop (the 10 Hz of EBU Tech
#: 3342), the first for the window [0, 3 s).
SHORT_TERM_HOP_S = 1.0 / _HOPS_PER_SECOND
SHORT_TERM_START_S = _SHORT_TERM_HOPS / _HOPS_PER_SECOND


def measure(x: np.ndarray, sr: int) -> Loudness:
    """Measure integrated loudness, loudness range, peaks and maximum momentary
    and short-term loudness of a whole signal.

    ``x``: float32 or float64 samples, full scale = 1.0, shape ``(n,)`` for
    mono or ``(n, channels)``. Channels are in WAV/SMPTE order; 5.1 is
    L, R, C, LFE, Ls, Rs: LFE is left out of loudness (not of peaks) and the
    surrounds are weighted +1.5 dB (G = 1.41), per ITU-R BS.1770-4 Table 4.
    More than 8 channels have no known layout and are weighted 1.0 each.
    ``sr``: sample rate in Hz, at least 8000.

    - Integrated loudness (LUFS): ITU-R BS.1770-4, 400 ms blocks with 75 %
      overlap, absolute gate -70 LUFS, relative gate -10 LU.
    - Loudness range (LU): EBU Tech 3342, 3 s blocks every 100 ms, absolute
      gate -70 LUFS, relative gate -20 LU, 95th minus 10th percentile.
    - Momentary / short-term maximum (LUFS): EBU Tech 3341, the loudest
      400 ms / 3 s window, windows every 100 ms.
    - True peak (dBTP): ITU-R BS.1770-4 Annex 2, 4x oversampled, never
      reported below the sample peak. Sample peak in dBFS.

    - Short-term loudness over time (for plots): the 3 s window every
      100 ms, as ``Loudness.short_term``.

    Only whole windows count: shorter than 400 ms gives None for every
    loudness, shorter than 3 s None for loudness range and short-term max
    (and an empty series).
    Raises UnprocessableAudio for NaN or infinite samples or a sample rate
    below 8000 Hz; ValueError for non-float samples or a bad shape (a
    caller's bug, not the audio's).
    """
    frames = _as_frames(x)
    if not float(sr).is_integer() or sr < MIN_SAMPLE_RATE:
        raise UnprocessableAudio(
            f"sample rate {sr} Hz: need a whole number of Hz, at least {MIN_SAMPLE_RATE}"
        )
    sr = int(sr)
    n, channels = frames.shape
    weights = np.array(_CHANNEL_WEIGHTS.get(channels, (1.0,) * channels))

    n_hops = n * _HOPS_PER_SECOND // sr
    # Integer arithmetic, so rates that are not a multiple of 10 (11 025 Hz)
    # get hops of alternating lengths that never drift.
    hop_edges = np.arange(n_hops + 1, dtype=np.int64) * sr // _HOPS_PER_SECOND
    sos = _k_weighting_sos(sr)

    hop_energy = np.zeros(n_hops)
    sample_peak = 0.0
    for c in range(channels):
        energy, peak, bad = _k_weighted_hop_energy(frames, c, sos, hop_edges)
        if bad >= 0:
            raise UnprocessableAudio(
                f"sample {bad} of channel {c} (at {bad / sr:.3f} s) is NaN or infinite; "
                "the decoded audio is corrupt"
            )
        if weights[c]:
            hop_energy += weights[c] * energy
        sample_peak = max(sample_peak, peak)
    true_peak = 0.0
    if sample_peak > 0.0:
        for c in range(channels):
            true_peak = max(true_peak, _true_peak(frames, c, _TRUE_PEAK_TAPS_REVERSED, _TRUE_PEAK_BLOCK))
    # Annex 2's filter is not exactly interpolating (its phase 0 centre tap is
    # 0.97), so it can read a hair under a sample value the signal certainly
    # reaches; a true peak below the sample peak would be nonsense.
    true_peak = max(true_peak, sample_peak)

    return _summary(hop_energy, hop_edges, sample_peak, true_peak)


def _summary(hop_energy: np.ndarray, hop_edges: np.ndarray, sample_peak: float, true_peak: float) -> Loudness:
    """Every measure from the channel-weighted hop energies and the peaks."""
    momentary = _window_loudness(hop_energy, hop_edges, _MOMENTARY_HOPS)
    short_term = _window_loudness(hop_energy, hop_edges, _SHORT_TERM_HOPS)
    return Loudness(
        integrated_lufs=_integrated(momentary),
        loudness_range_lu=_loudness_range(short_term),
        true_peak_dbtp=_db(true_peak),
        sample_peak_dbfs=_db(sample_peak),
        momentary_max_lufs=_max_loudness(momentary),
        short_term_max_lufs=_max_loudness(short_term),
        short_term=short_term,
    )


class LoudnessMeter:
    """The measures of :func:`measure`, fed block by block: ``add(block)``
    for consecutive blocks of one signal, then ``result()``. Memory does not
    grow with the signal beyond the hop energies (80 bytes per second).

    The result equals :func:`measure` on the concatenated blocks exactly,
    whatever the block sizes: the K-weighting filters' state and the open
    hop's partial sum are carried from block to block (the same arithmetic
    in the same order), and the true-peak interpolator is fed the last 11
    samples of the previous block before each block (the signal is silent
    before the first and after the last, as in :func:`measure`).

    ``sr`` in Hz (at least 8000), ``channels`` in WAV/SMPTE order as for
    :func:`measure`. ``add`` raises UnprocessableAudio at the first
    non-finite sample, naming its index in the whole signal.
    """

    def __init__(self, sr: int, channels: int) -> None:
        if not float(sr).is_integer() or sr < MIN_SAMPLE_RATE:
            raise UnprocessableAudio(
                f"sample rate {sr} Hz: need a whole number of Hz, at least {MIN_SAMPLE_RATE}"
            )
        if channels < 1:
            raise ValueError(f"need at least one channel, got {channels}")
        self.sr = int(sr)
        self.channels = int(channels)
        self._weights = np.array(_CHANNEL_WEIGHTS.get(channels, (1.0,) * channels))
        self._sos = _k_weighting_sos(self.sr)
        self._filter_state = np.zeros((channels, 4))  # transposed direct form II, per channel
        self._open_hop = np.zeros(channels)  # partial sums of the hop being filled
        self._hops: list[np.ndarray] = []  # channel-weighted energies of finished hops
        self._hop = 0  # index of the hop being filled
        self._frames = 0
        self._sample_peak = 0.0
        self._true_peak = 0.0
        self._tp_history: np.ndarray | None = None  # last n_taps - 1 frames

    @property
    def frames(self) -> int:
        """Frames fed so far."""
        return self._frames

    def add(self, block: np.ndarray) -> None:
        """Feed the next float32/float64 (frames, channels) block (or (frames,) for mono)."""
        frames = _as_frames(block)
        if frames.shape[1] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {frames.shape[1]}")
        m = frames.shape[0]
        if m == 0:
            return
        start, end = self._frames, self._frames + m
        # Hops whose last sample is in this block: hop h is [h*sr//10, (h+1)*sr//10).
        first = self._hop
        last = first
        while (last + 1) * self.sr // _HOPS_PER_SECOND <= end:
            last += 1
        ends = np.arange(first + 1, last + 1, dtype=np.int64) * self.sr // _HOPS_PER_SECOND
        finished = np.zeros(len(ends))
        for c in range(self.channels):
            energy = np.empty(len(ends))
            acc, peak, bad = _k_weighted_block(
                frames, c, self._sos, self._filter_state[c], self._open_hop[c], ends, start, energy
            )
            if bad >= 0:
                raise UnprocessableAudio(
                    f"sample {bad} of channel {c} (at {bad / self.sr:.3f} s) is NaN or infinite; "
                    "the decoded audio is corrupt"
                )
            self._open_hop[c] = acc
            self._sample_peak = max(self._sample_peak, peak)
            if self._weights[c]:
                finished += self._weights[c] * energy
        if len(ends):
            self._hops.append(finished)
        self._hop = last
        self._true_peak_block(frames, final=False)
        self._frames = end

    def result(self) -> Loudness:
        """The measures of everything fed so far (the signal taken as ending here)."""
        if self._tp_history is not None:
            self._true_peak_block(None, final=True)
        n = self._frames
        n_hops = n * _HOPS_PER_SECOND // self.sr
        # A hop that ends on the last frame only by rounding is not a hop to measure().
        hop_energy = np.concatenate(self._hops)[:n_hops] if self._hops else np.zeros(0)
        hop_edges = np.arange(n_hops + 1, dtype=np.int64) * self.sr // _HOPS_PER_SECOND
        sample_peak = self._sample_peak
        return _summary(hop_energy, hop_edges, sample_peak, max(self._true_peak, sample_peak))

    def _true_peak_block(self, frames: np.ndarray | None, final: bool) -> None:
        t = _TRUE_PEAK_TAPS_REVERSED.shape[1] - 1
        history = self._tp_history
        if frames is None:  # the filter's ring-out after the last sample
            frames = np.zeros((0, self.channels), np.float64 if history is None else history.dtype)
        if history is None:
            history = np.zeros((t, self.channels), frames.dtype)  # silence before the signal
        ext = np.ascontiguousarray(np.concatenate([history.astype(frames.dtype, copy=False), frames]))
        # Output i of the FIR holds ext[i - t .. i]: outputs t .. len(ext) - 1 have
        # their whole history here; the ones after are the ring-out, valid only at the end.
        out = np.zeros(len(ext) + t)
        for c in range(self.channels):
            oversampled_peaks(ext, c, _TRUE_PEAK_TAPS_REVERSED, _TRUE_PEAK_BLOCK, out)
        valid = out[t:] if final else out[t : len(ext)]
        if len(valid):
            self._true_peak = max(self._true_peak, float(valid.max()))
        self._tp_history = None if final else ext[-t:].copy()


def warmup() -> None:
    """Compile the numba kernels for float32 and float64 input, so the first
    real job does not pay their JIT (~3 s cold; ~0.5 s to load numba's
    on-disk cache once it exists)."""
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, size=(MIN_SAMPLE_RATE, 2))
    measure(noise, MIN_SAMPLE_RATE)
    measure(noise.astype(np.float32), MIN_SAMPLE_RATE)


def _as_frames(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"expected float samples in [-1, 1], got {x.dtype}; scale integer PCM first")
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)  # float16, longdouble: the kernels are compiled for 32/64 bits only
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"expected samples of shape (n,) or (n, channels), got {x.shape}")
    # Channel columns are read with a stride; only a non C-ordered array
    # (a transposed view, say) is copied, to keep one compiled kernel per dtype.
    return np.ascontiguousarray(x)


@lru_cache(maxsize=16)
def _k_weighting_sos(sr: int) -> np.ndarray:
    """The two K-weighting biquads at ``sr`` Hz as rows (b0, b1, b2, a1, a2),
    a0 = 1: the high-frequency shelf, then the RLB high-pass (BS.1770-4 Annex 1)."""
    k = math.tan(math.pi * _SHELF_HZ / sr)
    vh = 10.0 ** (_SHELF_GAIN_DB / 20.0)
    vb = vh**_SHELF_VB_EXPONENT
    a0 = 1.0 + k / _SHELF_Q + k * k
    shelf = [
        (vh + vb * k / _SHELF_Q + k * k) / a0,
        2.0 * (k * k - vh) / a0,
        (vh - vb * k / _SHELF_Q + k * k) / a0,
        2.0 * (k * k - 1.0) / a0,
        (1.0 - k / _SHELF_Q + k * k) / a0,
    ]
    k = math.tan(math.pi * _HIGHPASS_HZ / sr)
    a0 = 1.0 + k / _HIGHPASS_Q + k * k
    # BS.1770-4 gives the high-pass numerator as (1, -2, 1) unnormalised: its
    # passband gain is then ~1.005 (+0.04 dB), which the -0.691 offset assumes.
    highpass = [1.0, -2.0, 1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / _HIGHPASS_Q + k * k) / a0]
    return np.array([shelf, highpass])


@numba.njit(cache=True)
def _k_weighted_hop_energy(frames, c, sos, hop_edges):
    """Sum of squared K-weighted samples of channel ``c`` in each hop, the
    channel's sample peak, and the index of its first non-finite sample (-1
    if none). Plain IEEE arithmetic (no fastmath), so NaN checks hold."""
    n = frames.shape[0]
    n_hops = hop_edges.shape[0] - 1
    energy = np.zeros(n_hops)
    b00, b01, b02, a01, a02 = sos[0, 0], sos[0, 1], sos[0, 2], sos[0, 3], sos[0, 4]
    b10, b11, b12, a11, a12 = sos[1, 0], sos[1, 1], sos[1, 2], sos[1, 3], sos[1, 4]
    s00 = s01 = s10 = s11 = 0.0  # transposed direct form II state, filters start at rest
    peak = 0.0
    for h in range(n_hops):
        acc = 0.0
        for i in range(hop_edges[h], hop_edges[h + 1]):
            v = np.float64(frames[i, c])
            a = abs(v)
            if not a <= 1.7976931348623157e308:  # NaN fails every comparison
                return energy, peak, i
            peak = max(peak, a)
            y = b00 * v + s00
            s00 = b01 * v - a01 * y + s01
            s01 = b02 * v - a02 * y
            w = b10 * y + s10
            s10 = b11 * y - a11 * w + s11
            s11 = b12 * y - a12 * w
            acc += w * w
        energy[h] = acc
    # The tail after the last whole hop feeds no loudness window, only peaks.
    for i in range(hop_edges[n_hops], n):
        a = abs(np.float64(frames[i, c]))
        if not a <= 1.7976931348623157e308:
            return energy, peak, i
        peak = max(peak, a)
    return energy, peak, -1


@numba.njit(cache=True)
def _k_weighted_block(frames, c, sos, state, acc, ends, start, energy):
    """One block of channel ``c`` for :class:`LoudnessMeter`: the K-weighting
    biquads from ``state`` (s00, s01, s10, s11, updated in place), the
    squared output summed onto ``acc``, the sum stored into ``energy[k]`` and
    restarted at each hop end ``ends[k]`` (absolute frame indexes, frame
    ``start`` being the block's first). Returns the open hop's sum, the
    block's sample peak and the absolute index of its first non-finite
    sample (-1 if none). The same arithmetic as ``_k_weighted_hop_energy``."""
    n = frames.shape[0]
    b00, b01, b02, a01, a02 = sos[0, 0], sos[0, 1], sos[0, 2], sos[0, 3], sos[0, 4]
    b10, b11, b12, a11, a12 = sos[1, 0], sos[1, 1], sos[1, 2], sos[1, 3], sos[1, 4]
    s00, s01, s10, s11 = state[0], state[1], state[2], state[3]
    peak = 0.0
    k = 0
    n_ends = ends.shape[0]
    for i in range(n):
        v = np.float64(frames[i, c])
        a = abs(v)
        if not a <= 1.7976931348623157e308:  # NaN fails every comparison
            return acc, peak, start + i
        peak = max(peak, a)
        y = b00 * v + s00
        s00 = b01 * v - a01 * y + s01
        s01 = b02 * v - a02 * y
        w = b10 * y + s10
        s10 = b11 * y - a11 * w + s11
        s11 = b12 * y - a12 * w
        acc += w * w
        if k < n_ends and start + i + 1 == ends[k]:
            energy[k] = acc
            acc = 0.0
            k += 1
    state[0], state[1], state[2], state[3] = s00, s01, s10, s11
    return acc, peak, -1


# fastmath lets LLVM vectorise the 4-phase dot products; safe because the
# energy pass has already rejected NaN/inf input.
@numba.njit(cache=True, fastmath=True)
def oversampled_peaks(frames, c, reversed_taps, block, out):
    """Raise ``out[i]`` (length n + n_taps - 1) to the largest absolute value
    of the 4 phases of output ``i`` of channel ``c`` upsampled 4x by a
    4-phase FIR, given as (phase, tap) with the taps in reverse order (tap k
    multiplies ``history[i + k]``: ascending indexes are what the loop
    vectoriser needs), processed ``block`` samples at a time. The signal is
    taken as silent before and after, so the filter's ring-out counts too.
    Output ``i`` sits between input samples ``i - 6`` and ``i - 5`` (12 taps).
    Also used by the mastering limiter, so that it sees what this meter reads."""
    n = frames.shape[0]
    n_taps = reversed_taps.shape[1]
    history = np.zeros(block + n_taps - 1)  # previous n_taps-1 samples, then the block
    for start in range(0, n + n_taps - 1, block):
        m = min(block, n + n_taps - 1 - start)
        for j in range(n_taps - 1):
            history[j] = history[block + j] if start > 0 else 0.0
        for j in range(m):
            history[n_taps - 1 + j] = frames[start + j, c] if start + j < n else 0.0
        for i in range(m):
            y0 = y1 = y2 = y3 = 0.0
            for k in range(n_taps):
                v = history[i + k]
                y0 += reversed_taps[0, k] * v
                y1 += reversed_taps[1, k] * v
                y2 += reversed_taps[2, k] * v
                y3 += reversed_taps[3, k] * v
            top = max(max(abs(y0), abs(y1)), max(abs(y2), abs(y3)))
            if top > out[start + i]:
                out[start + i] = top


def _true_peak(frames, c, reversed_taps, block, chunk=1 << 20):
    """Largest absolute value of channel ``c`` upsampled 4x, in bounded
    memory: chunks of ``chunk`` outputs, each fed the n_taps - 1 samples
    before it, keep only the outputs whose whole history they hold."""
    n = frames.shape[0]
    t = reversed_taps.shape[1] - 1
    out = np.zeros(chunk + 2 * t)
    peak = 0.0
    for s in range(0, max(n, 1), chunk):
        a, b = max(0, s - t), min(n, s + chunk)
        o = out[: b - a + t]
        o[:] = 0.0
        oversampled_peaks(frames[a:b], c, reversed_taps, block, o)
        valid = o[s - a :] if b == n else o[s - a : b - a]  # the last chunk keeps the ring-out
        if len(valid):
            peak = max(peak, float(valid.max()))
    return peak


def _window_loudness(hop_energy: np.ndarray, hop_edges: np.ndarray, hops: int) -> np.ndarray:
    """Loudness (LUFS, -inf for silence) of every window of ``hops`` hops,
    one window per hop: BS.1770-4 eq. 4 on each window's mean square."""
    if len(hop_energy) < hops:
        return np.empty(0)
    # Summing each window afresh (at most 30 hops) rather than differencing a
    # cumulative sum keeps quiet windows exact next to loud ones.
    energy = np.lib.stride_tricks.sliding_window_view(hop_energy, hops).sum(axis=1)
    samples = hop_edges[hops:] - hop_edges[:-hops]
    with np.errstate(divide="ignore"):
        return _OFFSET_DB + 10.0 * np.log10(energy / samples)


def _integrated(block_lufs: np.ndarray) -> float | None:
    """BS.1770-4 eq. 7: the mean power of the 400 ms blocks above both gates."""
    gated = block_lufs[block_lufs > _ABSOLUTE_GATE_LUFS]
    if gated.size == 0:
        return None
    relative_gate = _power_mean(gated) + _RELATIVE_GATE_LU
    return _power_mean(gated[gated > relative_gate])


def _loudness_range(short_term_lufs: np.ndarray) -> float | None:
    """EBU Tech 3342: spread of the gated short-term loudness distribution."""
    gated = short_term_lufs[short_term_lufs > _ABSOLUTE_GATE_LUFS]
    if gated.size == 0:
        return None
    gated = gated[gated > _power_mean(gated) + _LRA_RELATIVE_GATE_LU]
    low, high = np.percentile(gated, _LRA_PERCENTILES)
    return float(high - low)


def _power_mean(lufs: np.ndarray) -> float:
    # The -0.691 offsets cancel: mean power in LUFS is the mean of 10^(L/10).
    return float(10.0 * np.log10(np.mean(10.0 ** (lufs / 10.0))))


def _max_loudness(lufs: np.ndarray) -> float | None:
    if lufs.size == 0 or not np.isfinite(top := float(lufs.max())):
        return None
    return top


def _db(amplitude: float) -> float | None:
    return 20.0 * math.log10(amplitude) if amplitude > 0.0 else None
