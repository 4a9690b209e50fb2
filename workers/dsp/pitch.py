"""Predominant f0 track (probabilistic YIN, a lead classifier) and its notes.

Method: pYIN (Mauch & Dixon, "pYIN: a fundamental frequency estimator using
probabilistic threshold distributions", ICASSP 2014) with the parameters of
its reference implementation, which librosa.pyin also uses:

1. **YIN** (de Cheveigné & Kawahara, JASA 111(4), 2002) on every frame: the
   difference function d(τ) = Σ_{j<W} (x_j − x_{j+τ})² over an integration
   window of W samples, for all lags at once from one FFT cross-correlation
   per frame and running sums of x², then its cumulative-mean normalisation
   d'(τ) = d(τ) · τ / Σ_{k≤τ} d(k).
2. **Candidates**: every local minimum (trough) of d' strictly inside the
   lags of ``fmax``…``fmin``. For each of 100 thresholds s, weighted by a
   Beta(2, 18) prior, the troughs below s share the weight by a
   Boltzmann(λ = 2) prior on their order (the first trough below the
   threshold is likeliest, as in YIN); when no trough is below s, 1 % of its
   weight goes to the lowest trough. The summed weights are the candidates'
   probabilities, their total the frame's voiced probability. Each
   candidate's lag is refined by parabolic interpolation of d(τ).
3. **HMM**: 0.1-semitone pitch bins from ``fmin`` to ``fmax``, each voiced or
   unvoiced. Pitch moves at most ±5 semitones per frame with a triangular
   preference for small moves (librosa's max_transition_rate, 35.92
   octaves/s); voicing switches with probability 0.01 per frame. A voiced
   state's observation is its bin's candidate probability, an unvoiced
   state's (1 − voiced probability) / bins. The Viterbi path gives voicing
   and pitch; a voiced frame's f0 is the interpolated candidate in the
   path's bin.

Additions to pYIN, for a melody in a mix (measured in
``bench/docs/tonal.md``):

* **Shorter-period preference.** Over an accompaniment pYIN errs mostly an
  octave low: the accompaniment fills in the trough at the true period τ
  about as much as the one at 2τ. How the voiced probability is *shared
  among troughs* is taken from a penalised d, d(τ) + 3 · τ · P (P the
  window's mean power: as if τ more samples went unexplained), which
  favours the shorter of two periods that fit about equally well; the total
  and the period refinement stay YIN's own.
* **Centre level.** A frame sees ±27 ms around its centre, so a note is
  heard just before its onset and after its end. The voiced probability is
  multiplied by min(1, L_c / (0.3 · L_f))³, L_c being the mean power in the
  half-hop either side of the frame's centre and L_f that of the whole
  frame: a gap at the edge of a note fades to unvoiced.
* **Predominant pitch** (Klapuri's harmonic summation; Salamon & Gómez's
  Melodia voicing, IEEE TASLP 20(6), 2012). A Hann-windowed 2048-sample
  spectrum (93 ms) at each frame's centre gives every 0.1-semitone bin f the
  salience Σ_{h≤5} 0.8^(h−1) · |X(h·f)|. Each YIN candidate's share of the
  frame is multiplied by (salience / the frame's peak salience)^512, so the
  loudest harmonic source — the lead, not a bass or chord partial — takes
  the frame. The voiced probability becomes a product of three logistic
  terms in the frame's peak salience S (dB): 10:1 odds per 3 dB above the
  track's mean S; 10× less per 10 dB once S is more than 6 dB below its
  maximum over the last 0.6 s (a release or reverb tail while the band
  plays on); and S at least 3.5 dB above the mean salience over all bins
  (white noise: 1.3–2.2 dB; a held note: 5–9 dB).

* **Lead classifier** (pitch-2). Over a band the salience peak and its
  voicing still miss most where the benchmark's songs are hard: the first
  50–100 ms of soft-attack notes (voicing), a square lead (odd harmonics:
  its octave below is nearly as salient) followed by the comping, passing
  tones. A small network learns which semitone the lead holds from the
  context a frame rule cannot weigh: the 5-harmonic salience of the same
  spectra at each semitone of MIDI 36–96 (the largest of five points 20
  cents apart, so a detuned or gliding note counts), in dB over the track's
  mean peak, at frames −6, −3, 0, +3, +6 and +10 (−70 … +116 ms: the onset
  ahead is what an attack's first frames lack; beyond the ends the edge
  frame repeats), plus the frame's salience relative to its own peak: 427
  inputs, a 427-256-128-62 ReLU MLP (softmax over 61 semitones and "no
  lead"; numpy inference, ``workers/dsp/mlp.py``; float16 weights in
  ``data/leadnet.npz``, 0.23 MB, trained from scratch by
  ``bench/train_melody.py`` on FluidSynth renders of GM songs — FluidR3 and
  TimGM6mb, every melodic lead program, the lead −3 to +16 dB over the band
  and alone, a third of the songs also with the lead rendered an octave
  lower (real low registers), shifted in pitch down to a bass voice — with
  the lead's MIDI notes as the reference). On each frame each of its 8 likeliest semitones
  (posterior ≥ 0.001) puts its probability on one pitch bin — the
  semitone's likeliest YIN candidate (whose f0 is exact), else the bin of
  its most salient grid point — scaled by 2 / bins (against the unvoiced
  layer's (1 − voiced) / bins: a semitone must be about half as likely as
  "no lead" to hold the path; 1, 4 and 8 were tried, see
  ``bench/docs/tonal.md``); the voiced probability is their sum, and the
  same HMM decodes; both are scaled by YIN's centre-level factor (so that
  the network's look-ahead does not voice the frames before an onset).
  Frames it calls "no lead" (< 0.5) whose salience-weighted best candidate
  lies below MIDI 89 and is likelier keep the salience rule (a sung-like or
  low voice the network did not learn). Where fmin/fmax reach outside
  MIDI 36–88 (65–1319 Hz, the registers it was trained on), frames whose salience-weighted best
  candidate lies outside keep the salience rule above. In the spirit of
  the frame classifiers of Bittner et al. (deep salience, ISMIR 2017) and
  Kum et al. (ISMIR 2016), at a size that costs about what the salience
  rule it replaces cost.

* **Monophonic input** (the gate). The classifier wins over a band but
  loses on a clean low voice (a bass voice at MIDI 40–55: RPA 0.93 against
  the salience rule's ≥ 0.95; its MIDI 40 notes missed), which the
  salience rule was built and tested on. So each track is first measured:
  on the salience-statistics frames (every 4th, 93 ms Hann spectra) whose
  lead-grid peak salience is at least the track's mean (where the
  salience rule would voice), the **harmonic energy share** — the share of
  the frame's |X|² (above DC) in the FFT bins within ±1 semitone (at least
  ±2 bins, the window's main lobe; at most half the harmonic spacing) of
  h · f0, h = 1 … 24, f0 the frame's most salient lead-grid pitch. One
  voice and its harmonics score near 1 whatever its vibrato (a semitone
  holds a smeared partial); a band's other notes, drums and noise fall
  outside. The track's value is the lower quartile over those frames (a
  quarter of the frames may hold a note change or a tail). At
  MONO_SHARE = 0.975 or more the whole track takes pitch-1's salience rule
  exactly (same observations, same decoding); below, the classifier.
  Chosen only on the unit tests' material and the tune/dev splits
  (``bench/docs/tonal.md``): clean melodies 0.989–0.999, the same melodies
  over a band 6–12 dB down ≤ 0.943, band leads ≤ 0.828, tune songs ≤ 0.863,
  dev ≤ 0.956; the threshold lies between, nearer the clean side's gap in
  residual energy (1.1 % vs ≥ 4.4 %). The median over frames and ±50 cents
  over 16 harmonics separated less (clean ≥ 0.981, dev up to 0.970). One
  decision per track, not per 47 s block: a block boundary would switch
  tracker mid-note, and the blocks must decode as the whole track does.

Frames are centred on ``t · hop`` with a 256-sample hop at 22.05 kHz
(11.6 ms; the hop scales with ``sr``). A frame holds 3.5 periods of
``fmin`` — W = 2.5 periods plus the longest lag — i.e. 1200 samples (54 ms)
at 22.05 kHz for fmin = 65 Hz: longer frames gain little in a mix but
smear onsets and gaps.

Notes: runs of voiced frames with a stable pitch. A frame within ±50 cents
of the note's running median (over its last 0.3 s of such frames) extends
the note and feeds the median; within 0.7 semitone it extends the note only
(a vibrato peak, a glide); a departure of ≥ 0.7 semitone that persists for 3
frames (35 ms) starts a new note, a shorter one (an octave slip) is
ignored. An unvoiced gap ends a note unless it is a single frame and the
pitch resumes; so does a dip of the centre level 10 dB below its maximum
within 50 ms on both sides — the re-attack of a repeated pitch. Notes
shorter than 60 ms are dropped. ``start``/``end`` are the outer edges of
the first and last frame (±½ hop around their centres), ``hz`` the median
f0 of the note's stable frames, ``midi`` round(69 + 12 log2(hz / 440)).

Cost: ~0.2 s of CPU per minute of audio at fmin 100, fmax 1100 Hz on a
shared 2-core box (pitch-1: ~0.17–0.2 on the same runs; the gate's share
adds a few per cent, on every 4th frame's spectra the statistics pass
computes anyway; the Viterbi pass
about a sixth: the unvoiced layer is a banded max-plus product, voiced
states are extended only from bins that had a candidate; the classifier's
network ~8 %; the salience rule runs only on the frames that may need it).
Memory: blocks of 4096 frames (47 s) whose Viterbi passes run 256 frames
(3 s) further on each side, only the block's own frames kept (the tests
compare with whole-track decoding): ~65 MB of working memory whatever the
length, plus the outputs (~7 MB for 20 minutes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numba
import numpy as np
from scipy import fft as sfft
from scipy import ndimage, stats

from workers.dsp import mlp
from workers.dsp.errors import OptionOutOfRange, UnprocessableAudio

FMIN_BOUNDS = (30.0, 2000.0)  # what the API accepts for fmin and fmax (fmin < fmax)

HOP_SECONDS = 256 / 22050  # 11.6 ms
FRAME_PERIODS = 2.5  # YIN window W in periods of fmin; the frame adds the longest lag
N_THRESHOLDS = 100
BETA_PARAMETERS = (2.0, 18.0)  # prior over the YIN threshold: mean 0.1
BOLTZMANN_PARAMETER = 2.0
NO_TROUGH_PROB = 0.01
BINS_PER_SEMITONE = 10
MAX_OCTAVES_PER_SECOND = 35.92  # librosa's max_transition_rate: 5 semitones per 11.6 ms frame
SWITCH_PROB = 0.01
CENTRE_RATIO = 0.3  # centre level (power) below 0.3 × the frame's ...
CENTRE_POWER = 3.0  # ... scales the voiced probability by the ratio cubed
LAG_PENALTY = 3.0  # weight of τ · mean power added to d(τ) when sharing among troughs
SAL_FFT = 2048  # salience spectra: Hann window of 2048 samples (93 ms) at 22.05 kHz, scaled with sr
SAL_HARMONICS = 5  # harmonics summed into a pitch's salience ...
SAL_ALPHA = 0.8  # ... harmonic h weighted SAL_ALPHA ** (h - 1)
SAL_POWER = 512.0  # candidate probability × (salience / frame's peak salience) ** SAL_POWER
SAL_VOICED_DB = 3.0  # voiced prob.: logistic in peak salience − track mean (dB), 10:1 odds per 3 dB
SAL_DROP_DB = 6.0  # a frame 6 dB below the peak salience of the last ...
SAL_DROP_SECONDS = 0.3  # ... 2 × 0.3 s (a release, a reverb tail) loses voiced probability ...
SAL_DROP_SLOPE_DB = 10.0  # ... 10× per 10 dB further down
SAL_STATS_RANGE_DB = 60.0  # the track mean is over frames within 60 dB of the loudest ...
SAL_STATS_STEP = 4  # ... and over every 4th frame
SAL_CREST_DB = 3.5  # peak salience < 3.5 dB above the frame's mean over all pitches (noise) ...
SAL_CREST_SLOPE_DB = 0.5  # ... is unvoiced: logistic, 10:1 odds per 0.5 dB
VITERBI_BEAM = 200.0  # voiced states e^200 less likely than the best are not extended

NOTE_STABLE_CENTS = 50.0
NOTE_SPLIT_SEMITONES = 0.7
NOTE_SPLIT_FRAMES = 3
NOTE_MEDIAN_SECONDS = 0.3
NOTE_MIN_SECONDS = 0.06
NOTE_DIP_DB = 10.0  # a re-attack: the level dips this far below both sides ...
NOTE_DIP_SECONDS = 0.05  # ... within this time

LEAD_WEIGHTS = "leadnet"  # workers/dsp/data/leadnet.npz (bench/train_melody.py)
LEAD_MIDI_MIN = 36  # the lead classifier's pitches: MIDI 36 (65 Hz) ...
LEAD_CLASSES = 62  # ... to 96 (2093 Hz), one class per semitone, and "no lead"
LEAD_TRUST_MIDI = 88  # frames whose best candidate is above MIDI 88 (1319 Hz; leads trained on
# reach ~85 and are shifted up to +7) keep the salience rule
LEAD_SURE_MIDI = 89  # below MIDI 89 (pitch-2: 48) the salience rule may voice a frame the classifier does not
LEAD_LOW_VOICED = 0.5  # ... on frames whose lead posterior sums to less (0.9 tried: dev RPA 0.844 → 0.817)
LEAD_SUBBINS = (-0.4, -0.2, 0.0, 0.2, 0.4)  # salience at these offsets (semitones), max-pooled
LEAD_OFFSETS = (-6, -3, 0, 3, 6, 10)  # frames of context the classifier sees
LEAD_FLOOR = -3.0  # features: dB / 20, clipped at 60 dB below the track's reference
LEAD_CEIL = 1.5
LEAD_MIN_PROB = 1e-3  # semitones below this posterior are not candidates
LEAD_TOP = 8  # at most this many candidate semitones per frame
LEAD_VOICED_WEIGHT = 2.0  # a semitone's posterior counts as 2 / bins against "no lead" (module docstring)

MONO_SHARE = 0.975  # a track whose loud frames' harmonic energy share (lower quartile) reaches this
# is monophonic: the salience rule alone (pitch-1). Chosen on the unit-test melodies and tune/dev:
# clean ≥ 0.989, over a band ≤ 0.943, tune ≤ 0.863, dev ≤ 0.956 (module docstring)
MONO_CENTS = 100.0  # a harmonic's energy: FFT bins within ±1 semitone (at least ±2 bins) of h · f0 ...
MONO_HARMONICS = 24  # ... for h = 1 … 24
MONO_QUANTILE = 25.0  # the track's share: this percentile over its loud frames

BLOCK_FRAMES = 4096  # frames decoded per Viterbi block
OVERLAP_FRAMES = 256  # extra frames decoded on each side of a block
YIN_BLOCK_FRAMES = 512  # frames per FFT batch: 512 × 1200 complex64 spectra ≈ 2.5 MB each


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
    ``f0_hz[i]`` (Hz, 2 decimals) is None where the Viterbi path is unvoiced;
    ``voiced_prob[i]`` is the voiced probability in [0, 1] (3 decimals): the
    salience-based one wherever pYIN found a candidate, else 0 (module
    docstring)."""

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
    # At least two hops, so that the frame's centre level (± half a hop) lies
    # inside it even when a high fmin asks for a very short frame.
    frame = sfft.next_fast_len(max(math.ceil((FRAME_PERIODS + 1) * sr / fmin), 2 * hop), real=True)
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
def _troughs(x, idx):
    """Indexes of the local minima of ``x`` (ends excluded) into ``idx``;
    returns their count."""
    n = 0
    for i in range(1, x.shape[0] - 1):
        if x[i] < x[i - 1] and x[i] <= x[i + 1]:
            idx[n] = i
            n += 1
    return n


