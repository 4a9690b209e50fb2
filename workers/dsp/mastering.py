"""Mastering: loudness normalisation with gentle dynamics control under a
true-peak ceiling.

The contract: the output, re-measured by :func:`workers.dsp.loudness.measure`
(ITU-R BS.1770-4 integrated loudness; true peak 4x oversampled with the
Annex 2 filter), is within ±0.5 LU of ``target_lufs`` and its true peak is
never above ``ceiling_dbtp``. The chain, all stereo-linked (one gain for
every channel, so the image does not move):

1. **Need.** The peak-to-loudness ratio PLR = true peak − integrated
   loudness is what a ceiling and a target allow together: the output's
   PLR can be at most ``ceiling − target``. The excess of the input's PLR
   over that is how much the peaks must come down relative to the
   loudness. None (PLR already fits): the chain is a plain gain, the most
   transparent master there is.
2. **Bus compressor**, only when the excess is over 3 dB (a limiter alone
   is inaudible up to ~3 dB of peak reduction). Feed-forward, 2:1, 6 dB
   soft knee, 10 ms attack, 200 ms release, the level detector on the
   loudest channel's peak envelope (Giannoulis, Massberg & Reiss, "Digital
   dynamic range compressor design — a tutorial and analysis", JAES 60(6),
   2012: the log-domain static curve of their eq. 4). Its threshold sits
   where the envelope's 99th percentile is compressed by ``c`` dB,
   ``c = 0.3 · (excess − 3)``, at most 3 dB: a little glue on the loud
   sections, which also brings quiet passages up relative to loud ones. It
   does not lower the peaks (transients pass its 10 ms attack: on a
   generated song, 2-6 dB of it changed the loudness reachable under the
   limiter by < 0.1 LU either way); the limiter does that.
3. **Make-up gain** ``G`` (dB), found by iteration (below).
4. **True-peak limiter** with look-ahead at ``ceiling − 0.02`` dB. Its side
   chain is the very interpolator of the meter (BS.1770-4 Annex 2, 4
   phases × 12 taps), evaluated on both sides of every sample, so what it
   keeps under the threshold is what the meter reads. The gain curve is the
   usual offline construction: the needed gain min(1, T / peak) is held
   (sliding minimum) over ``[n − 8, n + L + 8]`` samples, released
   exponentially (50 ms) and smoothed by an L-sample moving average, L =
   2 ms. Each averaged value is a mean of minima over windows that contain
   the sample, so the gain never exceeds what the sample needs; the 8-sample
   hold on both sides keeps the gain flat across the 12-tap interpolation
   window of every peak, so the product's interpolated peaks are the
   scaled peaks of the input.
5. **Iteration.** The output is re-measured with our meter; ``G`` moves by
   the loudness error divided by the secant slope of loudness over ``G``
   (limiting makes it < 1), until within 0.05 LU: typically 1 round (plain
   gain) to 4, each a limiter pass and a measurement. Loudness is not
   always monotonic in ``G``: as the limited chorus stops growing, a quiet
   verse may climb over the relative gate and pull the integrated value
   down; the round closest to the target is kept. A last check scales the
   output down if its measured true peak is above the ceiling (float32
   rounding; not seen in practice).

**When the target cannot be reached.** The limiter is allowed at most 12 dB
of gain reduction on the top 0.1 % of the side chain (the strongest hits;
an isolated click beyond them may be limited harder). Past that, a louder
result would be audibly distorted, so ``G`` stops there. The ceiling is
always kept; if the output is then more than 0.5 LU under the target the
function raises :class:`UnprocessableAudio` naming the loudest level this track
reaches under that ceiling (e.g. target -6 LUFS with ceiling -3 dBTP on a
very dynamic track). When ``target + (true peak − loudness of the input) ≤
ceiling`` no limiting is needed: the result is a plain gain, exact to 0.01
LU.

**Memory.** :func:`master_stream` works on a block source (a file read
from disk in blocks) in passes, never holding the track: one to measure it,
two for the compressor's percentile, one to measure the compressed signal,
one that computes the limiter's side chain into a temporary file (4 bytes
per frame) and one more for its percentile, then one per round (compress,
limit, measure on the fly) and a last one that renders the master into the
encoder. The compressor's envelope, the limiter's window minimum, release
and moving average carry their state from block to block, and the
percentiles are exact (two histogram passes over the bits of the float32
values), so the samples are those of the whole-array computation, whatever
the block size; :func:`master` is the same code over an in-memory source.

Why not pedalboard (installed, and tried; numbers in bench/docs/mastering.md):
its ``Compressor`` detects each channel on its own, which moves the stereo
image when one side is louder; its ``BrickwallLimiter(true_peak=True)``
still lets inter-sample peaks over the ceiling by our meter and has no way
to hit a loudness target. Since the limiter must hold the ceiling by *our*
meter, it is built here on the meter's own interpolator, in numba like the
meter.

No EQ and no DC removal: the spectrum is left as it came.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

import numba
import numpy as np

from workers.dsp import loudness
from workers.dsp.blocks import BLOCK_FRAMES, ArraySource, BlockSource, FrameBuffer, concatenate
from workers.dsp.errors import OptionOutOfRange, UnprocessableAudio

# Option bounds (proposed for the API's validation too): quieter than -30
# LUFS is no use for a master, louder than -6 LUFS is beyond what a limiter
# reaches without audible distortion on most music; a ceiling above 0 dBTP
# clips on playback, below -6 dBTP wastes headroom no codec needs.
TARGET_LUFS_RANGE = (-30.0, -6.0)
CEILING_DBTP_RANGE = (-6.0, 0.0)

TOLERANCE_LU = 0.5  # the contract
_AIM_LU = 0.05  # iterate until this close
_MAX_ROUNDS = 8
_LIMITER_MARGIN_DB = 0.02  # limiter threshold under the ceiling: float32 rounding of the output
_MAX_LIMITING_DB = 12.0  # gain reduction allowed on the top 0.1 % of the side chain
_LIMITING_PERCENTILE = 99.9
_LOOKAHEAD_S = 0.002  # attack ramp of the limiter
_HOLD_SAMPLES = 8  # > half the 12-tap interpolator: flat gain across every peak's window
_RELEASE_S = 0.05

_COMPRESS_ABOVE_DB = 3.0  # excess PLR that the limiter handles alone
_COMPRESS_SHARE = 0.3  # dB of compression per dB of excess beyond that
_MAX_COMPRESSION_DB = 3.0
_RATIO = 2.0
_KNEE_DB = 6.0
_ATTACK_S = 0.010
_COMP_RELEASE_S = 0.200
_COMP_PERCENTILE = 99.0

# The meter's interpolator (BS.1770-4 Annex 2), taps reversed for the same
# vectorisable inner loop. Shared, not copied: the limiter must see exactly
# what the meter reads.
_TAPS_REVERSED = loudness._TRUE_PEAK_TAPS_REVERSED
_BLOCK = 1024
_WARMUP_FRAMES = 8000  # 1 s at the lowest rate the meter takes


@dataclass
class Mastered:
    """A mastered signal and its loudness before and after.

    ``input`` and ``output`` hold ``integrated_lufs`` (LUFS) and
    ``true_peak_dbtp`` (dBTP) by :func:`workers.dsp.loudness.measure`;
    ``gain_db`` is the make-up gain applied after the compressor and before
    the limiter (dB), including any final trim.
    """

    audio: np.ndarray  # float32, the input's shape; the sample rate is the input's
    input: dict
    output: dict
    gain_db: float

    def to_dict(self) -> dict:
        """JSON-ready, without the audio; levels rounded to 0.01 dB."""
        return _summary_dict(self.input, self.output, self.gain_db)


def _summary_dict(inp: dict, out: dict, gain_db: float) -> dict:
    return {
        "input": {k: _round(v) for k, v in inp.items()},
        "output": {k: _round(v) for k, v in out.items()},
        "gain_db": round(gain_db, 2),
    }


@dataclass
class MasterStream:
    """A master of a :class:`~workers.dsp.blocks.BlockSource`, decided but
    not held: :meth:`blocks` renders it from the source, block by block (one
    more pass), as float32 (frames, channels) at the source's rate. Fields as
    :class:`Mastered`'s."""

    source: BlockSource
    chain: _Chain
    input: dict
    output: dict
    gain_db: float

    def to_dict(self) -> dict:
        """JSON-ready, without the audio; levels rounded to 0.01 dB."""
        return _summary_dict(self.input, self.output, self.gain_db)

    def blocks(self) -> Iterator[np.ndarray]:
        return self.chain.render(self.source)


