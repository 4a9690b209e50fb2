"""Beat grid of a track: beat times, meter (3/4 or 4/4) and downbeats.

Method:

1. **Tempo and onsets** come from :mod:`workers.dsp.tempo`: the reported
   tempo *is* ``estimate_tempo`` on the same input (computed here from the
   same onset envelopes, not a second time), and its period (in onset
   frames, 11.6 ms) drives the tracker. The tracker follows the tempo
   module's beat signal: the beat activation of :mod:`workers.dsp.beatnet`
   (the probability that a beat falls on each frame, from the onset pattern
   over ±1.4 s) plus the band-balanced accent (low, mid and ¼ of high
   onsets, each at unit RMS), each at unit standard deviation. The accent
   alone (beats-2) follows the loudest periodic onsets, and chords struck
   on every off-beat, or on the swung eighths of a shuffle, pulled the
   whole grid half a beat or a swung eighth off; the activation fires on
   the beats (kick and bass on them, the comping after them) and keeps it
   there (tests/test_dsp_beats.py; the numbers in bench/docs/tonal.md).
2. **Beats** by dynamic programming (Ellis, "Beat tracking by dynamic
   programming", JNMR 36(1), 2007): each frame's score is its accent plus
   the best score of a predecessor ½–2 periods back, less
   ``TIGHTNESS · log²(gap / period)``. The best path through the whole
   track has one beat per period but may drift slowly: a gap one frame off
   the period costs 1/150 (60 BPM) to 1/18 (180 BPM) of a typical beat's
   accent, a gap 10 % off about half of it. The path is backtracked from
   the best cumulative score in the last two periods; leading and trailing
   beats over silence (the path extrapolates through it) are trimmed.
3. **Downbeats** from three per-beat cues, each a known bar-line marker
   (Goto, "An audio-based real-time beat tracking system for music with or
   without drum-sounds", JNMR 30(2), 2001; Klapuri, Eronen & Astola,
   "Analysis of the meter of acoustic musical signals", IEEE TASLP 14(1),
   2006):

   * *harmonic change* — 1 − cosine similarity of the chroma of the beat
     just begun and the beat just ended (12 pitch classes of a 186 ms STFT,
     60–2100 Hz, median over the beat's frames so brief drum hits barely
     count): chords change on bar lines;
   * *low-band onset* (< 200 Hz: kick, bass) at the beat, from the tempo
     module's envelope;
   * *backbeat* — the snare's noise just after the beat: the median,
     over ~43 Hz groups of bins in 1.5–5 kHz, of the energy (a noise burst
     lifts every group; the partials of chords and voices only a few).
     It counts *against* a downbeat: snares fall on 2 and 4, or 2 and 3 in
     a waltz.

   * *network* — the logit of a small network (``data/downbeats.npz``,
     trained by ``bench/train_downbeats.py`` on rendered songs) that reads,
     over the beat and three on each side, the three onset bands at the
     beat, low and mid half a beat later, the snare noise, the chroma change
     and the change of the chord network's probabilities
     (:mod:`workers.dsp.chords`; a loud melody moves the chroma, not the
     chord). The three hand-made cues alone mislead when a pattern puts
     noise on beat 1 (a ride or a rim on every beat) or chords change twice
     a bar; the network learned which cue to trust from the context.

   For each meter m ∈ {3, 4} and phase p ∈ 0..m−1, each cue is scored by
   its Pearson correlation with the indicator "beat index ≡ p (mod m)"
   (backbeat with the opposite sign) and the four are summed, the network's
   with weight 3. A perfect
   cue correlates 1 whatever m, so neither meter is favoured by
   construction, and a cue of the other meter averages out to ~0 over all
   phases. The best (m, p) gives the time signature and the downbeats; the
   phase is one global choice for the track, so a pickup (anacrusis) or an
   intro that starts mid-bar shifts the downbeats, not the beats.

Limits: one meter and one downbeat phase per track (an odd bar mid-song
shifts every downbeat after it); 3/4 and 4/4 only, other meters come out as
whichever fits better. The phase needs a cue that repeats once per bar:
drums alone in a four-on-the-floor pattern (kick on every beat, snare on 2
and 4) leave it a coin toss between beat 1 and beat 3. The beats are only
as right as the tempo's metrical level (chords alone, with onsets on 1 and
3 only, can come out at half or ¾ of the tempo). Inputs for which ``estimate_tempo``
finds no tempo (silence, shorter than 3 s) give an empty grid.

Cost (CPU time, one core): ~0.1 s per minute at 22.05 kHz (the onset
envelopes once, shared with the tempo; the beat activation ~0.01 s; the
harmony STFT and the chord network's salience front end ~0.03 s each).
:func:`beat_analysis` returns that salience, so the chords job does not
compute it again. The first call in a process loads the numba DP kernel
(~0.5 s; ~1.5 s to compile when uncached): :func:`warmup`. Memory: both
STFTs are taken in blocks of at most ~10 MB, the activation's inputs in
blocks of 8 MB; what grows with length is ~60 bytes per 11.6 ms frame
(envelopes, activation, DP score and backlinks: 5 kB per second, 6 MB for
20 minutes) and 48 bytes per 93 ms frame (chroma), plus the salience
(0.5 kB per 93 ms frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numba
import numpy as np
from scipy import sparse
from scipy.ndimage import gaussian_filter1d, maximum_filter1d

from workers.dsp import beatnet, chords, mlp
from workers.dsp.features import ANALYSIS_SR, stft_magnitude_blocks
from workers.dsp.salience import Salience, pitch_salience
from workers.dsp.tempo import HIGH_BAND_WEIGHT, MIN_SECONDS, onset_bands, tempo_from_bands

# Ellis's α: the penalty of a beat gap g is TIGHTNESS · log²(g / period).
# 100 as in librosa: a 10 % gap error costs ~0.9 typical onsets.
TIGHTNESS = 100.0
# Beats whose accent is below this share of the median beat's are dropped
# at the start and end of the track (silence the path extrapolated through).
TRIM_SHARE = 0.1
ACCENT_SHARE = 1.0  # weight of the band-balanced accent next to the beat activation
PEAK_SECONDS = 0.025  # a beat's onset cue is the band's maximum within ±this

# Harmony and snare cues: one STFT with 186 ms windows (5.4 Hz bins: a
# semitone apart at 98 Hz) and 93 ms hops, at least 3 per beat up to 210 BPM.
HARMONIC_WINDOW_SECONDS = 0.186
HARMONIC_BLOCK_FRAMES = 256  # 256 × 4096 float32 frames: 4 MB per block
CHROMA_HZ = (60.0, 2100.0)  # bass to the low partials of the chords
SNARE_HZ = (1500.0, 5000.0)  # snare noise; above the chords, below the hats
SNARE_POOL_HZ = 43.0
# Where the snare cue is read: a 186 ms window centred 30 ms after the beat
# holds the hit's first 120 ms and none of the previous beat's.
SNARE_DELAY_SECONDS = 0.03
LOG_GAIN = 1000.0  # log(1 + γ·|X|), as the tempo module's onset front end
# Equal: each is a correlation in [-1, 1]. On the songs of
# tests/test_dsp_beats.py harmony alone, or the low band alone, finds every
# downbeat and meter; the backbeat alone finds the meter but cannot tell
# beat 1 from beat 3. On a rock drum loop without chords only the sum of
# all three finds beat 1 (the "harmony" then being the drums' own
# spectral change).
CUE_WEIGHTS = {"harmony": 1.0, "low": 1.0, "backbeat": 1.0, "network": 3.0}
METERS = (3, 4)
N_FEATURES = 8
DOWNBEAT_CONTEXT = 3  # beats each side the downbeat network sees
DOWNBEAT_WEIGHTS = "downbeats"  # workers/dsp/data/downbeats.npz (bench/train_downbeats.py)


@dataclass(frozen=True)
class BeatGrid:
    """Beats and downbeats in seconds (ms precision), the tempo in BPM (2
    decimals, equal to ``estimate_tempo`` on the same input) and the time
    signature, "4/4" or "3/4" ("4/4" when there are no beats)."""

    tempo: float
    time_signature: str
    beats: list[float]
    downbeats: list[float]

    def to_dict(self) -> dict:
        return {
            "tempo": self.tempo,
            "time_signature": self.time_signature,
            "beats": list(self.beats),
            "downbeats": list(self.downbeats),
        }


NO_BEATS = BeatGrid(0.0, "4/4", [], [])


def track_beats(y: np.ndarray, sr: int) -> BeatGrid:
    """Beat times, downbeat times (seconds) and time signature of mono
    audio ``y`` at ``sr`` Hz (normally ``ANALYSIS_SR``).

    See the module docstring for the method and references. Returns
    :data:`NO_BEATS` when ``estimate_tempo`` finds no tempo (silence,
    inputs shorter than 3 s).
    """
    return beat_analysis(y, sr)[0]


def beat_analysis(y: np.ndarray, sr: int) -> tuple[BeatGrid, Salience | None]:
    """:func:`track_beats`, and the pitch salience its downbeat step computed
    (None when it found no beats), which the chords job reuses
    (``chords.estimate_chords(..., salience=...)``) instead of computing it
    a second time."""
    y = np.asarray(y, np.float32)
    if len(y) < MIN_SECONDS * sr:
        return NO_BEATS, None
    bands, fps = onset_bands(y, sr)
    activation = beatnet.activation(bands)
    tempo = tempo_from_bands(bands, fps, activation).tempo
    if tempo <= 0:
        return NO_BEATS, None
    period = 60.0 * fps / tempo
    frames = _track(beat_signal(bands, activation), period)
    if len(frames) < 2:
        return BeatGrid(tempo, "4/4", [], []), None
    times = frames / fps
    sal = pitch_salience(y, sr)
    features, cues = beat_features(y, sr, bands, fps, frames, times, sal)
    cues["network"] = downbeat_logits(features)
    meter, phase = _meter_and_phase(cues)
    beats = [round(float(t), 3) for t in times]
    return BeatGrid(tempo, f"{meter}/4", beats, beats[phase::meter]), sal


def beat_signal(bands: np.ndarray, activation: np.ndarray) -> np.ndarray:
    """What the tracker follows: the beat activation, plus ACCENT_SHARE of
    the band-balanced accent, each at unit standard deviation."""
    accent = _balanced_accent(bands)
    act = np.asarray(activation, np.float64)
    return act / max(float(act.std()), 1e-12) + ACCENT_SHARE * accent / max(float(accent.std()), 1e-12)


def _balanced_accent(bands: np.ndarray) -> np.ndarray:
    # As tempo.py's metrical-level step (its ``balanced``), so that the
    # tracker hears the beat the tempo was chosen for.
    rms = np.sqrt(np.mean(np.square(bands, dtype=np.float64), axis=1))
    weights = np.array([1.0, 1.0, HIGH_BAND_WEIGHT])
    return (weights / np.maximum(rms, 1e-12) * (rms > 0)) @ bands


def _track(accent: np.ndarray, period: float) -> np.ndarray:
    """Beat frames (int) by Ellis's dynamic programme, trimmed of silence."""
    std = accent.std()
    if std <= 0:
        return np.zeros(0, np.int64)
    # Light smoothing (σ = period/32, as Ellis's reference code): a beat may
    # sit a frame off its onset's peak without losing the onset.
    local = gaussian_filter1d(accent / std, max(period / 32, 0.5))
    cumulative, backlink = _dp(local, float(period), TIGHTNESS)
    last = _last_beat(cumulative, period)
    path = []
    t = last
    while t >= 0:
        path.append(t)
        t = backlink[t]
    frames = np.array(path[::-1], np.int64)
    return _trim(frames, local)