@numba.njit(cache=True)
def _threshold_probs(x, idx, n, thresholds, beta_probs, decay, no_trough_prob, probs):
    """pYIN's probability of each of the ``n`` troughs ``x[idx[:n]]`` (in lag
    order) into ``probs``; returns their sum. ``decay[m]`` = exp(−λ m)."""
    lowest = 0
    for m in range(n):
        probs[m] = 0.0
        if x[idx[m]] < x[idx[lowest]]:
            lowest = m
    for k in range(thresholds.shape[0]):
        th = thresholds[k]
        below = 0
        for m in range(n):
            if x[idx[m]] < th:
                below += 1
        if below == 0:
            probs[lowest] += no_trough_prob * beta_probs[k]
            continue
        # Boltzmann pmf over the troughs below the threshold, in lag order:
        # (1 − e^−λ) e^−λm / (1 − e^−λN)
        norm = beta_probs[k] * (1.0 - decay[1]) / (1.0 - decay[below])
        pos = 0
        for m in range(n):
            if x[idx[m]] < th:
                probs[m] += norm * decay[pos]
                pos += 1
    total = 0.0
    for m in range(n):
        total += probs[m]
    return total


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
    level,
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
    n_cand = n_lags - min_lag
    frame = window + n_lags - 1
    half_centre = max(1, hop // 2)
    x = np.empty(n_cand)  # d'(τ) for τ = min_lag..max_lag
    xp = np.empty(n_cand)  # the same with the lag penalty
    raw = np.empty(n_cand)  # d(τ)
    idx = np.empty(n_cand, np.int64)
    probs = np.empty(n_cand)
    decay = np.exp(-boltzmann * np.arange(n_cand + 1))
    for f in range(n_frames):
        a = f * hop
        mid = a + frame // 2
        level[f] = (energy[mid + half_centre] - energy[mid - half_centre]) / (2 * half_centre)
        e_all = (energy[a + frame] - energy[a]) / frame
        e0 = energy[a + window] - energy[a]
        cum = 0.0
        cum_p = 0.0
        silent = False
        for tau in range(1, n_lags):
            d = e0 + energy[a + tau + window] - energy[a + tau] - 2.0 * r[f, tau]
            d = max(d, 0.0)
            dp = d + lag_penalty * tau * e0 / window
            cum += d
            cum_p += dp
            if tau >= min_lag:
                # Silence or a constant (d ≡ 0, below ~-150 dBFS per sample)
                # is aperiodic, not perfectly periodic.
                if cum <= 1e-15 * window * tau:
                    silent = True
                    break
                x[tau - min_lag] = d * tau / cum
                raw[tau - min_lag] = d
                xp[tau - min_lag] = dp * tau / cum_p
        voiced[f] = 0.0
        if silent:
            continue
        # The frame's voiced probability, from YIN's own d' ...
        n = _troughs(x, idx)
        if n == 0:
            continue
        total = _threshold_probs(x, idx, n, thresholds, beta_probs, decay, no_trough_prob, probs)
        # ... shared among the troughs of the penalised d', which prefers
        # the shorter of two periods that fit about as well.
        n = _troughs(xp, idx)
        if n == 0:
            continue
        share = _threshold_probs(xp, idx, n, thresholds, beta_probs, decay, no_trough_prob, probs)
        if e_all <= 1e-12:
            # Near-digital silence after a loud passage: the running energy sum
            # cannot resolve it (float64 cancellation), so it is not voiced.
            continue
        gain = min(1.0, max(0.0, level[f]) / (centre_ratio * e_all)) ** centre_power
        scale = min(1.0, total) * gain / share
        for m in range(n):
            pr = probs[m] * scale
            if pr <= 0.0:
                continue
            i = idx[m]
            # Refine on YIN's own d', whose trough the penalty's slope has
            # pulled to a shorter lag (by several lags for a broad trough).
            while i > 1 and x[i - 1] < x[i]:
                i -= 1
            while i < n_cand - 2 and x[i + 1] < x[i]:
                i += 1
            c2 = raw[i + 1] + raw[i - 1] - 2.0 * raw[i]
            c1 = 0.5 * (raw[i + 1] - raw[i - 1])
            shift = -c1 / c2 if abs(c1) < abs(c2) else 0.0
            hz = sr / (min_lag + i + shift)
            b = int(round(bins_per_octave * math.log2(hz / fmin)))
            b = min(max(b, 0), n_bins - 1)
            if pr > obs[f, b]:
                freq[f, b] = hz
            obs[f, b] += pr
            voiced[f] += pr
        voiced[f] = min(1.0, voiced[f])  # rounding


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


def _observe(y: np.ndarray, p: _Params, f0: int, f1: int) -> tuple[np.ndarray, ...]:
    """Candidate probabilities (frames × bins), their frequencies, and the
    voiced probability and centre level of frames [f0, f1)."""
    thresholds, beta_probs = _threshold_prior()
    obs = np.zeros((f1 - f0, p.n_bins))
    freq = np.zeros((f1 - f0, p.n_bins), np.float32)
    voiced = np.zeros(f1 - f0)
    level = np.zeros(f1 - f0)
    pad = p.frame // 2
    for b0 in range(f0, f1, YIN_BLOCK_FRAMES):
        b1 = min(f1, b0 + YIN_BLOCK_FRAMES)
        # Samples [a, b) of y zero-padded by `pad` on each side.
        a, b = b0 * p.hop, (b1 - 1) * p.hop + p.frame
        chunk = np.zeros(b - a, np.float32)
        lo, hi = max(a - pad, 0), min(b - pad, len(y))
        if hi > lo:
            chunk[lo - (a - pad) : hi - (a - pad)] = y[lo:hi]
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
            level[s],
        )
    return obs, freq, voiced, level