def master(
    x: np.ndarray,
    sr: int,
    target_lufs: float = -14.0,
    ceiling_dbtp: float = -1.0,
    progress: Callable[[float], None] | None = None,
) -> Mastered:
    """Bring ``x`` to ``target_lufs`` integrated loudness (ITU-R BS.1770-4)
    with its true peak at most ``ceiling_dbtp`` (dBTP, BS.1770-4 Annex 2).

    ``x``: float samples, full scale 1.0, shape ``(n,)`` or ``(n, channels)``;
    ``sr``: sample rate in Hz (at least 8000). The result's audio is float32
    of the same shape at the same rate. ``progress``, if given, is called
    with the fraction done (0..1) a few times. Deterministic. The
    whole-array form of :func:`master_stream` (the same samples).

    Raises :class:`OptionOutOfRange` for options outside :data:`TARGET_LUFS_RANGE` /
    :data:`CEILING_DBTP_RANGE`; :class:`UnprocessableAudio` for audio with no measurable loudness
    (silence, shorter than 0.4 s), non-finite samples or a sample rate below
    8000 Hz, and when the target is not reachable within ±0.5 LU under the
    ceiling without more than 12 dB of limiting (see the module docstring).
    """
    _check_option("target_lufs", target_lufs, TARGET_LUFS_RANGE, "LUFS")
    _check_option("ceiling_dbtp", ceiling_dbtp, CEILING_DBTP_RANGE, "dBTP")
    shape = np.shape(x)
    try:
        before = loudness.measure(x, sr)  # of x as given (float64 stays float64)
    except UnprocessableAudio as e:
        raise UnprocessableAudio(f"Cannot master this audio: {e.message}") from None
    frames = np.asarray(x, np.float32).reshape(shape[0], -1)
    source = ArraySource(frames, sr)
    done = master_stream(source, target_lufs, ceiling_dbtp, progress, before=before)
    audio = concatenate(done.blocks(), source.frames, source.channels)
    return Mastered(audio=audio.reshape(shape), input=done.input, output=done.output, gain_db=done.gain_db)