@numba.njit(cache=True)
def _dp(local, period, tightness):
    """Cumulative score of the best beat path ending at each frame, and the
    previous beat's frame on that path (-1: the path starts here). A path
    restarts wherever no predecessor adds a positive score."""
    n = len(local)
    lo = max(1, int(round(period / 2)))
    hi = int(round(2 * period))
    penalty = np.empty(hi - lo + 1)
    for d in range(lo, hi + 1):
        penalty[d - lo] = -tightness * np.log(d / period) ** 2
    cumulative = np.empty(n)
    backlink = np.full(n, -1, np.int64)
    for t in range(n):
        best = 0.0
        arg = -1
        for d in range(lo, min(hi, t) + 1):
            v = cumulative[t - d] + penalty[d - lo]
            if v > best:
                best = v
                arg = t - d
        cumulative[t] = local[t] + best
        backlink[t] = arg
    return cumulative, backlink


def _last_beat(cumulative: np.ndarray, period: float) -> int:
    # The best-scoring end among the last two periods of frames. Not simply
    # the last peak of the score (Ellis's reference code): an off-beat hit
    # near the end is such a peak too, and a path forced to end on it bends
    # the last few beats off the grid. Past the music's end the score only
    # carries on along the grid, and those beats are trimmed.
    start = max(0, len(cumulative) - int(np.ceil(2 * period)))
    return start + int(np.argmax(cumulative[start:]))


