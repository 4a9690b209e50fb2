"""Song structure: sections of a track on its bar lines, labelled so that
repeated material shares a letter (A, B, A, ...).

Method:

1. **Bars** are the analysis unit: the intervals between the downbeats of
   :mod:`workers.dsp.beats`, from 0 to the end of the track. Audio before
   the first or after the last downbeat joins the first/last bar when
   shorter than half a bar, else it is a (partial) bar of its own; gaps in
   the downbeats longer than two bars are split evenly (the chord module's
   ``_beat_edges``). Without downbeats every fourth beat stands in, without
   beats fixed windows of ``FALLBACK_BAR_SECONDS``. Bars shorter than
   ``MIN_BAR_SECONDS`` (a 4/4 bar above 200 BPM: almost always a beat grid
   at twice the tempo), or shorter than ``SHORT_BAR_SECONDS`` with the
   chords changing on every other bar line only, are paired, keeping every
   other bar line on the parity where the chroma changes more — chords
   change on real bar lines.
2. **Features per bar**, three views of what sets a section apart:

   * *harmony* — treble and bass chroma (12 + 12, each unit norm) summed
     over the bar, from the tonal-peak pitch salience of
     :mod:`workers.dsp.chords` (the front end of the chord labels);
   * *timbre* — the mean over the bar of MFCCs 0–12 (DCT-II of the log
     power in the 48 mel bands of :mod:`workers.dsp.tempo`, 46 ms windows
     every 23 ms; c0 is the loudness);
   * *rhythm* — the bar's onset pattern: each of the tempo module's three
     onset envelopes (low, mid, high) as its maximum in 16 equal slots of
     the bar, scaled to its largest value in the bar.

   Each view is z-scored per dimension over the track, so the change that
   counts is large compared with how much that feature varies in the song.
3. **Boundaries** by novelty on the bar grid (after Foote, "Automatic audio
   segmentation using a measure of audio novelty", ICME 2000, with a
   box-shaped rather than Gaussian kernel; Foote's kernel on a
   self-similarity matrix equals a comparison of the two windows' mean
   features): at each bar line, the distance between the mean features of
   the ``min_section_bars`` bars before and after it, per view divided by
   √dims, averaged over the views. A window that spans a whole chord loop
   (4 bars for the usual one-chord-per-bar loops) sees the same mean
   wherever it starts inside a section, so the loop's own chord changes
   cancel and only a change of material stands out. Boundaries are the
   set of bar lines that are local maxima within ±(``min_section_bars`` −
   1) bars, and maximise Σ (novelty − ``THRESHOLD``) with every section at
   least ``min_section_bars`` bars long, found exactly by dynamic
   programming (peak picking with a hard minimum section length).
4. **Labels** from the bar × bar similarity matrix (per view
   exp(−(d / median d)²) of the Euclidean distance d, averaged over the
   views; Foote, "Visualizing music and audio using self-similarity", ACM
   Multimedia 1999). The similarity of two sections is the mean along the
   aligned diagonal — bar k of one against bar k of the other, so the
   order of the chords counts, not just which chords — sliding the shorter
   along the longer (and one bar past either end, for a boundary a bar
   off), best offset kept, times (shorter / longer)^¼ so that a fragment
   does not match inside a long section. This is the segment-similarity
   step of Serrà et al. ("Unsupervised music structure annotation by time
   series structure features and segment similarity", IEEE TMM 16(5),
   2014) with a plain diagonal mean in place of their DTW. In time order,
   each section takes the letter of the most similar *first occurrence*
   of a letter when that similarity is at least ``REPEAT``, else the next
   free letter (letters in order of first appearance; after Z, A1, B1, ...).
   A repeat whose similarity is below ``EXACT`` gets a prime: ``A'`` is a
   *varied repeat* of ``A`` — recognisably the same section (same chords
   in the same order, or the same texture, for most of its length) but
   clearly changed (another melody, instrumentation, a different ending).
   There is one level of prime (every varied repeat of ``A`` is ``A'``);
   compare labels without the prime to group all repeats. On
   bench/structure.py's songs (a new melody at every repeat) the same
   section scores 0.57–0.90 (median 0.75), different sections 0.11–0.49.

Units: seconds (ms precision). Sections cover [0, duration] with no gaps
or overlaps; every boundary other than 0 and the end is a bar line.

Limits: sections shorter than ``min_section_bars`` bars are not found
(they merge into a neighbour); the same section twice in a row is one
section unless something in it changes; boundaries are no better than
the downbeats (one meter and phase per track, see beats.py); loops of 3
or 5 bars leave some novelty inside a section. Measured by
bench/structure.py (FluidSynth renders of verse/chorus/bridge songs).

Cost (one core): ~0.2 s CPU for 3 minutes, ~1.2 s for 20 minutes, nearly
all in the chord salience, MFCC and onset front ends (the onset envelopes
are computed again: ``track_beats`` does not return them); the bar-level
matrices are tiny (a 5-minute song at 120 BPM has 150 bars). Memory beyond
the input: ~46 MB peak for 20 minutes (tracemalloc), in the front ends.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft
from scipy.ndimage import maximum_filter1d

from workers.dsp.chords import BASS_MIDI, TREBLE_MIDI, _beat_edges, _chroma, _pitch_salience
from workers.dsp.errors import UnprocessableAudio
from workers.dsp.features import stft_magnitude_blocks
from workers.dsp.tempo import _frame_params, _mel_filterbank, onset_bands

FALLBACK_BAR_SECONDS = 2.0  # a 4/4 bar at 120 BPM
# Shorter bars are paired: a 4/4 bar at 200 BPM, a 3/4 bar at 150 BPM.
MIN_BAR_SECONDS = 1.2
# Bars up to this long are paired when chords change on every other line only
# (a 4/4 bar at 160 BPM; a double-time grid of a song at 80 BPM).
SHORT_BAR_SECONDS = 1.5
PARITY_RATIO = 2.0
MIN_PARTIAL_BAR = 0.5  # audio outside the downbeats shorter than this × a bar joins its neighbour
N_MFCC = 12  # coefficients 1..12 (c0 is the loudness term, used separately)
RHYTHM_SLOTS = 16  # onset pattern resolution: 16th notes in 4/4
VIEW_WEIGHTS = {"harmony": 1.0, "timbre": 1.0, "rhythm": 1.0}
THRESHOLD = 0.6  # window novelty a boundary must exceed (z-score units per dimension)
REPEAT = 0.53  # section similarity from which a section repeats an earlier one
EXACT = 0.7  # ... and from which the repeat is not marked as varied


@dataclass(frozen=True)
class Section:
    """One section over [start, end) in seconds (ms precision)."""

    start: float
    end: float
    label: str  # "A", "B", "A'", ...


@dataclass(frozen=True)
class Structure:
    """Contiguous sections from 0 to the track's duration."""

    sections: list[Section]

    def to_dict(self) -> dict:
        return {"sections": [{"start": s.start, "end": s.end, "label": s.label} for s in self.sections]}