@numba.njit(cache=True)
def _salience_weight(mag, df, fmin, bins_per_octave, n_harm, alpha, power, obs, peaks, crest):
    """Harmonic-summation salience of every pitch bin in each frame of ``mag``
    (magnitude spectra, ``df`` Hz apart): Σ_h alpha^(h−1) · |X| at h·f (the
    largest of the 3 nearest FFT bins). Writes each frame's peak salience and
    its ratio to the mean over all bins into ``peaks``/``crest``; if ``obs``
    has rows, scales each candidate's probability by (salience / peak)^power,
    keeping the frame's total."""
    n_frames = mag.shape[0]
    n_bins = obs.shape[1]
    weigh = obs.shape[0] > 0
    n_fft = mag.shape[1]
    sal = np.empty(n_bins)
    bin_hz = np.empty(n_bins)
    for b in range(n_bins):
        bin_hz[b] = fmin * 2.0 ** (b / bins_per_octave)
    for f in range(n_frames):
        peaks[f] = 0.0
        crest[f] = 0.0
        peak = 0.0
        for b in range(0, n_bins):
            hz = bin_hz[b]
            acc = 0.0
            w = 1.0
            for h in range(1, n_harm + 1):
                k = hz * h / df
                k0 = int(k + 0.5)
                if k0 + 1 >= n_fft:
                    break
                m = mag[f, k0]
                if mag[f, k0 - 1] > m:
                    m = mag[f, k0 - 1]
                if mag[f, k0 + 1] > m:
                    m = mag[f, k0 + 1]
                acc += w * m
                w *= alpha
            sal[b] = acc
            if acc > peak:
                peak = acc
        peaks[f] = peak
        if peak <= 0.0:
            continue
        mean_sal = 0.0
        for b in range(n_bins):
            mean_sal += sal[b]
        crest[f] = peak * n_bins / mean_sal
        if not weigh:
            continue
        before = 0.0
        after = 0.0
        for b in range(n_bins):
            if obs[f, b] > 0.0:
                before += obs[f, b]
                obs[f, b] *= (sal[b] / peak) ** power
                after += obs[f, b]
        if after > 0.0:
            for b in range(n_bins):
                obs[f, b] *= before / after