def master_stream(
    source: BlockSource,
    target_lufs: float = -14.0,
    ceiling_dbtp: float = -1.0,
    progress: Callable[[float], None] | None = None,
    *,
    before: loudness.Loudness | None = None,
    scratch_dir: str | None = None,
) -> MasterStream:
    """:func:`master` of audio read in blocks, in memory that does not grow
    with its length: every step is a pass over the source (measuring it,
    the compressor's level percentile, the limiter's side-chain percentile,
    then one pass per round of the iteration, each limiting and measuring
    on the fly), and the result is rendered by one more pass
    (:meth:`MasterStream.blocks`). The compressor's envelope and the
    limiter's gain are recursions whose state is carried from block to
    block, and the percentiles are exact (two histogram passes over the
    bits of the float32 values), so the samples are those of the
    whole-array computation, whatever the block size.

    ``before``: the source's loudness if already measured. ``scratch_dir``:
    where the limiter keeps its side chain (4 bytes per frame, a temporary
    file deleted with the result; default: the system's temporary
    directory). Raises as :func:`master`.
    """
    _check_option("target_lufs", target_lufs, TARGET_LUFS_RANGE, "LUFS")
    _check_option("ceiling_dbtp", ceiling_dbtp, CEILING_DBTP_RANGE, "dBTP")
    report = progress or (lambda _fraction: None)
    sr, channels = int(source.sample_rate), int(source.channels)
    if before is None:
        try:
            before = _measure(source.blocks(), sr, channels)
        except UnprocessableAudio as e:
            raise UnprocessableAudio(f"Cannot master this audio: {e.message}") from None
    if before.integrated_lufs is None or before.true_peak_dbtp is None:
        raise UnprocessableAudio(
            "The audio has no measurable loudness (silent, or shorter than 0.4 s): nothing to master"
        )
    report(0.1)

    excess = (before.true_peak_dbtp - before.integrated_lufs) - (ceiling_dbtp - target_lufs)
    compression_db = min(_MAX_COMPRESSION_DB, _COMPRESS_SHARE * (excess - _COMPRESS_ABOVE_DB))
    compressor = None
    start_lufs, start_peak = before.integrated_lufs, before.true_peak_dbtp
    if compression_db > 0:
        compressor = _Compressor.fit(source, compression_db)
        # The compressed signal is written once and read back by every later
        # pass (the limiter's input), as the whole-array code kept it.
        meter = loudness.LoudnessMeter(sr, channels)
        source = _Spill.write(compressor.blocks(source.blocks()), sr, channels, scratch_dir, meter.add)
        start_lufs, start_peak = _levels(meter.result())
    report(0.3)

    limiter = _Limiter(source, ceiling_dbtp - _LIMITER_MARGIN_DB, start_peak, scratch_dir)
    gain_db = limiter.clamp(target_lufs - start_lufs)
    tried: list[tuple[float, float]] = []  # (gain dB, output LUFS)
    best: tuple[_Chain, loudness.Loudness, float, float] | None = None  # chain, loudness, error, gain
    for round_ in range(_MAX_ROUNDS):
        chain = _Chain(limiter, gain_db, 0.0)
        after = _measure(chain.render(source), sr, channels)
        out_lufs, out_peak = _levels(after)
        if out_peak > ceiling_dbtp:
            # Not seen in practice (the limiter aims 0.02 dB lower); the
            # meter is linear, so scaling down lands exactly on the ceiling.
            chain = _Chain(limiter, gain_db, ceiling_dbtp - out_peak - 0.001)
            after = _measure(chain.render(source), sr, channels)
            out_lufs, out_peak = _levels(after)
        error = target_lufs - out_lufs
        if best is None or abs(error) < abs(best[2]):
            best = (chain, after, error, gain_db + chain.trim_db)
        report(0.3 + 0.65 * (round_ + 1) / _MAX_ROUNDS)
        if abs(error) <= _AIM_LU or (error > 0 and gain_db >= limiter.max_gain_db):
            break
        tried.append((gain_db, out_lufs))
        slope = 1.0
        if len(tried) >= 2 and tried[-1][0] != tried[-2][0]:
            # Limiting makes loudness grow slower than the gain: the secant
            # slope (< 1) gets there in 2-3 rounds where a slope of 1 creeps.
            slope = (tried[-1][1] - tried[-2][1]) / (tried[-1][0] - tried[-2][0])
            slope = min(1.5, max(0.05, slope))
        gain_db = limiter.clamp(gain_db + error / slope)

    assert best is not None  # _MAX_ROUNDS >= 1
    chain, after, error, gain_db = best
    if abs(error) > TOLERANCE_LU:
        raise UnprocessableAudio(
            f"Cannot reach {target_lufs:g} LUFS under a {ceiling_dbtp:g} dBTP ceiling without "
            f"distorting this audio: the loudest clean master is {after.integrated_lufs:.1f} LUFS. "
            "Choose a quieter target or a higher ceiling",
        )
    report(1.0)
    return MasterStream(
        source=source,  # the compressed signal when compressed
        chain=chain,
        input={"integrated_lufs": before.integrated_lufs, "true_peak_dbtp": before.true_peak_dbtp},
        output={"integrated_lufs": after.integrated_lufs, "true_peak_dbtp": after.true_peak_dbtp},
        gain_db=float(gain_db),
    )