def find_sections(
    y: np.ndarray, sr: int, beats: list[float], downbeats: list[float], min_section_bars: int = 4
) -> Structure:
    """Sections of mono audio ``y`` at ``sr`` Hz, with boundaries on the
    ``downbeats`` (seconds, from :func:`workers.dsp.beats.track_beats`; the
    ``beats`` stand in when there are no downbeats, fixed 2 s windows when
    there are neither). See the module docstring for the method.

    Audio shorter than two sections of ``min_section_bars`` bars is one
    section "A". Raises UnprocessableAudio for empty or non-finite audio.
    """
    y = np.asarray(y, np.float32)
    if y.ndim != 1:
        raise ValueError(f"expected mono samples (1-D), got shape {y.shape}")
    if len(y) == 0:
        raise UnprocessableAudio("The audio is empty: there is no structure to find")
    if not np.isfinite(np.sum(y, dtype=np.float64)):
        raise UnprocessableAudio("The audio contains non-finite samples (NaN or infinity)")
    if min_section_bars < 1:
        raise ValueError("min_section_bars must be at least 1")
    duration = len(y) / sr
    edges = bar_edges(beats, downbeats, duration)
    if len(edges) - 1 < 2 * min_section_bars or not np.any(y):
        return Structure([Section(0.0, round(duration, 3), "A")])
    fr = frame_features(y, sr)
    edges = pair_short_bars(edges, fr)
    n = len(edges) - 1
    if n < 2 * min_section_bars:
        return Structure([Section(0.0, round(duration, 3), "A")])
    views = bar_features(fr, edges)
    novelty = window_novelty(views, min_section_bars)
    bounds = [0, *pick_boundaries(novelty, min_section_bars, THRESHOLD), n]
    labels = label_sections(similarity(views), bounds)
    times = np.round(edges[bounds], 3)
    times[-1] = round(duration, 3)
    return Structure(
        [Section(float(a), float(b), lab) for a, b, lab in zip(times[:-1], times[1:], labels, strict=True)]
    )