def _trim(frames: np.ndarray, local: np.ndarray) -> np.ndarray:
    """Drop leading and trailing beats without onsets (see TRIM_SHARE)."""
    if len(frames) == 0:
        return frames
    strength = local[frames]
    loud = np.flatnonzero(strength >= TRIM_SHARE * np.median(strength))
    if len(loud) == 0:
        return frames[:0]
    return frames[loud[0] : loud[-1] + 1]


@lru_cache(maxsize=4)
def _chroma_matrix(sr: float, n_fft: int) -> tuple[sparse.csr_matrix, int, int]:
    """Map of the STFT bins in CHROMA_HZ to pitch classes (C = 0), as a
    sparse (12, bins) matrix, and that slice of bins [lo, hi)."""
    freqs = np.arange(n_fft // 2 + 1) * sr / n_fft
    lo, hi = (int(np.searchsorted(freqs, f)) for f in CHROMA_HZ)
    pc = np.round(12 * np.log2(freqs[lo:hi] / 440.0) + 69).astype(np.int64) % 12
    m = sparse.csr_matrix((np.ones(hi - lo, np.float32), (pc, np.arange(hi - lo))), shape=(12, hi - lo))
    return m, lo, hi


def _harmonic_frames(y: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Log chroma (frames, 12), the log noise level of the snare band
    (frames,) and their frame rate in Hz, from one STFT with 186 ms windows
    and 93 ms hops, taken in blocks (no copy of the signal is made)."""
    n_fft = int(2 ** round(np.log2(HARMONIC_WINDOW_SECONDS * sr)))
    hop = n_fft // 2
    chroma_map, lo, hi = _chroma_matrix(float(sr), n_fft)
    freqs = np.arange(n_fft // 2 + 1) * sr / n_fft
    s_lo, s_hi = (int(np.searchsorted(freqs, f)) for f in SNARE_HZ)
    group = max(1, int(round(SNARE_POOL_HZ * n_fft / sr)))
    s_hi = s_lo + (s_hi - s_lo) // group * group
    chroma, snare = [], []
    for block in stft_magnitude_blocks(y, n_fft, hop, HARMONIC_BLOCK_FRAMES):
        chroma.append(np.log1p(LOG_GAIN * (chroma_map @ block[:, lo:hi].T).T))
        # The median of the band's energy in ~40 Hz groups: the noise of a
        # snare lifts every group, the partials of chords and voices a few.
        power = np.square(block[:, s_lo:s_hi]).reshape(len(block), -1, group).sum(axis=2)
        snare.append(np.log(np.median(power, axis=1) + 1e-12))
    return np.concatenate(chroma), np.concatenate(snare), sr / hop


def _beat_cues(
    y: np.ndarray, sr: int, bands: np.ndarray, fps: float, frames: np.ndarray, times: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-beat downbeat cues (see the module docstring), one value per beat."""
    width = 2 * int(round(PEAK_SECONDS * fps)) + 1
    low = maximum_filter1d(bands[0], width)[frames]

    chroma, snare_energy, hfps = _harmonic_frames(y, sr)
    n = len(chroma)
    # Median chroma over each inter-beat interval (the last beat's interval
    # runs one period on): chords sustain through the beat, drums are brief.
    edges = np.append(times, 2 * times[-1] - times[-2])
    idx = np.clip(np.round(edges * hfps).astype(np.int64), 0, n - 1)
    per_beat = np.zeros((len(times), 12), np.float32)
    for i in range(len(times)):
        a, b = idx[i], max(idx[i + 1], idx[i] + 1)
        per_beat[i] = np.median(chroma[a:b], axis=0)
    centred = per_beat - per_beat.mean(axis=1, keepdims=True)
    unit = centred / np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-9)
    change = np.zeros(len(times))
    change[1:] = 1.0 - np.sum(unit[1:] * unit[:-1], axis=1)
    change[0] = np.median(change[1:])

    # Snare: the noise level of its band just after the beat.
    frame_times = np.arange(n) / hfps
    noise = np.interp(times + SNARE_DELAY_SECONDS, frame_times, snare_energy)
    return {"harmony": change, "low": low, "backbeat": noise}


def beat_features(
    y: np.ndarray,
    sr: int,
    bands: np.ndarray,
    fps: float,
    frames: np.ndarray,
    times: np.ndarray,
    salience: Salience | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per-beat inputs (beats, N_FEATURES) of the downbeat network, each
    z-scored over the track: the three onset bands at the beat and the low
    and mid bands half a beat later (the off-beat), the snare-band noise,
    the chroma change of :func:`_beat_cues` and the change of the chord
    network's probabilities (:mod:`workers.dsp.chords`) from the beat before,
    1 − Σ √(p·q) (Bhattacharyya); and the cues of :func:`_beat_cues`.
    ``salience``: ``pitch_salience(y, sr)`` if the caller has it."""
    cues = _beat_cues(y, sr, bands, fps, frames, times)
    width = 2 * int(round(PEAK_SECONDS * fps)) + 1
    peaks = maximum_filter1d(bands, width, axis=1)
    n_env = bands.shape[1]
    half = np.append(np.diff(frames), np.median(np.diff(frames)) if len(frames) > 1 else 1) / 2
    off = np.clip(np.round(frames + half).astype(np.int64), 0, n_env - 1)
    _, edges, probs = chords.chord_analysis(y, sr, list(times), salience)
    idx = np.clip(np.searchsorted(edges, times + 1e-6, side="right") - 1, 0, len(probs) - 1)
    p = probs[idx]
    change = np.zeros(len(times))
    change[1:] = 1.0 - np.sqrt(p[1:] * p[:-1]).sum(axis=1)
    raw = np.stack(
        [
            peaks[0, frames],
            peaks[1, frames],
            peaks[2, frames],
            peaks[0, off],
            peaks[1, off],
            cues["backbeat"],
            cues["harmony"],
            change,
        ],
        axis=1,
    )
    raw[:, :5] = np.log1p(raw[:, :5] / np.maximum(np.median(raw[:, :5], axis=0), 1e-9))
    return (raw - raw.mean(axis=0)) / np.maximum(raw.std(axis=0), 1e-9), cues


def downbeat_logits(features: np.ndarray) -> np.ndarray:
    """The downbeat network's logit per beat, from :func:`beat_features`
    with DOWNBEAT_CONTEXT beats on each side (zeros beyond the ends)."""
    n, d = features.shape
    padded = np.zeros((n + 2 * DOWNBEAT_CONTEXT, d))
    padded[DOWNBEAT_CONTEXT : DOWNBEAT_CONTEXT + n] = features
    x = np.concatenate([padded[k : k + n] for k in range(2 * DOWNBEAT_CONTEXT + 1)], axis=1)
    return mlp.forward(x, DOWNBEAT_WEIGHTS)[:, 0].astype(np.float64)


def _meter_and_phase(cues: dict[str, np.ndarray]) -> tuple[int, int]:
    """(meter, index of the first downbeat) maximising the weighted sum of
    the cues' correlations with "beat index ≡ phase (mod meter)"."""
    n = len(next(iter(cues.values())))
    best = (-np.inf, 4, 0)
    if n < 2 * max(METERS):  # under two bars: nothing to compare
        return 4, 0
    for meter in METERS:
        for phase in range(meter):
            on = (np.arange(n) - phase) % meter == 0
            score = 0.0
            for name, weight in CUE_WEIGHTS.items():
                r = _correlation(cues[name], on)
                score += weight * (-r if name == "backbeat" else r)
            if score > best[0]:
                best = (score, meter, phase)
    return best[1], best[2]


def _correlation(x: np.ndarray, indicator: np.ndarray) -> float:
    x = x - x.mean()
    i = indicator - indicator.mean()
    denom = np.sqrt(np.sum(x * x) * np.sum(i * i))
    return float(np.sum(x * i) / denom) if denom > 0 else 0.0


def warmup() -> None:
    """Load the numba DP kernel from numba's on-disk cache (~0.5 s; ~1.5 s
    to compile it the first time) and build the cached filterbanks, at
    worker start, so that the first job does not pay for them."""
    rng = np.random.default_rng(0)
    y = (0.001 * rng.standard_normal(6 * ANALYSIS_SR)).astype(np.float32)
    y[:: ANALYSIS_SR // 2] = 1.0  # clicks at 120 BPM: enough beats for every step
    track_beats(y, ANALYSIS_SR)
