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
   do not go to the voice. 0.1 s rather than 0.2 s keeps fast syllables
   of speech-like vocals (+0.6 dB SI-SDR over bench/separation.py's songs).
3. **Voice band**: a smooth weight that is 1 from 120 Hz to 8 kHz and falls
   off 24 dB/octave outside (bass and kick below, cymbals above).

Tried and dropped, on bench/separation.py's 8 songs (vocals SI-SDR, mean):
REPET-SIM (Rafii & Pardo, ISMIR 2012: the median over the 20 frames most
similar by mel-spectrum cosine, instead of the period) −0.6 dB against
+6.1 dB for REPET (a voice at 0 dB dominates the similarity, so the frames
"most similar" to a sung note hold the same note, which then counts as
background); a centre-channel cue (Avendano & Jot's inter-channel
similarity, "Frequency-domain upmixing", 2004) gained ~0.5 dB where the
voice is a mono source panned centre but lost 10 dB and more on GM "Voice
Oohs", a stereo choir sample — real vocals can be either, so no stereo cue
is used and mono and stereo files are treated alike.

**4 stems from an accompaniment** (the model's, or the fallback's; same
chunks and STFT): median-filter HPSS on its magnitude with a 0.25 s time
kernel and a ~400 Hz frequency kernel; drums = the percussive soft mask
P² / (H² + P²); bass = the harmonic remainder times a soft low-pass at
300 Hz, 1 / (1 + (f / 300)⁴); other = the accompaniment minus both. The
crossover sits above the bass's fundamentals (≤ ~250 Hz) because GM and
real electric basses have most of their energy in the 2nd–3rd harmonics:
on the bench's true accompaniments bass SI-SDR was −3.4 dB at 200 Hz
(4th order), −0.2 dB at 300 Hz (2nd order), other unchanged (−1.4/−1.3).

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

Cost, measured by bench/separation.py on 44.1 kHz stereo songs of 31-44 s
(a shared 2-core box, so noisy): the fallback takes ~3 s of wall time per
minute of audio for 2 stems and ~5 s for 4 (the median filters of HPSS and
REPET's median are most of it; a numpy running median, ~4× faster than
scipy.ndimage's); the model's 2 stems ~2 s/min, its 4 stems ~5 s/min
(the DSP split on top). Peak memory above the input: 250-350 MB for a
40 s song, bounded by one 60 s chunk for longer ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import soxr

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


class _Monotone:
    """Reports progress in [lo, hi] of the whole, never going back."""

    def __init__(self, fn: Progress | None) -> None:
        self.fn = fn
        self.last = 0.0

    def __call__(self, value: float) -> None:
        self.last = min(1.0, max(self.last, float(value)))
        if self.fn is not None:
            self.fn(self.last)

    def span(self, lo: float, hi: float) -> Progress:
        return _span(self, lo, hi)


def _span(progress: Progress, lo: float, hi: float) -> Progress:
    """``progress`` of a part that covers [lo, hi] of the whole."""
    return lambda f: progress(lo + (hi - lo) * min(1.0, max(0.0, float(f))))


def _validate(x: np.ndarray, sr: int, n_stems: int) -> np.ndarray:
    if n_stems not in STEMS:
        raise OptionOutOfRange("stems", f"stems must be 2 or 4, not {n_stems}")
    if not SAMPLE_RATE_BOUNDS[0] <= sr <= SAMPLE_RATE_BOUNDS[1]:
        raise UnprocessableAudio(
            f"sample rate {sr} Hz is outside {SAMPLE_RATE_BOUNDS[0]}–{SAMPLE_RATE_BOUNDS[1]} Hz"
        )
    x = np.asarray(x)
    if x.ndim not in (1, 2) or x.size == 0 or (x.ndim == 2 and x.shape[1] == 0):
        raise UnprocessableAudio("audio must be a non-empty (frames,) or (frames, channels) array")
    if x.shape[0] < MIN_SECONDS * sr:
        raise UnprocessableAudio(
            f"audio is {x.shape[0] / sr:.2f} s long; separation needs at least {MIN_SECONDS:g} s"
        )
    x2 = (x[:, None] if x.ndim == 1 else x).astype(np.float32, copy=False)
    peak = float(np.max(np.abs(x2)))
    if not math.isfinite(peak):
        raise UnprocessableAudio("audio contains NaN or infinite samples")
    if peak < SILENCE_PEAK:
        raise UnprocessableAudio("audio is silent (peak below -80 dBFS); there is nothing to separate")
    return x2


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
    for ``n_stems`` other than 2 or 4.
    """
    x2 = _validate(x, sr, n_stems)
    report = _Monotone(progress)
    report(0.0)
    names = STEMS[n_stems]
    split_share = 0.0 if n_stems == 2 else 0.3  # of the progress: the 4-stem DSP split

    if model is None:
        vocals = _chunked(x2, sr, _dsp_vocals, report.span(0.0, 1.0 - split_share))[0]
        label = FALLBACK_MODEL
        stems = {"vocals": vocals}
    else:
        # Only the vocals: every other stem is computed as a remainder below.
        stems = {"vocals": _model_vocals(x2, sr, model, report.span(0, 1 - split_share))}
        label = model.name if n_stems == 2 else model.name + DSP_4STEM_SUFFIX

    last = names[-1]
    # float32 throughout (a 10-minute stereo track is 200 MB per copy); the
    # remainder makes the stems sum back to the input to float32 rounding.
    rest = x2.copy()
    rest -= stems["vocals"]
    if n_stems == 4:
        drums, bass = _chunked(rest, sr, _dsp_split, report.span(1.0 - split_share, 1.0))
        stems["drums"], stems["bass"] = drums, bass
        rest -= drums
        rest -= bass
    stems[last] = rest

    shape = np.shape(x)
    out = {name: stems[name].reshape(shape).astype(np.float32, copy=False) for name in names}
    report(1.0)
    return Separation(stems=out, sample_rate=int(sr), model=label)


# --------------------------------------------------------------------------- model


def _model_vocals(x: np.ndarray, sr: int, model: SpleeterModel, progress: Progress) -> np.ndarray:
    """The model's vocals of ``x`` (frames, ch) at ``sr``, float32 (frames, ch)
    at ``sr``; stereo pairs are run one after another."""
    n, ch = x.shape
    pairs = [(c, c + 1) for c in range(0, ch - 1, 2)] + ([(ch - 1, ch - 1)] if ch % 2 else [])
    out = np.zeros((n, ch), np.float32)
    for i, (a, b) in enumerate(pairs):
        part = _span(progress, i / len(pairs), (i + 1) / len(pairs))
        pair = np.ascontiguousarray(x[:, [a, b]])
        if sr != model.sample_rate:
            pair = soxr.resample(pair, sr, model.sample_rate, quality="VHQ").astype(np.float32)
        y = model.vocals(pair, progress=part)
        if sr != model.sample_rate:
            y = soxr.resample(y, model.sample_rate, sr, quality="VHQ")
        y = _fit_length(y, n)
        if a == b:
            out[:, a] = y.mean(axis=1)
        else:
            out[:, a] = y[:, 0]
            out[:, b] = y[:, 1]
        part(1.0)
    return out


def _fit_length(y: np.ndarray, n: int) -> np.ndarray:
    if len(y) >= n:
        return y[:n]
    return np.pad(y, ((0, n - len(y)), (0, 0)))


# --------------------------------------------------------------------------- chunks and STFT


def _chunked(
    x: np.ndarray, sr: int, fn: Callable[[np.ndarray, int], list[np.ndarray]], progress: Progress
) -> list[np.ndarray]:
    """Run ``fn`` (chunk (frames, ch) -> list of arrays of its shape) over
    equal chunks of ≤ ~60 s that overlap by 2 s, cross-faded linearly:
    the weights of overlapping chunks sum to 1, so outputs that sum to each
    chunk sum to the whole input too."""
    n = len(x)
    chunk = int(CHUNK_SECONDS * sr)
    overlap = int(OVERLAP_SECONDS * sr)
    if n <= chunk:
        out = fn(x, sr)
        progress(1.0)
        return [o.astype(np.float32, copy=False) for o in out]
    k = math.ceil((n - overlap) / (chunk - overlap))
    length = math.ceil((n + (k - 1) * overlap) / k)
    step = length - overlap
    outs: list[np.ndarray] | None = None
    ramp = (np.arange(overlap) + 0.5) / overlap
    for i in range(k):
        a = i * step
        b = min(n, a + length) if i < k - 1 else n
        parts = fn(x[a:b], sr)
        w = np.ones(b - a)
        if i > 0:
            w[:overlap] = ramp
        if i < k - 1:
            w[-overlap:] = ramp[::-1]
        if outs is None:
            outs = [np.zeros((n, x.shape[1]), np.float32) for _ in parts]
        for acc, p in zip(outs, parts, strict=True):
            acc[a:b] += p * w[:, None]
        progress((i + 1) / k)
    assert outs is not None
    return outs


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


def _median_filter(m: np.ndarray, k: int, axis: int, block: int = 256) -> np.ndarray:
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
    p = m.astype(np.float64)  # |X| squared after the square-root compression
    p -= p.mean(axis=1, keepdims=True)
    size = 1 << int(math.ceil(math.log2(2 * n_frames)))
    spec = np.fft.rfft(p, size, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, size, axis=1)[:, :n_frames].mean(axis=0)
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
    bg = _repeating_background(m, sr, n_fft)
    fg = m - bg
    mask = fg**2 / (fg**2 + bg**2 + _EPS)
    h, p = _hpss(m, sr, n_fft, HPSS_TIME_S)
    mask *= h**2 / (h**2 + p**2 + _EPS)
    mask *= _voice_band(_freqs(sr, n_fft))[:, None].astype(np.float32)
    return [np.stack([_istft(mask * s, n_fft, len(x)) for s in specs], axis=1)]


# --------------------------------------------------------------------------- DSP 4-stem split


def _dsp_split(a: np.ndarray, sr: int) -> list[np.ndarray]:
    """[drums, bass] of one accompaniment chunk (frames, ch); other is the rest."""
    n_fft = _n_fft(sr)
    specs = [_stft(np.ascontiguousarray(a[:, c]), n_fft) for c in range(a.shape[1])]
    m = np.sqrt(sum(np.abs(s) ** 2 for s in specs) / len(specs)).astype(np.float32)
    h, p = _hpss(m, sr, n_fft, SPLIT_TIME_S)
    drum = p**2 / (h**2 + p**2 + _EPS)
    low = 1 / (1 + (_freqs(sr, n_fft) / BASS_CROSSOVER_HZ) ** (2 * BASS_ORDER))
    bass = (1 - drum) * low[:, None].astype(np.float32)
    drums = np.stack([_istft(drum * s, n_fft, len(a)) for s in specs], axis=1)
    basses = np.stack([_istft(bass * s, n_fft, len(a)) for s in specs], axis=1)
    return [drums, basses]