def bar_edges(beats: list[float], downbeats: list[float], duration: float) -> np.ndarray:
    """Edges (seconds) of the analysis bars from 0 to ``duration`` (step 1)."""
    marks = np.asarray(downbeats, np.float64)
    if len(marks) < 2 and len(beats) >= 8:
        marks = np.asarray(beats, np.float64)[::4]
    if len(marks) < 2:
        count = max(1, int(round(duration / FALLBACK_BAR_SECONDS)))
        return np.linspace(0.0, duration, count + 1)
    edges = _beat_edges(list(marks), duration)
    if len(edges) <= 3:
        return edges
    bar = float(np.median(np.diff(edges[1:-1])))
    # A sliver before the first or after the last bar line joins its bar.
    if edges[1] < MIN_PARTIAL_BAR * bar:
        edges = np.delete(edges, 1)
    if len(edges) > 3 and edges[-1] - edges[-2] < MIN_PARTIAL_BAR * bar:
        edges = np.delete(edges, -2)
    return edges


@dataclass(frozen=True)
class FrameFeatures:
    """Frame-level material of the three views (step 2), pooled per bar by
    :func:`bar_features`."""

    chroma: np.ndarray  # (frames, 24): treble then bass chroma
    chroma_hop: float  # seconds
    mfcc: np.ndarray  # (frames, N_MFCC + 1), c0 first
    mfcc_hop: float
    onsets: np.ndarray  # (3, frames): low, mid, high onset envelopes
    onset_fps: float


def frame_features(y: np.ndarray, sr: int) -> FrameFeatures:
    """Chroma from the chord module's pitch salience, MFCCs from the tempo
    module's mel filterbank, and the tempo module's onset envelopes."""
    fr = _pitch_salience(y, sr)
    chroma = np.concatenate(
        [_chroma(fr.salience[:, lo:hi], lo) for lo, hi in ((TREBLE_MIDI, 128), BASS_MIDI)], axis=1
    )
    n_fft, _ = _frame_params(sr)
    hop = n_fft // 2
    fb, _ = _mel_filterbank(sr, n_fft)
    ceps = []
    for block in stft_magnitude_blocks(y, n_fft, hop):
        log_mel = np.log(fb @ np.square(block.T) + 1e-10)
        ceps.append(sfft.dct(log_mel, type=2, norm="ortho", axis=0)[: N_MFCC + 1].T)
    bands, fps = onset_bands(y, sr)
    return FrameFeatures(chroma, fr.hop_seconds, np.concatenate(ceps), hop / sr, bands, fps)


def _bar_index(edges: np.ndarray, n_frames: int, hop: float) -> np.ndarray:
    """The bar (index into ``edges``) each frame's centre falls in."""
    t = np.arange(n_frames) * hop
    return np.clip(np.searchsorted(edges, t, side="right") - 1, 0, len(edges) - 2)