def _levels(m: loudness.Loudness) -> tuple[float, float]:
    """(integrated LUFS, true peak dBTP) of audio that has both: a gain or
    limiter never makes measurable audio silent."""
    if m.integrated_lufs is None or m.true_peak_dbtp is None:
        raise UnprocessableAudio("The audio became silent while mastering; nothing to master")
    return m.integrated_lufs, m.true_peak_dbtp


def _measure(blocks: Iterator[np.ndarray], sr: int, channels: int) -> loudness.Loudness:
    meter = loudness.LoudnessMeter(sr, channels)
    for block in blocks:
        meter.add(block)
    return meter.result()


def _check_option(name: str, value: float, bounds: tuple[float, float], unit: str) -> None:
    lo, hi = bounds
    try:
        ok = lo <= float(value) <= hi  # False for NaN
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise OptionOutOfRange(name, f"{name} must be between {lo:g} and {hi:g} {unit}, got {value!r}")


def _round(v: float | None) -> float | None:
    return None if v is None else round(float(v), 2)


@dataclass
class _Chain:
    """Make-up gain into the limiter, final trim (dB), on the (compressed) source."""

    limiter: _Limiter
    gain_db: float
    trim_db: float

    def render(self, source: BlockSource) -> Iterator[np.ndarray]:
        blocks = source.blocks()
        trim = np.float32(10.0 ** (self.trim_db / 20.0))
        for out in self.limiter.blocks(blocks, self.gain_db):
            if self.trim_db:
                out *= trim
            yield out


