"""Monophonic f0 track (probabilistic YIN) and its segmentation into notes.

Method: pYIN (Mauch & Dixon, "pYIN: a fundamental frequency estimator using
probabilistic threshold distributions", ICASSP 2014), with the parameters of
the reference implementation that librosa.pyin also follows:

1. **YIN** (de Cheveigné & Kawahara, JASA 111(4), 2002) on every frame: the
   difference function d(τ) = Σ_{j<W} (x_j − x_{j+τ})² over an integration
   window of W samples, computed for all lags at once from one FFT
   cross-correlation per frame, then its cumulative-mean normalisation
   d'(τ) = d(τ) · τ / Σ_{k≤τ} d(k).
2. **Candidates**: every local minimum (trough) of d' between the lags of
   ``fmax`` and ``fmin``. For each of 100 thresholds s, weighted by a
   Beta(2, 18) prior, the troughs below s share the weight with a
   Boltzmann(λ = 2) prior that favours shorter lags (the first trough below
   the threshold, as in YIN); when no trough is below s, 1 % of its weight
   goes to the lowest trough. A trough's summed weight is its probability;
   their sum is the frame's voiced probability. Each trough's lag is refined
   by parabolic interpolation.
3. **HMM**: 0.1-semitone pitch bins from ``fmin`` to ``fmax``, each voiced or
   unvoiced (2 × 473 states for 65–1000 Hz). Pitch moves at most ±5
   semitones per frame (35.92 semitones/s), with a triangular preference
   for small moves; voicing switches with probability 0.01 per frame. A
   voiced state's observation is its bin's candidate probability, an
   unvoiced state's (1 − voiced probability) / bins. The Viterbi path gives
   voicing and pitch; a voiced frame's f0 is the interpolated candidate in
   its bin (the bin centre if the path crosses a bin without one).

Frames are centred on ``t · hop`` with a 256-sample hop at 22.05 kHz
(11.6 ms; the hop scales with ``sr``). The frame spans ~2.5 periods of
``fmin`` plus one: 2048 samples (93 ms) at 22.05 kHz for fmin = 65 Hz, as in
librosa's default, shorter for higher ``fmin``, longer for lower.

Notes: runs of voiced frames whose pitch stays within ±50 cents of the
note's running median (the median of its last 0.3 s). A departure of
≥ 0.7 semitone that persists for 3 frames (35 ms) starts a new note; a
shorter one (an octave slip, a glitch) is ignored; an unvoiced gap ends
the note unless it is a single frame and the pitch resumes. Notes shorter
than 60 ms are dropped. ``hz`` is the median f0 of the note's frames,
``midi`` the nearest MIDI number, round(69 + 12 log2(hz / 440)).

Differences from librosa.pyin, all small: the difference function is YIN's
exact one over a fixed window (librosa's omits the energy of the frame's
tail, which biases long lags); minima at the lag range's ends are not
troughs (so a 50 Hz tone with ``fmin`` = 65 Hz is not reported at the edge);
candidates falling into the same bin add up rather than overwrite.

Cost and memory: ~1 s for a 3-minute track (~200× realtime; librosa.pyin
takes ~60 s, 3× realtime, on the same machine). The signal is processed in
blocks of 4096 frames (47 s) whose Viterbi passes overlap by 256 frames
(3 s) on each side, so the decoded path is the whole-track path wherever
the survivor paths merge within 3 s, which they do within a few frames in
practice. Working memory is then bounded by the block (~60 MB whatever the
length); beyond it only the per-frame outputs grow (two floats per 11.6 ms).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numba
import numpy as np
from scipy import fft as sfft
from scipy import stats

FMIN_BOUNDS = (30.0, 2000.0)  # what the API accepts for fmin and fmax (fmin < fmax)

HOP_SECONDS = 256 / 22050  # 11.6 ms
FRAME_PERIODS = 2.5  # frame length in periods of fmin, plus one period of lag range
N_THRESHOLDS = 100
BETA_PARAMETERS = (2.0, 18.0)  # prior over the YIN threshold: mean 0.1
BOLTZMANN_PARAMETER = 2.0
NO_TROUGH_PROB = 0.01
BINS_PER_SEMITONE = 10
MAX_OCTAVES_PER_SECOND = 35.92  # librosa's max_transition_rate: 5 semitones per 11.6 ms frame
SWITCH_PROB = 0.01
CENTRE_RATIO = 0.1
CENTRE_POWER = 1.0
LAG_PENALTY = 0.0
VITERBI_BEAM = 200.0  # natural log units: states e^-200 below the best are not extended

NOTE_STABLE_CENTS = 50.0
NOTE_SPLIT_SEMITONES = 0.7
NOTE_SPLIT_FRAMES = 3
NOTE_MEDIAN_SECONDS = 0.3
NOTE_MIN_SECONDS = 0.06

BLOCK_FRAMES = 4096  # frames decoded per Viterbi block
OVERLAP_FRAMES = 256  # extra frames decoded on each side of a block
YIN_BLOCK_FRAMES = 512  # frames per FFT batch: 512 × 2048 float64 = 8 MB


@dataclass(frozen=True)
class Note:
    """One note: ``start``/``end`` in seconds, ``hz`` the median f0 (2 decimals)."""

    start: float
    end: float
    midi: int
    hz: float


@dataclass(frozen=True)
class Pitch:
    """Frame-wise f0 track and notes. Frame ``i`` is centred at ``i * hop_s`` s;
    ``f0_hz[i]`` is None where unvoiced; ``voiced_prob[i]`` is in [0, 1]."""

    hop_s: float
    f0_hz: list[float | None]
    voiced_prob: list[float]
    notes: list[Note]

    def to_dict(self) -> dict:
        return {
            "hop_s": self.hop_s,
            "f0_hz": list(self.f0_hz),
            "voiced_prob": list(self.voiced_prob),
            "notes": [{"start": n.start, "end": n.end, "midi": n.midi, "hz": n.hz} for n in self.notes],
        }


@dataclass(frozen=True)
class _Params:
    sr: int
    hop: int
    frame: int
    min_lag: int  # lowest lag whose d' is computed (one below the fmax lag)
    max_lag: int  # highest lag whose d' is computed (one above the fmin lag)
    window: int  # YIN integration window W = frame - max_lag
    fmin: float
    fmax: float
    n_bins: int


@lru_cache(maxsize=32)
def _params(sr: int, fmin: float, fmax: float) -> _Params:
    hop = max(1, round(HOP_SECONDS * sr))
    # One guard lag beyond each end of the period range, so that a trough at
    # the range's own ends can be told from a descent that continues past it.
    min_lag = max(1, math.floor(sr / fmax) - 1)
    max_lag = math.ceil(sr / fmin) + 1
    frame = sfft.next_fast_len(math.ceil((FRAME_PERIODS + 1) * sr / fmin), real=True)
    frame += frame % 2
    n_bins = math.floor(12 * BINS_PER_SEMITONE * math.log2(fmax / fmin)) + 1
    return _Params(sr, hop, frame, min_lag, max_lag, frame - max_lag, fmin, fmax, n_bins)


@lru_cache(maxsize=1)
def _threshold_prior() -> tuple[np.ndarray, np.ndarray]:
    thresholds = np.linspace(0.0, 1.0, N_THRESHOLDS + 1)
    beta_probs = np.diff(stats.beta.cdf(thresholds, *BETA_PARAMETERS))
    return thresholds[1:].copy(), beta_probs


@lru_cache(maxsize=8)
def _log_transition(n_bins: int, hop_s: float) -> np.ndarray:
    """Log of librosa's ``transition_local(n_bins, width, "triangle")`` as a
    band: row k, column i is the move from bin i to bin i + k − half."""
    half = round(MAX_OCTAVES_PER_SECOND * 12 * hop_s) * BINS_PER_SEMITONE // 2
    width = 2 * half + 1
    # scipy's symmetric triangle of odd length: 1/(half+1), ..., 1, ..., 1/(half+1)
    tri = 1.0 - np.abs(np.arange(-half, half + 1)) / (half + 1)
    band = np.tile(tri, (n_bins, 1))
    dest = np.arange(n_bins)[:, None] + np.arange(-half, half + 1)[None, :]
    band[(dest < 0) | (dest >= n_bins)] = 0.0
    band /= band.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore"):
        return np.ascontiguousarray(np.log(band).T)


def _lag_products(frames: np.ndarray, p: _Params) -> np.ndarray:
    """r(τ) = Σ_{j<W} x_j x_{j+τ} for τ = 0..max_lag, each frame (rows) at
    once. A circular correlation of the frame's length does not wrap for
    τ ≤ frame − W = max_lag. float32 is enough: its rounding moves d'(τ) by
    ~1e-6, far below the thresholds (≥ 0.01)."""
    spec = sfft.rfft(frames, axis=1)
    head = sfft.rfft(frames[:, : p.window], n=p.frame, axis=1)
    head.imag *= -1.0
    head *= spec
    return sfft.irfft(head, n=p.frame, axis=1)[:, : p.max_lag + 1]


@numba.njit(cache=True)
def _candidates(
    r,
    energy,
    hop,
    window,
    min_lag,
    sr,
    fmin,
    bins_per_octave,
    thresholds,
    beta_probs,
    boltzmann,
    no_trough_prob,
    centre_ratio,
    centre_power,
    lag_penalty,
    obs,
    freq,
    voiced,
):
    """pYIN's pitch candidates of each frame (steps 1–2 of the module
    docstring), written into ``obs[f, bin]`` (probabilities, summed per bin),
    ``freq[f, bin]`` (Hz of the likeliest candidate in the bin) and
    ``voiced[f]`` (their total, at most 1).

    ``r`` holds each frame's lag products, ``energy`` the running sum of
    squares of the samples the frames were cut from (frame f starts at
    sample f·hop), from which YIN's energy terms follow in O(1)."""
    n_frames, n_lags = r.shape
    n_bins = obs.shape[1]
    n_thr = thresholds.shape[0]
    n_cand = n_lags - min_lag
    x = np.empty(n_cand)  # d'(τ) for τ = min_lag..max_lag
    idx = np.empty(n_cand, np.int64)
    probs = np.empty(n_cand)
    scale = 1.0 - math.exp(-boltzmann)
    for f in range(n_frames):
        a = f * hop
        e0 = energy[a + window] - energy[a]
        cum = 0.0
        silent = False
        for tau in range(1, n_lags):
            d = e0 + energy[a + tau + window] - energy[a + tau] - 2.0 * r[f, tau]
            d = max(d, 0.0) + lag_penalty * tau * e0 / window
            cum += d
            if tau >= min_lag:
                # Silence or a constant (d ≡ 0, below ~-150 dBFS per sample)
                # is aperiodic, not perfectly periodic.
                if cum <= 1e-15 * window * tau:
                    silent = True
                    break
                x[tau - min_lag] = d * tau / cum
        if silent:
            voiced[f] = 0.0
            continue
        n = 0
        for i in range(1, n_cand - 1):
            if x[i] < x[i - 1] and x[i] <= x[i + 1]:
                idx[n] = i
                probs[n] = 0.0
                n += 1
        if n == 0:
            voiced[f] = 0.0
            continue
        lowest = 0
        for m in range(1, n):
            if x[idx[m]] < x[idx[lowest]]:
                lowest = m
        for k in range(n_thr):
            th = thresholds[k]
            below = 0
            for m in range(n):
                if x[idx[m]] < th:
                    below += 1
            if below == 0:
                probs[lowest] += no_trough_prob * beta_probs[k]
                continue
            norm = beta_probs[k] * scale / (1.0 - math.exp(-boltzmann * below))
            pos = 0
            for m in range(n):
                if x[idx[m]] < th:
                    probs[m] += norm * math.exp(-boltzmann * pos)
                    pos += 1
        frame = window + n_lags - 1
        mid = a + frame // 2
        h = max(1, hop // 2)
        e_mid = (energy[mid + h] - energy[mid - h]) / (2 * h)
        e_all = (energy[a + frame] - energy[a]) / frame
        gain = min(1.0, e_mid / (centre_ratio * e_all)) ** centre_power if centre_ratio > 0 else 1.0
        total = 0.0
        for m in range(n):
            pr = probs[m] * gain
            if pr <= 0.0:
                continue
            i = idx[m]
            c2 = x[i + 1] + x[i - 1] - 2.0 * x[i]
            c1 = 0.5 * (x[i + 1] - x[i - 1])
            shift = -c1 / c2 if abs(c1) < abs(c2) else 0.0
            hz = sr / (min_lag + i + shift)
            b = int(round(bins_per_octave * math.log2(hz / fmin)))
            b = min(max(b, 0), n_bins - 1)
            if pr > obs[f, b]:
                freq[f, b] = hz
            obs[f, b] += pr
            total += pr
        voiced[f] = min(1.0, total)


@numba.njit(cache=True)
def _band_max(dst, src, log_trans, k, half):
    """dst[j] = max(dst[j], src[i] + log_trans[k, i]) for j = i + k − half."""
    n = dst.shape[0]
    shift = k - half
    lo, hi = max(0, shift), min(n, n + shift)
    d = dst[lo:hi]
    s = src[lo - shift : hi - shift]
    lt = log_trans[k, lo - shift : hi - shift]
    for q in range(hi - lo):  # contiguous and branch-free: vectorised
        a = s[q] + lt[q]
        b = d[q]
        d[q] = a if a > b else b


@numba.njit(cache=True)
def _best_source(prev_v, prev_u, log_trans, j, from_v, from_u):
    """Argmax over the sources of state j (voiced bins, then unvoiced bins as
    n + i) of value + transition, ``from_v``/``from_u`` being the voicing
    terms (stay or switch)."""
    n = prev_v.shape[0]
    half = log_trans.shape[0] // 2
    best = -np.inf
    arg = j
    for i in range(max(0, j - half), min(n, j + half + 1)):
        lt = log_trans[j - i + half, i]
        a = prev_v[i] + lt + from_v
        if a > best:
            best, arg = a, i
        b = prev_u[i] + lt + from_u
        if b > best:
            best, arg = b, n + i
    return arg


@numba.njit(cache=True)
def _viterbi(log_obs, log_unvoiced, log_trans, log_stay, log_switch, beam):
    """Most likely state per frame of the pYIN HMM: bins 0..n−1 voiced,
    n..2n−1 unvoiced. ``log_obs`` (frames × n) is the voiced states' log
    observation, ``log_unvoiced`` (frames) every unvoiced state's;
    ``log_trans[k, i]`` the log probability of the move from bin i to
    bin i + k − half (:func:`_log_transition`).

    Exact max-product decoding except that voiced states more than ``beam``
    (natural log units) below the frame's best are not extended: a voiced bin
    without a candidate scores log(tiny) ≈ −708, so this leaves only the few
    candidate bins of the previous frame to extend, while the unvoiced layer
    (equal observations in every bin) is updated in full. The forward pass
    keeps no back-pointers; it stores each frame's scores (float32, relative
    to the frame's best) and the trace-back recomputes the one argmax per
    frame it needs."""
    n_frames, n = log_obs.shape
    width = log_trans.shape[0]
    half = width // 2
    scores = np.empty((n_frames, 2, n), np.float32)
    prev_v = np.empty(n)
    prev_u = np.empty(n)
    best_v = np.empty(n)
    best_u = np.empty(n)
    init = -math.log(2 * n)
    for j in range(n):
        prev_v[j] = init + log_obs[0, j]
        prev_u[j] = init + log_unvoiced[0]
    for t in range(n_frames):
        if t > 0:
            best_u[:] = -1e300
            for k in range(width):
                _band_max(best_u, prev_u, log_trans, k, half)
            best_v[:] = -1e300
            top = max(prev_v.max(), prev_u.max())
            for i in range(n):
                if prev_v[i] > top - beam:
                    for j in range(max(0, i - half), min(n, i + half + 1)):
                        a = prev_v[i] + log_trans[j - i + half, i]
                        if a > best_v[j]:
                            best_v[j] = a
            lu = log_unvoiced[t]
            for j in range(n):
                prev_v[j] = log_obs[t, j] + max(best_v[j] + log_stay, best_u[j] + log_switch)
                prev_u[j] = lu + max(best_u[j] + log_stay, best_v[j] + log_switch)
        top = max(prev_v.max(), prev_u.max())
        for j in range(n):
            prev_v[j] -= top
            prev_u[j] -= top
            scores[t, 0, j] = prev_v[j]
            scores[t, 1, j] = prev_u[j]
    states = np.empty(n_frames, np.int64)
    s = int(np.argmax(scores[n_frames - 1].ravel()))
    states[n_frames - 1] = s
    for t in range(n_frames - 1, 0, -1):
        voiced = s < n
        j = s if voiced else s - n
        sv = log_stay if voiced else log_switch
        su = log_switch if voiced else log_stay
        s = _best_source(scores[t - 1, 0], scores[t - 1, 1], log_trans, j, sv, su)
        states[t - 1] = s
    return states


def _observe(y: np.ndarray, p: _Params, f0: int, f1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate probabilities (frames × bins), their frequencies and the
    voiced probability of frames [f0, f1)."""
    thresholds, beta_probs = _threshold_prior()
    obs = np.zeros((f1 - f0, p.n_bins))
    freq = np.zeros((f1 - f0, p.n_bins), np.float32)
    voiced = np.zeros(f1 - f0)
    pad = p.frame // 2
    for b0 in range(f0, f1, YIN_BLOCK_FRAMES):
        b1 = min(f1, b0 + YIN_BLOCK_FRAMES)
        # Samples [a, b) of y zero-padded by `pad` on each side.
        a, b = b0 * p.hop, (b1 - 1) * p.hop + p.frame
        chunk = np.zeros(b - a, np.float32)
        lo, hi = max(a - pad, 0), min(b - pad, len(y))
        if hi > lo:
            chunk[lo - (a - pad) : hi - (a - pad)] = y[lo:hi]
        if not np.all(np.isfinite(chunk)):
            raise ValueError("samples must be finite (no NaN or infinity)")
        energy = np.zeros(len(chunk) + 1)
        np.cumsum(np.square(chunk, dtype=np.float64), out=energy[1:])
        frames = np.lib.stride_tricks.sliding_window_view(chunk, p.frame)[:: p.hop]
        s = slice(b0 - f0, b1 - f0)
        _candidates(
            _lag_products(frames, p),
            energy,
            p.hop,
            p.window,
            p.min_lag,
            float(p.sr),
            p.fmin,
            12.0 * BINS_PER_SEMITONE,
            thresholds,
            beta_probs,
            BOLTZMANN_PARAMETER,
            NO_TROUGH_PROB,
            CENTRE_RATIO,
            CENTRE_POWER,
            LAG_PENALTY,
            obs[s],
            freq[s],
            voiced[s],
        )
    return obs, freq, voiced


def _decode(obs: np.ndarray, voiced: np.ndarray, p: _Params) -> np.ndarray:
    tiny = np.finfo(np.float64).tiny
    log_obs = np.log(obs + tiny)
    log_unvoiced = np.log((1.0 - voiced) / p.n_bins + tiny)
    return _viterbi(
        log_obs,
        log_unvoiced,
        _log_transition(p.n_bins, p.hop / p.sr),
        math.log(1.0 - SWITCH_PROB),
        math.log(SWITCH_PROB),
        VITERBI_BEAM,
    )


def _validate(y: np.ndarray, sr: int, fmin: float, fmax: float) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"expected mono samples of shape (n,), got {y.shape}")
    if not np.issubdtype(y.dtype, np.floating):
        raise ValueError(f"expected float samples in [-1, 1], got {y.dtype}; scale integer PCM first")
    lo, hi = FMIN_BOUNDS
    if not (lo <= fmin < fmax <= hi):
        raise ValueError(f"need {lo} <= fmin < fmax <= {hi} Hz, got fmin={fmin}, fmax={fmax}")
    if fmax >= sr / 2:
        raise ValueError(f"fmax={fmax} Hz must be below the Nyquist frequency {sr / 2} Hz")
    return y


def track_pitch(y: np.ndarray, sr: int, fmin: float = 65.0, fmax: float = 1000.0) -> Pitch:
    """f0 (Hz) of a monophonic line every ~11.6 ms by pYIN, and its notes.

    ``y``: mono float samples at ``sr`` Hz. ``fmin``/``fmax`` (Hz) bound the
    f0 searched for, within :data:`FMIN_BOUNDS`. Input shorter than one
    analysis frame (93 ms at the default ``fmin``) gives empty lists.
    Raises ValueError for non-finite samples or out-of-range options.
    """
    y = _validate(y, sr, fmin, fmax)
    p = _params(int(sr), float(fmin), float(fmax))
    hop_s = p.hop / p.sr
    if len(y) < p.frame:
        return Pitch(hop_s, [], [], [])
    total = 1 + len(y) // p.hop
    f0 = np.zeros(total)
    prob = np.zeros(total)
    bin_hz = p.fmin * 2.0 ** (np.arange(p.n_bins) / (12 * BINS_PER_SEMITONE))
    for s in range(0, total, BLOCK_FRAMES):
        e = min(total, s + BLOCK_FRAMES)
        a, b = max(0, s - OVERLAP_FRAMES), min(total, e + OVERLAP_FRAMES)
        obs, freq, voiced = _observe(y, p, a, b)
        states = _decode(obs, voiced, p)[s - a : e - a]
        rows = np.arange(s - a, e - a)
        is_voiced = states < p.n_bins
        bins = np.minimum(states, p.n_bins - 1)
        hz = np.where(freq[rows, bins] > 0, freq[rows, bins], bin_hz[bins])
        f0[s:e] = np.where(is_voiced, np.clip(hz, p.fmin, p.fmax), 0.0)
        prob[s:e] = voiced[s - a : e - a]
    return Pitch(
        hop_s,
        [round(float(v), 2) if v > 0 else None for v in f0],
        [round(float(v), 3) for v in prob],
        segment_notes(f0, hop_s),
    )


def segment_notes(f0: np.ndarray, hop_s: float) -> list[Note]:
    """Notes of an f0 track (Hz per frame, 0 where unvoiced), as described in
    the module docstring."""
    f0 = np.asarray(f0, np.float64)
    semis = np.full(len(f0), np.nan)
    v = f0 > 0
    semis[v] = 69.0 + 12.0 * np.log2(f0[v] / 440.0)
    median_frames = max(1, round(NOTE_MEDIAN_SECONDS / hop_s))
    notes: list[Note] = []
    members: list[int] = []  # frames of the current note

    def close() -> None:
        if members:
            start, end = members[0] * hop_s, (members[-1] + 1) * hop_s
            if end - start >= NOTE_MIN_SECONDS - 1e-9:
                hz = float(np.median(f0[members]))
                midi = round(69 + 12 * math.log2(hz / 440.0))
                notes.append(Note(round(start, 3), round(end, 3), midi, round(hz, 2)))
        members.clear()

    t, n = 0, len(f0)
    while t < n:
        if not v[t]:
            # A one-frame dropout inside a note is bridged if the pitch resumes.
            if members and t + 1 < n and v[t + 1] and members[-1] == t - 1:
                ref = np.median(semis[members[-median_frames:]])
                if abs(semis[t + 1] - ref) < NOTE_SPLIT_SEMITONES:
                    t += 1
                    continue
            close()
            t += 1
            continue
        if not members:
            members.append(t)
            t += 1
            continue
        ref = float(np.median(semis[members[-median_frames:]]))
        dev = abs(semis[t] - ref)
        if dev * 100.0 <= NOTE_STABLE_CENTS or dev < NOTE_SPLIT_SEMITONES:
            members.append(t)
        else:
            ahead = semis[t : t + NOTE_SPLIT_FRAMES]
            if len(ahead) == NOTE_SPLIT_FRAMES and np.all(np.abs(ahead - ref) >= NOTE_SPLIT_SEMITONES):
                close()
                members.append(t)
            # else: a brief excursion (octave slip, glitch); skip the frame
        t += 1
    close()
    return notes


def warmup() -> None:
    """Compile (or load from numba's cache) the two kernels, so the first job
    does not pay their JIT (~2 s cold)."""
    t = np.arange(int(0.5 * 22050)) / 22050
    track_pitch((0.3 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32), 22050)