def _bar_chroma(fr: FrameFeatures, edges: np.ndarray) -> np.ndarray:
    """(bars, 24) chroma summed over each bar, unit norm per register."""
    c = np.zeros((len(edges) - 1, 24))
    np.add.at(c, _bar_index(edges, len(fr.chroma), fr.chroma_hop), fr.chroma)
    registers = c.reshape(-1, 2, 12)
    return (registers / np.maximum(np.linalg.norm(registers, axis=2, keepdims=True), 1e-9)).reshape(-1, 24)


def bar_features(fr: FrameFeatures, edges: np.ndarray) -> dict[str, np.ndarray]:
    """The three per-bar views of step 2, each (bars, dims), z-scored."""
    n = len(edges) - 1
    idx = _bar_index(edges, len(fr.mfcc), fr.mfcc_hop)
    timbre = np.zeros((n, fr.mfcc.shape[1]))
    np.add.at(timbre, idx, fr.mfcc)
    timbre /= np.maximum(np.bincount(idx, minlength=n), 1)[:, None]

    idx = _bar_index(edges, fr.onsets.shape[1], 1.0 / fr.onset_fps)
    t = np.arange(fr.onsets.shape[1]) / fr.onset_fps
    pos = (t - edges[idx]) / np.maximum(edges[idx + 1] - edges[idx], 1e-9)
    slot = np.clip((pos * RHYTHM_SLOTS).astype(np.int64), 0, RHYTHM_SLOTS - 1)
    rhythm = np.zeros((n, 3, RHYTHM_SLOTS))
    for band in range(3):
        np.maximum.at(rhythm[:, band, :], (idx, slot), fr.onsets[band])
    rhythm /= np.maximum(rhythm.max(axis=2, keepdims=True), 1e-9)
    return {
        "harmony": _zscore(_bar_chroma(fr, edges)),
        "timbre": _zscore(timbre),
        "rhythm": _zscore(rhythm.reshape(n, -1)),
    }


def pair_short_bars(edges: np.ndarray, fr: FrameFeatures) -> np.ndarray:
    """Every other bar line when the bars look like half bars: the median
    bar is shorter than MIN_BAR_SECONDS, or shorter than SHORT_BAR_SECONDS
    with the chroma changing over PARITY_RATIO times more on one parity of
    bar lines than on the other (chords changing every other "bar").
    The parity kept is the one where the chroma changes more: chords change
    on real bar lines."""
    inner = edges[1:-1]
    if len(inner) < 4:
        return edges
    bar = float(np.median(np.diff(inner)))
    if bar >= SHORT_BAR_SECONDS:
        return edges
    c = _bar_chroma(fr, edges)
    change = 1.0 - np.sum(c[1:] * c[:-1], axis=1) / 2  # at lines 1..n-1 (two unit-norm registers)
    even, odd = float(change[0::2].mean()), float(change[1::2].mean())
    if bar >= MIN_BAR_SECONDS and max(even, odd) < PARITY_RATIO * min(even, odd):
        return edges
    return np.concatenate([[0.0], inner[0 if even >= odd else 1 :: 2], [edges[-1]]])


def _zscore(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-6)


def similarity(views: dict[str, np.ndarray]) -> np.ndarray:
    """Bar × bar similarity in [0, 1] (step 3): per view exp(−(d / median d)²)
    of the Euclidean distance d, averaged over the views."""
    total = np.zeros((len(next(iter(views.values()))),) * 2)
    for name, x in views.items():
        sq = np.sum(x * x, axis=1)
        d = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0))
        off = d[~np.eye(len(d), dtype=bool)]
        scale = float(np.median(off)) if len(off) else 1.0
        total += VIEW_WEIGHTS[name] * np.exp(-np.square(d / max(scale, 1e-9)))
    return total / sum(VIEW_WEIGHTS.values())


