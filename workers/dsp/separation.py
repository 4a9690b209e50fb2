"""Music source separation into 2 stems (vocals, accompaniment) or 4 stems
(vocals, drums, bass, other), with a pretrained model when one is installed
and a signal-processing fallback when it is not.

Contract. ``separate(x, sr, n_stems, model)`` takes audio of any sample rate
and channel count, shape (frames,) or (frames, channels), and returns stems
of exactly the input's shape and sample rate, float32, that **sum back to
the input** (to float32 rounding, ~1e-6 of full scale): every stage below
computes all stems but one and takes the last as the remainder (the
accompaniment, or "other"), so nothing is lost or doubled, whatever the
masks get wrong. ``Separation.model`` names what produced the stems:

* ``"spleeter-2stems"`` — the model's vocals and accompaniment;
* ``"spleeter-2stems+dsp-4stem"`` — 4 stems: the model's vocals, and its
  accompaniment split into drums, bass and other by the DSP split below
  (no 4-stem weights are installable here, see bench/docs/separation.md);
* ``"dsp-fallback"`` — no model: everything by the DSP methods below.

**With a model** (an object with ``name``, ``sample_rate``, ``stems`` and
``separate(x, progress)``, e.g. :class:`workers.dsp.spleeter.SpleeterModel`):
the input is resampled to the model's rate with soxr (VHQ), fed to it as
stereo (a mono input twice, a multichannel one pair by pair, an odd last
channel twice; mono results are the mean of the pair), and the vocals
resampled back to the input's rate and length; the accompaniment is then
the input minus those vocals, at the input's rate — so whatever the
resampler drops (content above the model's Nyquist, e.g. 22.05–48 kHz of a
96 kHz file) stays in the accompaniment. A model that itself has all four
stems is used as such.

**Without a model** (DSP fallback), in chunks of 60 s with 2 s linear
cross-fades (so memory is bounded by a chunk, not the track), on a ~46 ms
Hann STFT (2048 points at 44.1 kHz, scaled with the rate) with 75 %
overlap. The vocal mask is the product of three soft cues on the
channel-averaged magnitude M(f, t), applied to every channel's complex STFT:

1. **Non-repetition** (REPET: Rafii & Pardo, "REpeating Pattern Extraction
   Technique (REPET): a simple method for music/voice separation", IEEE
   TASLP 21(1), 2013). The beat spectrum (the mean over bins of the
   autocorrelation of M along time, normalised per lag by its overlap)
   gives the accompaniment's repeating period p, its highest peak in
   1–12 s (a bar or a few). The repeating background B(f, t) is the median
   of M(f, t ± k·p), k = 1..8 (inside the chunk), capped at M; the cue is
   (M − B)² / ((M − B)² + B²). Chords, bass and drums repeat bar after
   bar; a lead voice much less. A chunk shorter than 2 s has no period
   to find, and then this cue is 1 everywhere.
2. **Harmonicity** (median-filter HPSS: FitzGerald, "Harmonic/percussive
   separation using median filtering", DAFx 2010): H = median of M over
   0.1 s along time, P = median over ~400 Hz along frequency; cue
   H² / (H² + P²), so drum hits that vary from bar to bar (fills, crashes)
   do not go to the voice. 0.1 s rather than the usual 0.2 s keeps the fast
   syllables of speech-like vocals.
3. **Voice band**: a smooth weight that is 1 from 120 Hz to 8 kHz and falls
   off 24 dB/octave outside (bass and kick below, cymbals above).

No stereo cue is used (real vocals are mono sources panned centre as often
as stereo choirs), so mono and stereo files are treated alike; the cues
tried and dropped are in bench/docs/separation.md.

**4 stems from an accompaniment** (the model's, or the fallback's; same
chunks and STFT): median-filter HPSS on its magnitude with a 0.25 s time
kernel and a ~400 Hz frequency kernel; drums = the percussive soft mask
P² / (H² + P²); bass = the harmonic remainder times a soft low-pass at
300 Hz, 1 / (1 + (f / 300)⁴); other = the accompaniment minus both. The
crossover sits above the bass's fundamentals (≤ ~250 Hz) because GM and
real electric basses have most of their energy in the 2nd–3rd harmonics
(200 vs 300 Hz measured in bench/docs/separation.md).

Limits, honestly: without a model the vocals are a rough estimate — good
where the backing repeats at a steady tempo and the voice does not
(sequenced pop, bench/separation.py's songs), poor with a drifting live
tempo, where a repeated chorus sings the same line on the same beat (taken
as background), or where a lead instrument plays over the voice (taken as
voice). The DSP 4-stem split is crude: HPSS puts the long body of a kick
drum (a decaying ~50 Hz tone) partly into "bass" and piano and guitar
attacks partly into "drums", and the fixed crossover puts anything low in
the other instruments (left-hand piano, warm pads with a sub-octave) into
"bass". Measured SI-SDR per stem against the mixture baseline:
bench/docs/separation.md.

**Memory.** ``separate_stream`` takes a block source (a file read from
disk in blocks, ``workers.codec.open_source``) and yields the stems as
aligned blocks, so no array is as long as the track: the model runs on its
~12 s segments, each DSP stage on its 60 s chunks, and only what a later
segment or chunk no longer touches is handed on (itertools.tee keeps the
input and the vocals between the stages, at most a chunk of each). Every
stage does the arithmetic of the whole-array computation in the same order,
so the stems are the same samples whatever the block size; ``separate``
(arrays in and out) is the same code over an in-memory source. Peak memory
for a 20-minute stereo track: < 1 GB for 4 stems, the same as for 5
minutes; speed and memory: bench/docs/separation.md.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import soxr

from workers.dsp.blocks import ArraySource, BlockSource, FrameBuffer
from workers.dsp.errors import OptionOutOfRange, UnprocessableAudio

if TYPE_CHECKING:  # the model is optional: the fallback must not need it
    from workers.dsp.spleeter import SpleeterModel

STEMS: dict[int, tuple[str, ...]] = {
    2: ("vocals", "accompaniment"),
    4: ("vocals", "drums", "bass", "other"),
}
FALLBACK_MODEL = "dsp-fallback"
DSP_4STEM_SUFFIX = "+dsp-4stem"

MIN_SECONDS = 1.0
SILENCE_PEAK = 10 ** (-80 / 20)  # below -80 dBFS peak there is nothing to separate
SAMPLE_RATE_BOUNDS = (8000, 384000)

CHUNK_SECONDS = 60.0
OVERLAP_SECONDS = 2.0
WINDOW_SECONDS = 0.046  # STFT window, rounded to a power of two (2048 at 44.1 kHz)

# REPET
PERIOD_RANGE_S = (1.0, 12.0)
REPEAT_LAGS = 8  # periods each side whose median is the background

HPSS_TIME_S = 0.1  # harmonic median kernel for the vocal cue
SPLIT_TIME_S = 0.25  # harmonic median kernel for the 4-stem split
HPSS_FREQ_HZ = 400.0  # percussive median kernel
VOICE_BAND_HZ = (120.0, 8000.0)
BASS_CROSSOVER_HZ = 300.0
BASS_ORDER = 2

_EPS = 1e-10
_AC_BINS = 64  # bins per block of the beat spectrum's FFTs
_MEDIAN_BLOCK = 32  # rows per block of the running median (its copies are block x frames x kernel)

Progress = Callable[[float], None]


@dataclass
class Separation:
    """Stems of one input: name -> float32 array of the input's shape, at
    ``sample_rate`` Hz (the input's); ``model`` names what made them."""

    stems: dict[str, np.ndarray]
    sample_rate: int
    model: str

    def to_dict(self) -> dict:
        first = next(iter(self.stems.values()))
        return {
            "model": self.model,
            "sample_rate": int(self.sample_rate),
            "stems": list(self.stems),
            "channels": 1 if first.ndim == 1 else int(first.shape[1]),
            "duration_s": round(first.shape[0] / self.sample_rate, 3),
        }


@dataclass
class StemStream:
    """Stems of one input as they are computed: ``blocks`` yields, in order,
    dicts ``{name: float32 (m, channels) block}`` whose blocks line up (the
    same m, the same frames of the input) and together cover the input's
    ``frames``. Consume it once; it raises what ``separate`` raises."""

    names: tuple[str, ...]
    sample_rate: int
    channels: int
    frames: int
    model: str
    blocks: Iterator[dict[str, np.ndarray]]


class _Monotone:
    """Reports progress in [lo, hi] of the whole, never going back."""

    def __init__(self, fn: Progress | None) -> None:
        self.fn = fn
        self.last = 0.0

    def __call__(self, value: float) -> None:
        value = min(1.0, max(self.last, float(value)))
        # Steps of at least 0.2 %: a job's progress is a Redis write.
        if self.fn is not None and (value - self.last >= 0.002 or (value == 1.0 and self.last < 1.0)):
            self.fn(value)
            self.last = value
        elif self.fn is None:
            self.last = value


def _check(n_stems: int, sr: int) -> None:
    if n_stems not in STEMS:
        raise OptionOutOfRange("stems", f"stems must be 2 or 4, not {n_stems}")
    if not SAMPLE_RATE_BOUNDS[0] <= sr <= SAMPLE_RATE_BOUNDS[1]:
        raise UnprocessableAudio(
            f"sample rate {sr} Hz is outside {SAMPLE_RATE_BOUNDS[0]}–{SAMPLE_RATE_BOUNDS[1]} Hz"
        )


def _check_source(source: BlockSource) -> None:
    """Length, then one pass for the peak: silent or non-finite audio is
    refused before any work."""
    sr = source.sample_rate
    if source.frames < MIN_SECONDS * sr:
        raise UnprocessableAudio(
            f"audio is {source.frames / sr:.2f} s long; separation needs at least {MIN_SECONDS:g} s"
        )
    peak = 0.0
    for block in source.blocks():
        top = float(np.max(np.abs(block)))  # NaN propagates
        if not math.isfinite(top):
            raise UnprocessableAudio("audio contains NaN or infinite samples")
        peak = max(peak, top)
    if peak < SILENCE_PEAK:
        raise UnprocessableAudio("audio is silent (peak below -80 dBFS); there is nothing to separate")


def separate(
    x: np.ndarray,
    sr: int,
    n_stems: int,
    model: SpleeterModel | None,
    progress: Progress | None = None,
) -> Separation:
    """Split ``x`` (frames,) or (frames, channels), at ``sr`` Hz, into
    ``n_stems`` (2: vocals, accompaniment; 4: vocals, drums, bass, other).

    ``model`` is a loaded separation model or None for the DSP fallback
    (see the module docstring for both). ``progress`` is called with a
    non-decreasing fraction in [0, 1], last with 1.0. Stems have the
    input's shape and rate and sum to it. Raises :class:`UnprocessableAudio` for
    audio shorter than 1 s, silent (peak below -80 dBFS) or not finite, and
    for ``n_stems`` other than 2 or 4. The whole-array form of
    :func:`separate_stream` (the same samples).
    """
    _check(n_stems, sr)
    x = np.asarray(x)
    if x.ndim not in (1, 2) or x.size == 0 or (x.ndim == 2 and x.shape[1] == 0):
        raise UnprocessableAudio("audio must be a non-empty (frames,) or (frames, channels) array")
    x2 = (x[:, None] if x.ndim == 1 else x).astype(np.float32, copy=False)
    stream = separate_stream(ArraySource(x2, sr), n_stems, model, progress)
    out = {name: np.empty(x2.shape, np.float32) for name in stream.names}
    pos = 0
    for block in stream.blocks:
        m = len(block[stream.names[0]])
        for name in stream.names:
            out[name][pos : pos + m] = block[name]
        pos += m
    shape = np.shape(x)
    return Separation(
        stems={name: y.reshape(shape) for name, y in out.items()}, sample_rate=int(sr), model=stream.model
    )


def separate_stream(
    source: BlockSource, n_stems: int, model: SpleeterModel | None, progress: Progress | None = None
) -> StemStream:
    """:func:`separate` over a :class:`~workers.dsp.blocks.BlockSource` (a
    file read in blocks), with memory bounded by the segments in flight,
    not by the track: the model's ~12 s segments, the DSP stages' 60 s
    chunks, and the input and stems between them (~60 s of each). The
    source is read twice: once for the peak (silent, non-finite input is
    refused here, before anything is computed), once for the stems.

    Returns at once, after those checks; the stems are computed as
    ``StemStream.blocks`` is consumed, and ``progress`` (a non-decreasing
    fraction, last 1.0) is reported meanwhile.
    """
    sr = int(source.sample_rate)
    _check(n_stems, sr)
    if source.channels < 1:
        raise UnprocessableAudio("audio must have at least one channel")
    _check_source(source)
    label = FALLBACK_MODEL
    if model is not None:
        label = model.name + ("" if n_stems == 2 else DSP_4STEM_SUFFIX)
    return StemStream(
        names=STEMS[n_stems],
        sample_rate=sr,
        channels=source.channels,
        frames=source.frames,
        model=label,
        blocks=_stem_blocks(source, n_stems, model, _Monotone(progress)),
    )


# Share of the progress for the first stage (the vocals); the rest follows
# the stems handed on. Roughly their shares of the time (bench/docs/separation.md).
_VOCALS_SHARE = {(2, True): 0.95, (4, True): 0.35, (2, False): 0.95, (4, False): 0.6}


def _stem_blocks(
    source: BlockSource, n_stems: int, model: SpleeterModel | None, report: _Monotone
) -> Iterator[dict[str, np.ndarray]]:
    n, sr, ch = source.frames, source.sample_rate, source.channels
    share = _VOCALS_SHARE[(n_stems, model is not None)]
    report(0.0)
    pulled = 0

    def counted(blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        nonlocal pulled
        for b in blocks:
            pulled += len(b)
            report(share * pulled / n)
            yield b

    # The input twice: into the vocals stage, and (as much later as that
    # stage lags, at most a chunk) into the remainder. tee keeps only the gap.
    x_vocals, x_rest = itertools.tee(source.blocks())
    if model is None:
        vocals = _chunked_stream(counted(x_vocals), n, ch, sr, _dsp_vocals)
    else:
        vocals = ((v,) for v in _model_vocals_stream(counted(x_vocals), n, ch, sr, model))

    # float32 throughout; every remainder makes the stems sum back to the
    # input to float32 rounding.
    two = (((v, x - v)) for (x,), (v,) in _aligned(((x,) for x in x_rest), vocals))
    done = 0
    if n_stems == 2:
        for v, rest in two:
            done += len(v)
            yield {"vocals": v, "accompaniment": rest}
            report(share + (1 - share) * done / n)
    else:
        to_split, kept = itertools.tee(two)
        split = _chunked_stream((rest for _, rest in to_split), n, ch, sr, _dsp_split)
        for (v, rest), (drums, bass) in _aligned(kept, split):
            other = rest - drums
            other -= bass
            done += len(v)
            yield {"vocals": v, "drums": drums, "bass": bass, "other": other}
            report(share + (1 - share) * done / n)
    report(1.0)


def _aligned(*streams: Iterator[tuple[np.ndarray, ...]]) -> Iterator[tuple[tuple[np.ndarray, ...], ...]]:
    """Zip streams of tuples of equally long arrays whose blocks have
    different lengths, cutting them so that the pieces line up."""
    iters = [iter(s) for s in streams]
    current: list[tuple[np.ndarray, ...] | None] = [None] * len(iters)
    offset = [0] * len(iters)
    while True:
        for i, it in enumerate(iters):
            block = current[i]
            while block is None or offset[i] >= len(block[0]):
                current[i] = block = None  # not kept alive while the next block is computed
                try:
                    current[i] = block = next(it)
                    offset[i] = 0
                except StopIteration:
                    return
        ready = [c for c in current if c is not None]
        m = min(len(c[0]) - o for c, o in zip(ready, offset, strict=True))
        yield tuple(tuple(a[o : o + m] for a in c) for c, o in zip(ready, offset, strict=True))
        offset = [o + m for o in offset]


# --------------------------------------------------------------------------- model


def _model_vocals_stream(
    xs: Iterator[np.ndarray], n: int, ch: int, sr: int, model: SpleeterModel
) -> Iterator[np.ndarray]:
    """The model's vocals of ``xs`` ((m, ch) blocks, ``n`` frames at ``sr``),
    float32 (m, ch) blocks at ``sr``; each stereo pair (an odd last channel
    twice) through its own resampler and model stream."""
    pairs = [(c, c + 1) for c in range(0, ch - 1, 2)] + ([(ch - 1, ch - 1)] if ch % 2 else [])
    inputs = itertools.tee(xs, len(pairs)) if len(pairs) > 1 else (xs,)
    per_pair = [_pair_vocals(inp, a, b, n, sr, model) for inp, (a, b) in zip(inputs, pairs, strict=True)]
    for parts in _aligned(*per_pair):
        if len(pairs) == 1 and ch == 2:
            yield parts[0][0]
            continue
        m = len(parts[0][0])
        out = np.empty((m, ch), np.float32)
        for (y,), (a, b) in zip(parts, pairs, strict=True):
            if a == b:
                out[:, a] = y.mean(axis=1)
            else:
                out[:, a] = y[:, 0]
                out[:, b] = y[:, 1]
        yield out


def _pair_vocals(
    xs: Iterator[np.ndarray], a: int, b: int, n: int, sr: int, model: SpleeterModel
) -> Iterator[tuple[np.ndarray]]:
    """Vocals of channels (a, b) of ``xs``, (m, 2) blocks at ``sr``, ``n`` in all."""
    pair: Iterator[np.ndarray] = (np.ascontiguousarray(x[:, [a, b]]) for x in xs)
    if sr != model.sample_rate:
        pair = _resampled(pair, sr, model.sample_rate)
    y = model.vocals_stream(pair)
    if sr != model.sample_rate:
        y = _resampled(y, model.sample_rate, sr)
    for block in _fit_length(y, n):
        yield (block,)


def _resampled(blocks: Iterator[np.ndarray], sr_in: int, sr_out: int) -> Iterator[np.ndarray]:
    """soxr (VHQ) as a stream: the same samples as ``soxr.resample`` on the
    whole signal."""
    stream = soxr.ResampleStream(sr_in, sr_out, 2, dtype="float32", quality="VHQ")
    previous = None
    for block in blocks:
        if previous is not None:
            yield stream.resample_chunk(previous, last=False)
        previous = np.asarray(block, np.float32)
    last = previous if previous is not None else np.zeros((0, 2), np.float32)
    yield stream.resample_chunk(last, last=True)


def _fit_length(blocks: Iterator[np.ndarray], n: int) -> Iterator[np.ndarray]:
    """Exactly ``n`` frames: cut after ``n``, zeros after a short stream."""
    done = 0
    width = 2
    for y in blocks:
        width = y.shape[1]
        if done < n and len(y):
            y = y[: n - done]
            done += len(y)
            yield y
    if done < n:
        yield np.zeros((n - done, width), np.float32)


# --------------------------------------------------------------------------- chunks and STFT


def _chunked_stream(
    xs: Iterator[np.ndarray], n: int, ch: int, sr: int, fn: Callable[[np.ndarray, int], list[np.ndarray]]
) -> Iterator[tuple[np.ndarray, ...]]:
    """Run ``fn`` (chunk (frames, ch) -> list of arrays of its shape) over
    equal chunks of ≤ ~60 s of ``xs`` (``n`` frames in blocks) that overlap by
    2 s, cross-faded linearly: the weights of overlapping chunks sum to 1, so
    outputs that sum to each chunk sum to the whole input too. Yields tuples
    of output blocks as each chunk finishes them; holds one chunk of input
    and of each output."""
    it = iter(xs)
    buf = FrameBuffer(ch)

    def fill(upto: int) -> None:
        while buf.end < upto:
            try:
                buf.append(next(it))
            except StopIteration:
                raise ValueError(f"the stream ended at frame {buf.end} of {n}") from None

    chunk = int(CHUNK_SECONDS * sr)
    overlap = int(OVERLAP_SECONDS * sr)
    if n <= chunk:
        fill(n)
        yield tuple(o.astype(np.float32, copy=False) for o in fn(buf.view(0, n), sr))
        return
    k = math.ceil((n - overlap) / (chunk - overlap))
    length = math.ceil((n + (k - 1) * overlap) / k)
    step = length - overlap
    accs: list[np.ndarray] = []  # outputs from frame acc_start on
    acc_start = 0
    ramp = (np.arange(overlap) + 0.5) / overlap
    for i in range(k):
        a = i * step
        b = min(n, a + length) if i < k - 1 else n
        fill(b)
        parts = fn(buf.view(a, b), sr)
        w = np.ones(b - a)
        if i > 0:
            w[:overlap] = ramp
        if i < k - 1:
            w[-overlap:] = ramp[::-1]
        if not accs:
            accs = [np.zeros((0, ch), np.float32) for _ in parts]
        for j, p in enumerate(parts):
            acc = accs[j]
            if len(acc) < b - acc_start:
                acc = np.concatenate([acc, np.zeros((b - acc_start - len(acc), ch), np.float32)])
            acc[a - acc_start : b - acc_start] += p * w[:, None]
            accs[j] = acc
        del parts, w, acc  # not kept alive while the next chunk is computed
        # Frames before the next chunk's start are final.
        final = (i + 1) * step if i < k - 1 else n
        yield tuple(acc[: final - acc_start] for acc in accs)
        accs = [acc[final - acc_start :].copy() for acc in accs]
        acc_start = final
        buf.drop_before(final)


def _n_fft(sr: int) -> int:
    return 1 << int(round(math.log2(WINDOW_SECONDS * sr)))


@lru_cache(maxsize=8)
def _window(n_fft: int) -> np.ndarray:
    return np.hanning(n_fft + 1)[:-1].astype(np.float32)


def _stft(y: np.ndarray, n_fft: int) -> np.ndarray:
    """Centred STFT (reflect-padded), hop n_fft / 4, complex64 (bins, frames)."""
    import librosa

    return librosa.stft(y, n_fft=n_fft, hop_length=n_fft // 4, window=_window(n_fft), center=True)


def _istft(z: np.ndarray, n_fft: int, length: int) -> np.ndarray:
    import librosa

    return librosa.istft(z, hop_length=n_fft // 4, window=_window(n_fft), center=True, length=length)


def _freqs(sr: int, n_fft: int) -> np.ndarray:
    return np.arange(n_fft // 2 + 1) * sr / n_fft


def _hpss(m: np.ndarray, sr: int, n_fft: int, time_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Median-filtered harmonic and percussive magnitudes (FitzGerald 2010)."""
    hop = n_fft // 4
    kt = max(3, int(round(time_s * sr / hop)) | 1)
    kf = max(3, int(round(HPSS_FREQ_HZ * n_fft / sr)) | 1)
    return _median_filter(m, kt, axis=1), _median_filter(m, kf, axis=0)


def _median_filter(m: np.ndarray, k: int, axis: int, block: int = _MEDIAN_BLOCK) -> np.ndarray:
    """Running median of odd length ``k`` along ``axis`` of a 2-D array, edges
    mirrored (as scipy.ndimage's "reflect"). np.partition over a sliding
    window, in blocks along the other axis to bound memory: ~4× faster than
    scipy.ndimage.median_filter here."""
    half = k // 2
    pad = [(0, 0), (0, 0)]
    pad[axis] = (half, half)
    padded = np.pad(m, pad, mode="symmetric")
    out = np.empty_like(m)
    other = 1 - axis
    for a in range(0, m.shape[other], block):
        b = min(m.shape[other], a + block)
        part = padded[a:b] if other == 0 else padded[:, a:b]
        windows = np.lib.stride_tricks.sliding_window_view(part, k, axis=axis)
        med = np.partition(windows, half, axis=-1)[..., half]
        if other == 0:
            out[a:b] = med
        else:
            out[:, a:b] = med
    return out


def _soft_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a² / (a² + b² + eps), in place of ``a`` and ``b`` (both overwritten)."""
    a = np.square(a, out=a)
    b = np.square(b, out=b)
    b += a
    b += _EPS
    return np.divide(a, b, out=a)


# --------------------------------------------------------------------------- DSP vocals


def _repeat_period(m: np.ndarray, sr: int, n_fft: int) -> int | None:
    """The accompaniment's repeating period in frames, from the beat
    spectrum (REPET: the mean over bins of the autocorrelation over time of
    the power spectrogram, each lag normalised by its overlap), the
    strongest lag in 1-12 s; None when the chunk is too short to repeat."""
    hop = n_fft // 4
    n_frames = m.shape[1]
    lo = int(PERIOD_RANGE_S[0] * sr / hop)
    hi = min(int(PERIOD_RANGE_S[1] * sr / hop), n_frames // 2)
    if hi <= lo + 1:
        return None
    size = 1 << int(math.ceil(math.log2(2 * n_frames)))
    # In blocks of bins (the FFTs of a whole 60 s chunk in float64 took
    # ~400 MB), summed row after row as numpy's mean over axis 0 does.
    total = np.zeros(n_frames)
    for a in range(0, m.shape[0], _AC_BINS):
        p = m[a : a + _AC_BINS].astype(np.float64)  # |X| squared after the square-root compression
        p -= p.mean(axis=1, keepdims=True)
        spec = np.fft.rfft(p, size, axis=1)
        for row in np.fft.irfft(np.abs(spec) ** 2, size, axis=1)[:, :n_frames]:
            total += row
    ac = total / m.shape[0]
    ac /= n_frames - np.arange(n_frames)
    return lo + int(np.argmax(ac[lo:hi]))


def _repeating_background(m: np.ndarray, sr: int, n_fft: int) -> np.ndarray:
    """REPET background: per frame, the median of ``m`` at the same frame
    one, two, ... REPEAT_LAGS periods earlier and later (those inside the
    chunk), capped at ``m``; zeros when no period is found."""
    period = _repeat_period(m, sr, n_fft)
    n_bins, n_frames = m.shape
    if period is None:
        return np.zeros_like(m)
    lags = np.array(
        [k * period for k in range(-REPEAT_LAGS, REPEAT_LAGS + 1) if k and abs(k * period) < n_frames]
    )
    out = np.empty_like(m)
    block = 256
    for a in range(0, n_frames, block):
        t = np.arange(a, min(n_frames, a + block))
        cols = t[:, None] + lags[None, :]
        valid = (cols >= 0) & (cols < n_frames)
        g = m[:, np.clip(cols, 0, n_frames - 1)]  # (bins, frames, lags)
        # Median over the valid lags only: invalid ones go to +inf after
        # sorting, and the median index depends on each frame's count.
        g[:, ~valid] = np.inf
        g.sort(axis=2)
        count = valid.sum(axis=1)
        lo_i = np.maximum(count - 1, 0) // 2
        hi_i = count // 2
        rows = np.arange(len(t))
        med = 0.5 * (g[:, rows, lo_i] + g[:, rows, np.minimum(hi_i, g.shape[2] - 1)])
        out[:, a : a + len(t)] = np.where(count[None, :] > 0, med, 0.0)
    return np.minimum(out, m)


def _voice_band(freqs: np.ndarray) -> np.ndarray:
    lo, hi = VOICE_BAND_HZ
    f = np.maximum(freqs, 1.0)
    return (1 / (1 + (lo / f) ** 4)) * (1 / (1 + (f / hi) ** 4))


def _dsp_vocals(x: np.ndarray, sr: int) -> list[np.ndarray]:
    """[vocals] of one chunk (frames, ch), by the four soft cues."""
    n_fft = _n_fft(sr)
    specs = [_stft(np.ascontiguousarray(x[:, c]), n_fft) for c in range(x.shape[1])]
    power = sum(np.abs(s) ** 2 for s in specs) / len(specs)
    m = np.sqrt(power).astype(np.float32)
    # In place where the arithmetic is the same: each temporary is a
    # spectrogram (~21 MB for a 60 s chunk).
    bg = _repeating_background(m, sr, n_fft)
    fg = np.square(m - bg)
    bg = np.square(bg, out=bg)
    bg += fg
    bg += _EPS
    mask = np.divide(fg, bg, out=fg)  # fg² / (fg² + bg² + eps)
    del bg
    mask *= _soft_ratio(*_hpss(m, sr, n_fft, HPSS_TIME_S))  # h² / (h² + p² + eps)
    mask *= _voice_band(_freqs(sr, n_fft))[:, None].astype(np.float32)
    return [np.stack([_istft(mask * s, n_fft, len(x)) for s in specs], axis=1)]


# --------------------------------------------------------------------------- DSP 4-stem split


def _dsp_split(a: np.ndarray, sr: int) -> list[np.ndarray]:
    """[drums, bass] of one accompaniment chunk (frames, ch); other is the rest."""
    n_fft = _n_fft(sr)
    n, ch = a.shape
    # One channel's complex spectrogram at a time (each ~42 MB for a 60 s
    # chunk): the magnitude is summed as they come, and each is computed
    # again (the same numbers) for its masking.
    power = 0
    for c in range(ch):
        power = power + np.abs(_stft(np.ascontiguousarray(a[:, c]), n_fft)) ** 2
    m = np.sqrt(power / ch).astype(np.float32)
    del power
    h, p = _hpss(m, sr, n_fft, SPLIT_TIME_S)
    del m
    drum = _soft_ratio(p, h)  # p² / (h² + p² + eps)
    low = 1 / (1 + (_freqs(sr, n_fft) / BASS_CROSSOVER_HZ) ** (2 * BASS_ORDER))
    bass = np.subtract(1, drum, out=h)
    bass *= low[:, None].astype(np.float32)
    drums = np.empty((n, ch), np.float32)
    basses = np.empty((n, ch), np.float32)
    for c in range(ch):
        s = _stft(np.ascontiguousarray(a[:, c]), n_fft)
        drums[:, c] = _istft(drum * s, n_fft, n)
        basses[:, c] = _istft(bass * s, n_fft, n)
    return [drums, basses]