class _Spill:
    """float32 frames kept in an unnamed temporary file (gone when closed or
    collected) and read back in blocks: a :class:`BlockSource` when
    ``channels`` > 0, a plain series when 0. Each reader has its own offset
    (pread), so two passes may read it at once."""

    def __init__(self, file: IO[bytes], sample_rate: int, frames: int, channels: int) -> None:
        self._file = file
        self.sample_rate = sample_rate
        self.frames = frames
        self.channels = channels

    @classmethod
    def write(
        cls,
        blocks: Iterator[np.ndarray],
        sample_rate: int,
        channels: int,
        scratch_dir: str | None,
        tap: Callable[[np.ndarray], None] | None = None,
    ) -> _Spill:
        """Write ``blocks`` (``tap`` sees each on the way)."""
        file = tempfile.TemporaryFile(prefix="audioq-master-", dir=scratch_dir)  # noqa: SIM115 - kept open
        frames = 0
        for block in blocks:
            block = np.ascontiguousarray(block, np.float32)
            if tap is not None:
                tap(block)
            file.write(block.data)
            frames += len(block)
        file.flush()
        return cls(file, sample_rate, frames, channels)

    def blocks(self, size: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
        width = max(1, self.channels)
        fd = self._file.fileno()
        for a in range(0, self.frames, size):
            m = min(size, self.frames - a)
            out = np.empty((m, self.channels) if self.channels else m, np.float32)
            got = os.preadv(fd, [out.data.cast("B")], a * width * 4)
            if got != out.nbytes:
                raise OSError(f"short read from a temporary file ({got} of {out.nbytes} bytes)")
            yield out


# --------------------------------------------------------------------------- percentiles in passes


def _stream_percentile(values: Callable[[], Iterator[np.ndarray]], q: float) -> tuple[float, float]:
    """``(np.percentile(v, q), v.max())`` of the concatenation of the
    non-negative float32 arrays that ``values()`` yields, exactly, in two
    passes and 1 MB: positive float32 values sort as their bit patterns, so
    a histogram of the upper 16 bits finds the bins of the two order
    statistics numpy interpolates between, and a histogram of the lower 16
    bits inside those bins finds them exactly. Then numpy's own 'linear'
    interpolation (Hyndman & Fan's method 7) between them."""
    high = np.zeros(1 << 16, np.int64)
    n = 0
    top = np.float32(0.0)
    for v in values():
        if len(v):
            bits = (v + np.float32(0.0)).view(np.uint32)  # + 0: no -0.0
            high += np.bincount(bits >> 16, minlength=1 << 16)
            n += len(v)
            top = max(top, v.max())
    if n == 0:
        raise ValueError("no values")
    # As numpy.percentile (method 'linear', a Python float q).
    quantile = np.true_divide(q, 100)
    virtual = n * quantile + (1 + quantile * (1 - 1 - 1)) - 1
    lo = int(np.floor(virtual))
    gamma = float(virtual - lo)
    if virtual >= n - 1:
        lo, gamma = n - 1, 0.0
    elif virtual < 0:
        lo, gamma = 0, 0.0
    ranks = (lo, min(lo + 1, n - 1))
    cum = np.cumsum(high)
    bins = [int(np.searchsorted(cum, r, side="right")) for r in ranks]
    low = {b: np.zeros(1 << 16, np.int64) for b in set(bins)}
    for v in values():
        if len(v):
            bits = (v + np.float32(0.0)).view(np.uint32)
            for b, counts in low.items():
                inside = bits[(bits >> 16) == b]
                if len(inside):
                    counts += np.bincount(inside & 0xFFFF, minlength=1 << 16)
    found = []
    for r, b in zip(ranks, bins, strict=True):
        before_bin = int(cum[b - 1]) if b else 0
        k = int(np.searchsorted(np.cumsum(low[b]), r - before_bin, side="right"))
        found.append(np.array([(b << 16) | k], np.uint32).view(np.float32)[0])
    a, b = found
    diff = b - a
    value = b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma
    return float(value), float(top)


# --------------------------------------------------------------------------- compressor


class _Compressor:
    """Stereo-linked 2:1 soft-knee compression whose threshold puts
    ``amount_db`` of gain reduction at the 99th percentile of the level
    envelope (found by :meth:`fit`, two passes over the source)."""

    def __init__(self, sr: int, threshold_db: float) -> None:
        self.attack = math.exp(-1.0 / (_ATTACK_S * sr))
        self.release = math.exp(-1.0 / (_COMP_RELEASE_S * sr))
        self.threshold_db = threshold_db
        self.slope = 1.0 - 1.0 / _RATIO

    @classmethod
    def fit(cls, source: BlockSource, amount_db: float) -> _Compressor:
        c = cls(source.sample_rate, 0.0)

        def every_4th() -> Iterator[np.ndarray]:
            # Every 4th frame is plenty for a percentile of a smooth envelope.
            pos = 0
            for env in c.envelope(source.blocks()):
                yield env[(-pos) % 4 :: 4]
                pos += len(env)

        loud, _ = _stream_percentile(every_4th, _COMP_PERCENTILE)
        # Above the knee the reduction is slope * (level - threshold).
        c.threshold_db = 20.0 * math.log10(loud) - amount_db / c.slope
        return c

    def envelope(self, blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        e = 0.0
        for block in blocks:
            env, e = _peak_envelope(block, self.attack, self.release, e)
            yield env

    def blocks(self, blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """The compressed signal. The gain curve is evaluated every 16 frames
        and interpolated towards the next evaluation, so a block's last
        frames wait for the next block's envelope."""
        e = 0.0
        frames = env = None
        step = _COMP_STEP
        for block in blocks:
            env_b, e = _peak_envelope(block, self.attack, self.release, e)
            if frames is None:
                frames, env = block, env_b
            else:
                frames, env = np.concatenate([frames, block]), np.concatenate([env, env_b])
            ready = (len(env) - 1) // step * step  # groups whose next evaluation is known
            if ready:
                yield _apply_compression(
                    frames[:ready], env[: ready + 1], self.threshold_db, self.slope, _KNEE_DB, step
                )
                frames, env = frames[ready:], env[ready:]
        if frames is not None and len(frames):
            yield _apply_compression(frames, env, self.threshold_db, self.slope, _KNEE_DB, step)


_COMP_STEP = 16


@numba.njit(cache=True)
def _peak_envelope(frames, attack, release, e):
    """One-pole peak follower of the loudest channel's magnitude, from state
    ``e``: rises with the ``attack`` coefficient, falls with ``release``.
    Returns the envelope and the state after the block."""
    n, channels = frames.shape
    env = np.empty(n, np.float32)
    for i in range(n):
        a = 0.0
        for c in range(channels):
            a = max(a, abs(np.float64(frames[i, c])))
        coef = attack if a > e else release
        e = coef * e + (1.0 - coef) * a
        env[i] = e
    return env, e


@numba.njit(cache=True, fastmath=True)
def _apply_compression(frames, env, threshold_db, slope, knee_db, step):
    """Giannoulis et al. (2012) eq. 4, the soft-knee static curve, on the
    envelope in dB. The curve is evaluated every ``step`` frames (0.4 ms at
    44.1 kHz, far below the 10 ms attack) and the gain interpolated linearly
    towards the next evaluation, ``env[min(start + step, len(env) - 1)]``
    (``env`` may run one frame past ``frames``): a pow per sample would cost
    more than the rest of the compressor."""
    n, channels = frames.shape
    last = env.shape[0] - 1
    out = np.empty_like(frames)
    for start in range(0, n, step):
        g_start = _compressor_curve(env[start], threshold_db, slope, knee_db)
        g_next = _compressor_curve(env[min(start + step, last)], threshold_db, slope, knee_db)
        for i in range(start, min(start + step, n)):
            g = g_start + (g_next - g_start) * ((i - start) / step)
            for c in range(channels):
                out[i, c] = frames[i, c] * g
    return out


@numba.njit(cache=True, fastmath=True)
def _compressor_curve(env, threshold_db, slope, knee_db):
    """Linear gain of the static curve for an envelope value (full scale 1)."""
    if env <= 0.0:
        return 1.0
    over = 20.0 * math.log10(env) - threshold_db
    if over <= -knee_db / 2:
        return 1.0
    if over >= knee_db / 2:
        return 10.0 ** (-slope * over / 20.0)
    return 10.0 ** (-slope * (over + knee_db / 2) ** 2 / (40.0 * knee_db))


# --------------------------------------------------------------------------- limiter


class _Limiter:
    """The look-ahead true-peak limiter of one (compressed) source at a
    threshold in dBTP. Its side chain (4 bytes per frame) is computed once,
    when a gain first needs limiting, and kept in a temporary file in
    ``scratch_dir``: every pass reads it back in blocks, as the old
    whole-array limiter reused its array, instead of running the 4x
    interpolator again."""

    def __init__(
        self,
        source: BlockSource,
        threshold_db: float,
        true_peak_db: float,
        scratch_dir: str | None = None,
    ) -> None:
        self.source = source
        sr = source.sample_rate
        self.threshold_db = threshold_db
        self.true_peak_db = true_peak_db  # of the compressed source, by the meter
        self.lookahead = max(1, round(_LOOKAHEAD_S * sr))
        self.release = math.exp(-1.0 / (_RELEASE_S * sr))
        self.scratch_dir = scratch_dir
        self._spill: _Spill | None = None
        self._max_gain_db: float | None = None

    def needed(self, gain_db: float) -> bool:
        return gain_db + self.true_peak_db > self.threshold_db

    def _peaks(self, size: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
        """The side chain, frame by frame from the start, in blocks of ``size``."""
        if self._spill is None:
            peaks = (p for _, p in _side_chain(self.source.blocks()))
            self._spill = _Spill.write(peaks, self.source.sample_rate, 0, self.scratch_dir)
        yield from self._spill.blocks(size)

    @property
    def max_gain_db(self) -> float:
        """The gain that takes the top 0.1 % of the side chain 12 dB over
        the threshold: the most limiting allowed."""
        if self._max_gain_db is None:

            def every_4th() -> Iterator[np.ndarray]:
                # Every 4th frame is plenty: the side chain is smooth at that scale.
                for peaks in self._peaks(1 << 18):  # a multiple of 4
                    yield peaks[::4]

            loud, top = _stream_percentile(every_4th, _LIMITING_PERCENTILE)
            loud = loud or top
            self._max_gain_db = _MAX_LIMITING_DB + self.threshold_db - 20.0 * math.log10(loud)
        return self._max_gain_db

    def clamp(self, gain_db: float) -> float:
        return min(gain_db, self.max_gain_db) if self.needed(gain_db) else gain_db

    def blocks(self, blocks: Iterator[np.ndarray], gain_db: float) -> Iterator[np.ndarray]:
        """``blocks`` (the compressed source) at ``gain_db``, limited.

        The gain of frame n (:func:`_limiter_gain`) needs the side chain up
        to n + lookahead - 1 + hold: frames wait that long (~2.3 ms) in a
        buffer. The window minimum is taken over the last ``w - 1`` values
        carried plus the new ones; the release and the moving average carry
        their state."""
        scale = 10.0 ** (gain_db / 20.0)
        if not self.needed(gain_db):
            for block in blocks:
                yield block * np.float32(scale)
            return
        threshold = 10.0 ** (self.threshold_db / 20.0)
        self.max_gain_db  # noqa: B018 - the side chain exists before the input is read
        la, hold = self.lookahead, _HOLD_SAMPLES
        pad = la - 1 + hold
        width = la + 2 * hold
        ratio = np.float32(threshold / scale)
        held_in = np.ones(pad, np.float32)  # the need, padded with ones before the signal
        state = np.array([1.0, float(la), 0.0, 0.0])  # release value, running sum, slot, count
        ring = np.ones(la)
        side = _rebatch(self._peaks())
        next(side)
        buf: FrameBuffer | None = None
        done = 0  # frames output
        for frames in itertools.chain(blocks, [None]):
            if frames is None:  # the end: the padding after the signal
                need = np.ones(pad, np.float32)
            else:
                if buf is None:
                    buf = FrameBuffer(frames.shape[1])
                buf.append(frames)
                with np.errstate(divide="ignore"):
                    need = np.minimum(np.float32(1.0), ratio / side.send(len(frames)))
            held_in = np.concatenate([held_in, need])
            if len(held_in) < width:
                continue
            held = _window_min(held_in, width)
            held_in = held_in[len(held) :]
            gain = _release_and_smooth(held, la, self.release, ring, state)
            if len(gain) and buf is not None:
                gain *= np.float32(scale)
                out = buf.view(done, done + len(gain)) * gain[:, None]
                done += len(gain)
                buf.drop_before(done)
                yield out


def _rebatch(blocks: Iterator[np.ndarray]):
    """A generator that, sent ``m``, returns the next ``m`` values of ``blocks``."""
    pending = np.zeros(0, np.float32)
    m = yield None
    while True:
        parts = [pending]
        have = len(pending)
        while have < m:
            nxt = next(blocks, None)
            if nxt is None:
                raise ValueError("the side chain is shorter than the signal")
            parts.append(nxt)
            have += len(nxt)
        joined = np.concatenate(parts) if len(parts) > 1 else pending
        pending = joined[m:]
        m = yield joined[:m]


def _side_chain(blocks: Iterator[np.ndarray]) -> Iterator[tuple[int, np.ndarray]]:
    """The limiter's side chain of a block stream: ``(first, peaks)`` with
    peaks[i] the largest magnitude over channels of frame ``first + i`` and
    of the 4x-interpolated values on both sides of it (the meter's FIR, the
    signal silent before and after). A frame's peak needs 6 frames after
    it, so each block's last 6 wait for the next."""
    t = 6  # frames of context each side: half the 12-tap interpolator
    ctx: np.ndarray | None = None  # the last frames, from frame ctx_first on
    ctx_first = 0
    done = 0  # frames whose peak is out
    for block in blocks:
        ext = block if ctx is None else np.concatenate([ctx, block])
        upto = ctx_first + len(ext) - t  # frames with 6 frames after them
        if upto > done:
            peaks = _interpolated_peaks(np.ascontiguousarray(ext), _TAPS_REVERSED, _BLOCK)
            yield done, peaks[done - ctx_first : upto - ctx_first]
            done = upto
        keep_from = max(0, done - t)
        ctx = ext[keep_from - ctx_first :]
        ctx_first = keep_from
    if ctx is not None and done < ctx_first + len(ctx):
        peaks = _interpolated_peaks(np.ascontiguousarray(ctx), _TAPS_REVERSED, _BLOCK)
        yield done, peaks[done - ctx_first :]


@numba.njit(cache=True, fastmath=True)
def _interpolated_peaks(frames, reversed_taps, block):
    """Per frame, the largest magnitude over channels of the sample and of
    the 4x-interpolated values on both sides of it (the meter's FIR, zero
    outside the signal). Output ``i`` of the FIR sits between input samples
    ``i - 6`` and ``i - 5``, so frame ``n`` takes outputs ``n + 5`` and
    ``n + 6``."""
    n, channels = frames.shape
    n_taps = reversed_taps.shape[1]
    between = np.zeros(n + n_taps - 1, np.float32)
    for c in range(channels):
        loudness.oversampled_peaks(frames, c, reversed_taps, block, between)
    half = (n_taps - 1) // 2  # 5
    peaks = np.empty(n, np.float32)
    for i in range(n):
        p = max(between[i + half], between[i + half + 1])
        for c in range(channels):
            p = max(p, abs(frames[i, c]))
        peaks[i] = p
    return peaks


def _limiter_gain(peaks, scale, threshold, lookahead, hold, release):
    """Gain per frame (≤ 1) that keeps ``scale * peaks`` under ``threshold``
    (the whole-array form of :meth:`_Limiter.blocks`; tests compare them).

    need[j] = min(1, threshold / (scale * peaks[j])); held[j] = min of need
    over [j - hold, j + lookahead - 1 + hold] (1 outside the signal);
    released[j] follows held down at once and up exponentially; gain[n] =
    mean of released over [n - lookahead + 1, n]. Every window of the mean
    holds only minima over ranges containing n, so gain[n] ≤ need[n].
    """
    with np.errstate(divide="ignore"):
        need = np.minimum(np.float32(1.0), np.float32(threshold / scale) / peaks)
    # Padded so that held[j + lookahead - 1] is the window minimum for j.
    pad = lookahead - 1 + hold
    padded = np.ones(len(need) + 2 * pad, np.float32)
    padded[pad : pad + len(need)] = need
    held = _window_min(padded, lookahead + 2 * hold)
    state = np.array([1.0, float(lookahead), 0.0, 0.0])
    return _release_and_smooth(held, lookahead, release, np.ones(lookahead), state)


@numba.njit(cache=True)
def _window_min(p, w):
    """out[i] = min(p[i : i + w]) for every whole window (van Herk 1992 /
    Gil & Werman 1993: block-wise prefix and suffix minima, 3 comparisons per
    sample whatever ``w``)."""
    m = p.shape[0]
    prefix = np.empty_like(p)
    suffix = np.empty_like(p)
    for start in range(0, m, w):
        end = min(start + w, m)
        acc = p[start]
        for i in range(start, end):
            acc = min(acc, p[i])
            prefix[i] = acc
        acc = p[end - 1]
        for i in range(end - 1, start - 1, -1):
            acc = min(acc, p[i])
            suffix[i] = acc
    out = np.empty(max(0, m - w + 1), p.dtype)
    for i in range(m - w + 1):
        out[i] = min(suffix[i], prefix[i + w - 1])
    return out


@numba.njit(cache=True)
def _release_and_smooth(held, lookahead, release, ring, state):
    """Instant attack, exponential release towards ``held``, then the mean of
    the last ``lookahead`` values; ``held`` starts ``lookahead - 1`` frames
    before the signal. Carries its state from call to call: ``ring`` (the
    last ``lookahead`` released values) and ``state`` (released value,
    their sum, the ring's slot, values seen), both updated in place."""
    m = held.shape[0]
    r = state[0]
    total = state[1]
    slot = int(state[2])
    seen = int(state[3])
    skip = max(0, lookahead - 1 - seen)  # values before the first whole window
    gain = np.empty(max(0, m - skip), np.float32)
    for j in range(m):
        h = held[j]
        r = h if h < r else h + release * (r - h)
        total += r - ring[slot]
        ring[slot] = r
        slot = slot + 1 if slot + 1 < lookahead else 0
        if j >= skip:
            gain[j - skip] = total / lookahead
    state[0] = r
    state[1] = total
    state[2] = slot
    state[3] = seen + m
    return gain


def warmup() -> None:
    """Compile the numba kernels (float32 frames), so the first real job does
    not pay their JIT; loudness.warmup() does the same for the meter."""
    t = np.arange(_WARMUP_FRAMES) / loudness.MIN_SAMPLE_RATE
    x = (0.5 * np.sin(2 * np.pi * 440 * t) * (1 + (t > 0.5))).astype(np.float32)
    noise = np.random.default_rng(0).standard_normal(len(t)).astype(np.float32)
    x[::400] += 0.9 * noise[::400]  # sparse spikes: something to limit
    with contextlib.suppress(UnprocessableAudio):
        master(np.stack([x, x], axis=1), loudness.MIN_SAMPLE_RATE, target_lufs=-8.0)