def window_novelty(views: dict[str, np.ndarray], half: int) -> np.ndarray:
    """Novelty at each bar line 0..n (n+1 values, step 4): the distance
    between the mean features of the ``half`` bars before and after the
    line, per view divided by √dims, averaged over the views. Windows are
    cut at the ends of the track (0 at lines 0 and n)."""
    n = len(next(iter(views.values())))
    lines = np.arange(1, n)
    a, b = np.maximum(0, lines - half), np.minimum(n, lines + half)
    out = np.zeros(n + 1)
    for name, x in views.items():
        c = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0)])
        before = (c[lines] - c[a]) / (lines - a)[:, None]
        after = (c[b] - c[lines]) / (b - lines)[:, None]
        out[1:n] += VIEW_WEIGHTS[name] * np.linalg.norm(after - before, axis=1) / np.sqrt(x.shape[1])
    return out / sum(VIEW_WEIGHTS.values())


def pick_boundaries(novelty: np.ndarray, min_bars: int, threshold: float) -> list[int]:
    """Bar lines (indices 1..n−1 into ``novelty``, which has n+1 values)
    maximising Σ (novelty − threshold) over lines that are local maxima
    within ±(min_bars − 1) bars, with every section at least ``min_bars``
    bars long: a dynamic programme over the previous boundary."""
    n = len(novelty) - 1
    # Lines too close to either end cannot be boundaries; they are left out
    # of the local-maximum test too, since their windows, cut by the ends,
    # are short and their novelty inflated.
    novelty = novelty.copy()
    novelty[:min_bars] = novelty[n - min_bars + 1 :] = 0.0
    peak = novelty >= maximum_filter1d(novelty, 2 * min_bars - 1, mode="constant")
    gain = np.where(peak & (novelty > threshold), novelty - threshold, -np.inf)
    gain[n] = 0.0  # the end of the track closes the last section
    best = np.full(n + 1, -np.inf)  # best[i]: best total with a boundary at line i
    back = np.zeros(n + 1, np.int64)
    best[0] = 0.0
    for i in range(min_bars, n + 1):
        j = int(np.argmax(best[: i - min_bars + 1]))
        best[i] = best[j] + gain[i]
        back[i] = j
    out = []
    i = int(back[n])
    while i > 0:
        out.append(i)
        i = int(back[i])
    return out[::-1]


def section_similarity(s: np.ndarray, a: tuple[int, int], b: tuple[int, int]) -> float:
    """Similarity of the bar ranges ``a`` and ``b`` ([start, end)) in [0, 1]
    (step 5): the best mean of ``s`` along a diagonal, sliding the shorter
    range along the longer one (one bar beyond either end allowed, for a
    boundary a bar off), times (shorter/longer)^¼."""
    (a0, a1), (b0, b1) = sorted([a, b], key=lambda r: r[1] - r[0])
    short, long_ = a1 - a0, b1 - b0
    best = 0.0
    for off in range(-1, long_ - short + 2):
        i = np.arange(a0, a1)
        j = i - a0 + b0 + off
        ok = (j >= b0) & (j < b1)
        if ok.sum() >= max(1, short - 1):
            best = max(best, float(s[i[ok], j[ok]].mean()))
    return best * (short / long_) ** 0.25


def label_sections(s: np.ndarray, bounds: list[int]) -> list[str]:
    """Labels of the sections between consecutive ``bounds`` (step 5)."""
    firsts: list[tuple[int, int]] = []  # the first occurrence of each letter
    labels = []
    for span in zip(bounds[:-1], bounds[1:], strict=True):
        sims = [section_similarity(s, span, f) for f in firsts]
        k = int(np.argmax(sims)) if sims else -1
        if k >= 0 and sims[k] >= REPEAT:
            labels.append(_letter(k) + ("" if sims[k] >= EXACT else "'"))
        else:
            labels.append(_letter(len(firsts)))
            firsts.append(span)
    return labels


def _letter(k: int) -> str:
    return chr(ord("A") + k % 26) + (str(k // 26) if k >= 26 else "")