def _salience(mag: np.ndarray, df: float, p: _Params, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_salience_weight` with the tracker's constants: each frame's
    peak salience and crest, ``obs`` weighted in place where it has rows."""
    peaks, crest = np.zeros(len(mag)), np.zeros(len(mag))
    bins_per_octave = 12.0 * BINS_PER_SEMITONE
    _salience_weight(mag, df, p.fmin, bins_per_octave, SAL_HARMONICS, SAL_ALPHA, SAL_POWER, obs, peaks, crest)
    return peaks, crest


def _salience_mag(y: np.ndarray, p: _Params, f0: int, f1: int, step: int = 1) -> tuple[np.ndarray, float]:
    """Hann-windowed magnitude spectra of frames f0, f0 + step, … < f1 (centred
    as the YIN frames) and their bin spacing in Hz."""
    n = sfft.next_fast_len(max(64, round(SAL_FFT * p.sr / 22050)), real=True)
    half = n // 2
    a, b = f0 * p.hop - half, (f1 - 1) * p.hop + n - half
    chunk = np.zeros(b - a, np.float32)
    lo, hi = max(a, 0), min(b, len(y))
    if hi > lo:
        chunk[lo - a : hi - a] = y[lo:hi]
    frames = np.lib.stride_tricks.sliding_window_view(chunk, n)[:: p.hop * step]
    win = np.hanning(n).astype(np.float32)
    mag = np.abs(sfft.rfft(frames * win, axis=1))
    return mag, p.sr / n


def _salience_mean_db(
    y: np.ndarray, p: _Params, total: int, pitch_bins: bool = True
) -> tuple[float, float, float]:
    """Mean peak salience (dB) of the track, over every SAL_STATS_STEP-th frame
    within SAL_STATS_RANGE_DB of the loudest: of the tracker's pitch bins
    (NaN unless ``pitch_bins``) and of the lead classifier's semitones; and
    the lower quartile of the harmonic energy share of those frames whose
    lead-grid peak is at least that mean (module docstring, "Monophonic
    input")."""
    db: list[np.ndarray] = [np.zeros(1)]
    lead_db = []
    shares = []
    for s in range(0, total, BLOCK_FRAMES):
        e = min(total, s + BLOCK_FRAMES)
        mag, df = _salience_mag(y, p, s, e, SAL_STATS_STEP)
        sub = _lead_semitones(mag, df).reshape(len(mag), -1)
        top = np.argmax(sub, axis=1)
        lead_db.append(20 * np.log10(np.maximum(sub[np.arange(len(mag)), top], 1e-30)))
        frame_share = np.zeros(len(mag))
        _harmonic_share(mag, df, _lead_grid()[top], MONO_HARMONICS, 2.0 ** (MONO_CENTS / 1200.0), frame_share)
        shares.append(frame_share)
        if not pitch_bins:
            continue
        peaks, _ = _salience(mag, df, p, np.zeros((0, p.n_bins)))
        db.append(20 * np.log10(np.maximum(peaks, 1e-30)))
    mean_db = _reference_db(np.concatenate(db[1:])) if pitch_bins else math.nan
    lead = np.concatenate(lead_db)
    lead_ref = _reference_db(lead)
    loud = lead >= lead_ref
    share = float(np.percentile(np.concatenate(shares)[loud], MONO_QUANTILE)) if loud.any() else 0.0
    return mean_db, lead_ref, share


@numba.njit(cache=True)
def _harmonic_share(mag, df, f0, n_harm, ratio, out):
    """Share of each frame's spectral energy (|X|² above DC) in the FFT bins
    within a factor ``ratio`` (and at least 2 bins: the Hann main lobe) of
    the harmonics h · f0[f], h = 1 … n_harm, each window at most half the
    spacing of harmonics."""
    n_fft = mag.shape[1]
    for f in range(mag.shape[0]):
        total = 0.0
        for k in range(1, n_fft):
            total += mag[f, k] * mag[f, k]
        out[f] = 0.0
        if total <= 0.0 or f0[f] <= 0.0:
            continue
        half_gap = 0.5 * f0[f] / df
        harm = 0.0
        last = 0  # bins below ``last`` already counted
        for h in range(1, n_harm + 1):
            c = h * f0[f] / df
            w = max(2.0, c * (ratio - 1.0))
            w = min(w, half_gap)
            lo = max(last, max(1, int(math.ceil(c - w))))
            hi = min(n_fft - 1, int(math.floor(c + w)))
            for k in range(lo, hi + 1):
                harm += mag[f, k] * mag[f, k]
            if hi + 1 > last:
                last = hi + 1
            if hi >= n_fft - 1:
                break
        out[f] = harm / total


def harmonic_share(y: np.ndarray, sr: int, fmin: float = 65.0, fmax: float = 1000.0) -> float:
    """The track's harmonic energy share (module docstring), which
    :func:`track_pitch` compares with :data:`MONO_SHARE`."""
    y = _validate(y, sr, fmin, fmax)
    p = _params(int(sr), float(fmin), float(fmax))
    if len(y) < p.frame:
        return 0.0
    return _salience_mean_db(y, p, 1 + len(y) // p.hop, pitch_bins=False)[2]


def _reference_db(d: np.ndarray) -> float:
    return float(d[d > d.max() - SAL_STATS_RANGE_DB].mean())


@lru_cache(maxsize=1)
def _lead_grid() -> np.ndarray:
    """Hz of the lead classifier's salience bins: LEAD_SUBBINS around each semitone."""
    midi = LEAD_MIDI_MIN + np.arange(LEAD_CLASSES - 1)[:, None] + np.array(LEAD_SUBBINS)[None, :]
    return 440.0 * 2.0 ** ((midi.ravel() - 69.0) / 12.0)


@numba.njit(cache=True)
def _grid_salience(mag, idx, weights, out):
    """Harmonic-summation salience (as in :func:`_salience_weight`) of each
    frame of ``mag``: out[f, b] = Σ_h weights[h] · (the largest of FFT bins
    idx[b, h] − 1 … + 1); an index of −1 ends the sum."""
    n_fft = mag.shape[1]
    m3 = np.empty(n_fft)
    for f in range(mag.shape[0]):
        row = mag[f]
        m3[0] = row[0]
        for k in range(1, n_fft - 1):
            a = row[k - 1] if row[k - 1] > row[k] else row[k]
            m3[k] = a if a > row[k + 1] else row[k + 1]
        for b in range(idx.shape[0]):
            acc = 0.0
            for h in range(idx.shape[1]):
                k = idx[b, h]
                if k < 0:
                    break
                acc += weights[h] * m3[k]
            out[f, b] = acc


@lru_cache(maxsize=8)
def _grid_index(df: float, n_fft: int) -> np.ndarray:
    """FFT bin nearest each harmonic of each lead-grid pitch (−1 from the
    first that has no neighbour above it)."""
    k0 = (np.outer(_lead_grid(), np.arange(1, SAL_HARMONICS + 1)) / df + 0.5).astype(np.int64)
    k0[np.cumsum(k0 + 1 >= n_fft, axis=1) > 0] = -1
    return k0


def _lead_semitones(mag: np.ndarray, df: float) -> np.ndarray:
    """Salience (frames × semitones MIDI 36–96): the largest of each
    semitone's LEAD_SUBBINS, so a detuned or gliding note still counts."""
    grid = _lead_grid()
    out = np.empty((len(mag), len(grid)), np.float32)
    weights = SAL_ALPHA ** np.arange(SAL_HARMONICS)
    _grid_salience(mag, _grid_index(float(df), mag.shape[1]), weights, out)
    return out.reshape(len(mag), LEAD_CLASSES - 1, len(LEAD_SUBBINS))


def lead_features(sal: np.ndarray, ref_db: float) -> np.ndarray:
    """The lead classifier's input for each frame of a semitone salience
    (frames × 61): at each of LEAD_OFFSETS the salience in dB over the
    track's reference, / 20 and clipped to [LEAD_FLOOR, LEAD_CEIL]; then the
    frame's own salience in dB below its peak, / 20, clipped at LEAD_FLOOR.
    Frames beyond the ends repeat the first or last (a note that runs to
    the end of the input is still a note there)."""
    db = 20 * np.log10(np.maximum(sal, 1e-10)) - ref_db
    ab = np.clip(db / 20, LEAD_FLOOR, LEAD_CEIL).astype(np.float32)
    rel = np.clip((db - db.max(axis=1, keepdims=True)) / 20, LEAD_FLOOR, 0.0).astype(np.float32)
    lo, hi = -min(LEAD_OFFSETS), max(LEAD_OFFSETS)
    padded = np.pad(ab, ((lo, hi), (0, 0)), mode="edge")
    blocks = [padded[lo + o : lo + o + len(ab)] for o in LEAD_OFFSETS]
    return np.concatenate([*blocks, rel], axis=1)


def lead_posterior(x: np.ndarray) -> np.ndarray:
    """Softmax of the lead classifier over its classes (semitones, then "no lead")."""
    z = mlp.forward(x, LEAD_WEIGHTS)
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def lead_salience(y: np.ndarray, sr: int) -> tuple[np.ndarray, float]:
    """The semitone salience of a whole track and its reference level (dB),
    exactly as :func:`track_pitch` computes them (for training)."""
    p = _params(int(sr), 65.0, 1000.0)
    total = 1 + len(y) // p.hop
    _, ref_db, _ = _salience_mean_db(y, p, total, pitch_bins=False)
    out = []
    for s in range(0, total, BLOCK_FRAMES):
        mag, df = _salience_mag(y, p, s, min(total, s + BLOCK_FRAMES))
        out.append(_lead_semitones(mag, df).max(axis=2))
    return np.concatenate(out), ref_db


@numba.njit(cache=True)
def _lead_obs(q, order, sub_best, yin, first, last, sub_bin, min_prob, scale, obs, voiced):
    """Observations from the lead posterior ``q`` (frames × classes): each of
    a frame's likeliest semitones (``order``, its rows in decreasing
    posterior; those ≥ ``min_prob``) puts its probability × ``scale`` on one
    pitch bin — among the semitone's bins
    ``first[c]..last[c]`` the likeliest YIN candidate (``yin``; its f0 is
    exact), else ``sub_bin[c, sub_best[f, c]]``, the bin of its most salient
    lead-grid point. ``voiced`` is the sum of the probabilities placed."""
    n_frames = q.shape[0]
    for f in range(n_frames):
        total = 0.0
        for r in range(order.shape[1]):
            c = order[f, r]
            pr = q[f, c]
            if pr < min_prob:
                break
            if first[c] < 0:
                continue
            b = -1
            for k in range(first[c], last[c] + 1):
                if yin[f, k] > 0.0 and (b < 0 or yin[f, k] > yin[f, b]):
                    b = k
            if b < 0:
                b = sub_bin[c, sub_best[f, c]]
            obs[f, b] = pr * scale
            total += pr
        voiced[f] = min(1.0, total)


def _lead_bins(p: _Params) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each lead semitone its first and last pitch bin (−1 if none lies
    in fmin…fmax) and the bin nearest each of its lead-grid points."""
    n_sem = LEAD_CLASSES - 1
    midi_min = 69.0 + 12.0 * math.log2(p.fmin / 440.0)
    bin_midi = midi_min + np.arange(p.n_bins) / BINS_PER_SEMITONE
    sem = np.round(bin_midi).astype(np.int64) - LEAD_MIDI_MIN
    first, last = np.full(n_sem, -1, np.int64), np.full(n_sem, -1, np.int64)
    for c in range(n_sem):
        idx = np.flatnonzero(sem == c)
        if len(idx):
            first[c], last[c] = idx[0], idx[-1]
    points = LEAD_MIDI_MIN + np.arange(n_sem)[:, None] + np.array(LEAD_SUBBINS)[None, :]
    sub_bin = np.round((points - midi_min) * BINS_PER_SEMITONE).astype(np.int64)
    sub_bin = np.clip(sub_bin, first[:, None], last[:, None])
    return first, last, sub_bin


def _centre_gain(y: np.ndarray, p: _Params, level: np.ndarray, f0: int) -> np.ndarray:
    """YIN's centre-level factor of frames f0, f0 + 1, … (``level``: their
    centre power): min(1, level / (CENTRE_RATIO × the frame's mean power)) **
    CENTRE_POWER, 0 for a silent frame. The lead layer takes it too, so that a
    note's context frames do not voice the frames before its onset."""
    pad = p.frame // 2
    a = f0 * p.hop
    b = (f0 + len(level) - 1) * p.hop + p.frame
    chunk = np.zeros(b - a)
    lo, hi = max(a - pad, 0), min(b - pad, len(y))
    if hi > lo:
        chunk[lo - (a - pad) : hi - (a - pad)] = y[lo:hi]
    energy = np.zeros(len(chunk) + 1)
    np.cumsum(np.square(chunk), out=energy[1:])
    starts = np.arange(len(level)) * p.hop
    e_all = (energy[starts + p.frame] - energy[starts]) / p.frame
    ratio = np.maximum(level, 0.0) / np.maximum(CENTRE_RATIO * e_all, 1e-30)
    return np.where(e_all > 1e-12, np.minimum(1.0, ratio) ** CENTRE_POWER, 0.0)


def _salience_voiced(peaks: np.ndarray, crest: np.ndarray, mean_db: float, p: _Params) -> np.ndarray:
    """Voiced probability of consecutive frames from their peak harmonic
    salience and its crest (module docstring); the first SAL_DROP_SECONDS
    lack their history."""
    db = 20 * np.log10(np.maximum(peaks, 1e-30))
    k = max(1, round(SAL_DROP_SECONDS * p.sr / p.hop))
    recent = ndimage.maximum_filter1d(db, 2 * k + 1, origin=k)  # the last 2k+1 frames
    drop = np.minimum(1.0, 10.0 ** ((db - recent + SAL_DROP_DB) / SAL_DROP_SLOPE_DB))
    crest_db = 10 * np.log10(np.maximum(crest, 1e-30))
    logistic = lambda z: 1.0 / (1.0 + 10.0 ** -np.clip(z, -50, 50))  # noqa: E731
    loud = logistic((db - mean_db) / SAL_VOICED_DB)
    return drop * loud * logistic((crest_db - SAL_CREST_DB) / SAL_CREST_SLOPE_DB)


def _salience_rule(
    obs: np.ndarray, voiced: np.ndarray, mag: np.ndarray, df: float, mean_db: float, p: _Params
) -> tuple[np.ndarray, np.ndarray]:
    """pitch-1's observations, unchanged: each YIN candidate's probability
    weighted by its harmonic salience, the voiced probability the salience's."""
    peaks, crest = _salience(mag, df, p, obs)
    sal_voiced = _salience_voiced(peaks, crest, mean_db, p)
    has = voiced > 0
    obs *= np.where(has, sal_voiced / np.where(has, voiced, 1.0), 0.0)[:, None]
    return obs, np.where(has, sal_voiced, 0.0)


def _lead_rule(
    y: np.ndarray,
    p: _Params,
    a: int,
    obs: np.ndarray,
    voiced: np.ndarray,
    lev: np.ndarray,
    mag: np.ndarray,
    df: float,
    lead_ref: float,
    mean_db: float,
    bins: tuple[np.ndarray, np.ndarray, np.ndarray],
    bin_midi: np.ndarray,
    ranges: tuple[bool, bool],
) -> tuple[np.ndarray, np.ndarray]:
    """pitch-2's observations of the frames a, a + 1, … of ``obs``: the lead
    classifier's, the salience rule's where it may know better (module
    docstring)."""
    first, last, sub_bin = bins
    n = len(obs)
    in_range, low_bins = ranges
    has = voiced > 0
    # The lead classifier's observations (module docstring).
    sub = _lead_semitones(mag, df)
    q = lead_posterior(lead_features(sub.max(axis=2), lead_ref))
    lead_obs = np.zeros_like(obs)
    lead_voiced = np.zeros(n)
    q[~has] = 0.0  # silence: no candidates, unvoiced
    top = np.argpartition(-q[:, :-1], LEAD_TOP, axis=1)[:, :LEAD_TOP]
    order = np.take_along_axis(top, np.argsort(-np.take_along_axis(q, top, axis=1), axis=1), axis=1)
    _lead_obs(
        q,
        order,
        sub.argmax(axis=2),
        obs,
        first,
        last,
        sub_bin,
        LEAD_MIN_PROB,
        LEAD_VOICED_WEIGHT / p.n_bins,
        lead_obs,
        lead_voiced,
    )
    gain = _centre_gain(y, p, lev, a)
    lead_obs *= gain[:, None]
    lead_voiced *= gain
    # The salience rule (predominant pitch, above) where it may know
    # better: on every frame if fmin/fmax reach beyond the classifier's
    # registers, else on those it calls "no lead" (a sung-like voice, a
    # low one: the network saw few) below MIDI 89.
    if not in_range:
        rows = np.flatnonzero(has)
    elif low_bins:
        rows = np.flatnonzero(has & (lead_voiced < LEAD_LOW_VOICED))
    else:
        rows = np.zeros(0, np.int64)
    if len(rows):
        o = obs[rows]
        peaks, crest = np.zeros(n), np.zeros(n)
        peaks[rows], crest[rows] = _salience(np.ascontiguousarray(mag[rows]), df, p, o)
        sal_voiced = _salience_voiced(peaks, crest, mean_db, p)[rows]
        o *= (sal_voiced / voiced[rows])[:, None]
        best = bin_midi[np.argmax(o, axis=1)]
        outside = (best < LEAD_MIDI_MIN - 0.5) | (best > LEAD_TRUST_MIDI + 0.5)
        low = (best < LEAD_SURE_MIDI - 0.5) & (sal_voiced > lead_voiced[rows])
        use = outside | low
        lead_obs[rows[use]] = o[use]
        lead_voiced[rows[use]] = sal_voiced[use]
    return lead_obs, lead_voiced


def _decode(obs: np.ndarray, voiced: np.ndarray, p: _Params) -> np.ndarray:
    """Viterbi states of the frames whose observations are given; ``obs`` is
    overwritten by its logarithm."""
    tiny = np.finfo(np.float64).tiny  # librosa's floor for zero probabilities
    obs += tiny
    log_obs = np.log(obs, out=obs)
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
        raise OptionOutOfRange("fmin", f"need {lo} <= fmin < fmax <= {hi} Hz, got fmin={fmin}, fmax={fmax}")
    if fmax >= sr / 2:
        raise OptionOutOfRange("fmax", f"fmax={fmax} Hz must be below the Nyquist frequency {sr / 2} Hz")
    if not np.isfinite(y).all():  # before any statistic of the track is taken
        raise UnprocessableAudio("samples must be finite (no NaN or infinity)")
    return y


def track_pitch(y: np.ndarray, sr: int, fmin: float = 65.0, fmax: float = 1000.0) -> Pitch:
    """f0 (Hz) of a monophonic line every 11.6 ms by pYIN, and its notes.

    ``y``: mono float samples at ``sr`` Hz. ``fmin``/``fmax`` (Hz) bound the
    f0 searched for, within :data:`FMIN_BOUNDS`; no f0 outside them is
    reported. Input shorter than one analysis frame (54 ms at the default
    ``fmin``) gives empty lists. Raises UnprocessableAudio for non-finite samples,
    OptionOutOfRange for out-of-range options.
    """
    y = _validate(y, sr, fmin, fmax)
    p = _params(int(sr), float(fmin), float(fmax))
    hop_s = p.hop / p.sr
    if len(y) < p.frame:
        return Pitch(hop_s, [], [], [])
    total = 1 + len(y) // p.hop
    f0 = np.zeros(total)
    prob = np.zeros(total)
    level = np.zeros(total)
    bin_hz = p.fmin * 2.0 ** (np.arange(p.n_bins) / (12 * BINS_PER_SEMITONE))
    bin_midi = 69.0 + 12.0 * np.log2(bin_hz / 440.0)
    sem_of_bin = np.round(bin_midi).astype(np.int64) - LEAD_MIDI_MIN
    sem_of_bin[(sem_of_bin < 0) | (sem_of_bin > LEAD_TRUST_MIDI - LEAD_MIDI_MIN)] = -1
    in_range = bool(np.all(sem_of_bin >= 0))  # every bin in the classifier's registers
    low_bins = bool(bin_midi[0] < LEAD_SURE_MIDI - 0.5)  # ... and some where the salience rule may voice
    mean_db, lead_ref, share = _salience_mean_db(y, p, total, pitch_bins=low_bins or not in_range)
    mono = share >= MONO_SHARE  # one voice and its harmonics: the salience rule alone (pitch-1)
    if mono and math.isnan(mean_db):
        mean_db = _salience_mean_db(y, p, total)[0]
    first, last, sub_bin = _lead_bins(p)
    for s in range(0, total, BLOCK_FRAMES):
        e = min(total, s + BLOCK_FRAMES)
        # Decode with a margin each side (see the module docstring), keep [s, e).
        a, b = max(0, s - OVERLAP_FRAMES), min(total, e + OVERLAP_FRAMES)
        obs, freq, voiced, lev = _observe(y, p, a, b)
        # Predominant pitch: the candidates of the most salient harmonic
        # source take the frame's probability, which is the salience's.
        mag, df = _salience_mag(y, p, a, b)
        if mono:
            obs, voiced = _salience_rule(obs, voiced, mag, df, mean_db, p)
        else:
            obs, voiced = _lead_rule(
                y,
                p,
                a,
                obs,
                voiced,
                lev,
                mag,
                df,
                lead_ref,
                mean_db,
                (first, last, sub_bin),
                bin_midi,
                (in_range, low_bins),
            )
        keep = slice(s - a, e - a)
        states = _decode(obs, voiced, p)[keep]
        bins = np.minimum(states, p.n_bins - 1)
        hz = freq[np.arange(s - a, e - a), bins].astype(np.float64)
        hz = np.where(hz > 0, hz, bin_hz[bins])  # a bin the path crossed without a candidate
        f0[s:e] = np.where(states < p.n_bins, np.clip(hz, p.fmin, p.fmax), 0.0)
        prob[s:e] = voiced[keep]
        level[s:e] = lev[keep]
    return Pitch(
        hop_s,
        [round(float(v), 2) if v > 0 else None for v in f0],
        [round(float(v), 3) for v in prob],
        segment_notes(f0, level, hop_s),
    )


def _level_dips(level: np.ndarray, voiced: np.ndarray, hop_s: float) -> np.ndarray:
    """Voiced frames where the level is a local minimum at least
    NOTE_DIP_DB below its maximum within NOTE_DIP_SECONDS on *both* sides:
    the gap between two attacks of the same pitch."""
    k = max(1, round(NOTE_DIP_SECONDS / hop_s))
    win = np.lib.stride_tricks.sliding_window_view(np.pad(level, k), 2 * k + 1)
    ratio = 10.0 ** (-NOTE_DIP_DB / 10.0)
    before, after = win[:, :k].max(axis=1), win[:, k + 1 :].max(axis=1)
    return voiced & (level <= win.min(axis=1)) & (level < ratio * before) & (level < ratio * after)


def segment_notes(f0: np.ndarray, level: np.ndarray, hop_s: float) -> list[Note]:
    """Notes of an f0 track (Hz per frame, 0 where unvoiced) whose frames are
    ``hop_s`` seconds apart, ``level`` being each frame's mean power at its
    centre; the rules are in the module docstring."""
    f0 = np.asarray(f0, np.float64)
    voiced = f0 > 0
    semis = np.full(len(f0), np.nan)
    semis[voiced] = 69.0 + 12.0 * np.log2(f0[voiced] / 440.0)
    first, last, hz = _note_spans(
        f0,
        semis,
        _level_dips(np.asarray(level, np.float64), voiced, hop_s),
        max(1, round(NOTE_MEDIAN_SECONDS / hop_s)),
        NOTE_STABLE_CENTS / 100.0,
        NOTE_SPLIT_SEMITONES,
        NOTE_SPLIT_FRAMES,
    )
    notes = []
    for a, b, h in zip(first.tolist(), last.tolist(), hz.tolist(), strict=True):
        # Frame t stands for [t − ½, t + ½) hops: its centre is the sample
        # the tracker describes.
        start, end = max(0.0, (a - 0.5) * hop_s), (b + 0.5) * hop_s
        if end - start >= NOTE_MIN_SECONDS - 1e-9:
            notes.append(
                Note(round(start, 3), round(end, 3), round(69 + 12 * math.log2(h / 440.0)), round(h, 2))
            )
    return notes


@numba.njit(cache=True)
def _note_spans(f0, semis, dips, median_frames, stable_st, split_st, split_frames):
    """First and last frame and median f0 of each note (module docstring)."""
    n = f0.shape[0]
    firsts = np.empty(n, np.int64)
    lasts = np.empty(n, np.int64)
    hzs = np.empty(n)
    count = 0
    stable_hz = np.empty(n)  # f0 of the current note's stable frames ...
    stable_st_buf = np.empty(n)  # ... and their pitch in semitones
    m = 0  # how many
    first = last = 0
    for t in range(n + 1):
        end_note = t == n
        ref = 0.0
        if not end_note:
            if m > 0:
                ref = np.median(stable_st_buf[max(0, m - median_frames) : m])
            if f0[t] <= 0 or dips[t]:
                # A one-frame dropout inside a note is bridged if the pitch resumes.
                resumes = (
                    not dips[t]
                    and m > 0
                    and last == t - 1
                    and t + 1 < n
                    and abs(semis[t + 1] - ref) < split_st
                )
                if resumes:
                    continue
                end_note = True
        if end_note or m == 0:
            if m > 0:
                firsts[count] = first
                lasts[count] = last
                hzs[count] = np.median(stable_hz[:m])
                count += 1
                m = 0
            if t < n and f0[t] > 0 and not dips[t]:
                stable_hz[0] = f0[t]
                stable_st_buf[0] = semis[t]
                m = 1
                first = last = t
            continue
        dev = abs(semis[t] - ref)
        if dev <= stable_st:
            stable_hz[m] = f0[t]
            stable_st_buf[m] = semis[t]
            m += 1
            last = t
        elif dev < split_st:
            last = t  # a vibrato peak or the start of a glide: in the note, not in its pitch
        elif t + split_frames <= n:
            persists = True
            for u in range(t, t + split_frames):
                if not abs(semis[u] - ref) >= split_st:  # NaN (unvoiced) does not persist
                    persists = False
            if persists:
                firsts[count] = first
                lasts[count] = last
                hzs[count] = np.median(stable_hz[:m])
                count += 1
                stable_hz[0] = f0[t]
                stable_st_buf[0] = semis[t]
                m = 1
                first = last = t
            # else: a brief excursion (an octave slip, a glitch): ignored
    return firsts[:count], lasts[:count], hzs[:count]


def warmup() -> None:
    """Compile the numba kernels, so the first job does not pay their JIT
    (~8 s cold; ~0.3 s to load numba's on-disk cache once it exists). One
    compilation serves every input: samples are copied to float32 blocks."""
    t = np.arange(int(0.5 * 22050)) / 22050
    track_pitch((0.3 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32), 22050)
