"""Landmark audio fingerprints and their matching, for identifying an excerpt.

Method (Wang 2003, "An Industrial-Strength Audio Search Algorithm", the
Shazam design; parameters close to D. Ellis's audfprint):

1. **Spectrogram.** Mono audio resampled to 11025 Hz (soxr), 512-point Hann
   STFT, hop 256 (23.2 ms frames, 21.5 Hz bins, 0–5.5 kHz: where music keeps
   its energy and where 64 kbps MP3 leaves it alone), in dB.
2. **Peaks.** A bin is a peak when it is the maximum of its neighbourhood
   (2-D max filter, ±``PEAK_F`` bins × ±``PEAK_T`` frames), lies above the
   floor (``FLOOR_DB`` below the loudest bin and ~80 dB below full scale:
   silence gives no peaks) and is among the ``DENSITY`` strongest peaks of its
   sliding one-second window, by level (the loudest peaks are the ones
   that survive added noise).
3. **Landmarks.** Each peak (anchor) pairs with the next ``FAN_OUT`` peaks in
   its target zone: 1..63 frames later (≤ 1.46 s), within ±63 bins. A pair
   is one 21-bit hash: anchor bin (8 bits) | Δf + 64 (7 bits) | Δt (6 bits),
   stored with the anchor's frame. The hash depends on no absolute time, so
   an excerpt's hashes equal the track's, shifted by the excerpt's offset.
4. **Matching** (:func:`score_matches`). Reference entries whose hash occurs
   in the query are found with a 2^21-entry lookup table (one gather over
   every reference at once, no per-track loop); each is joined with the
   query entries of the same hash, and the pairs vote for
   ``offset = t_ref - t_query`` per (reference, speed variant). The count of
   a track is its best offset's votes plus its two neighbours' (±1 frame),
   i.e. the time-consistent matches; random hash collisions spread their
   votes over thousands of offsets and do not add up.
5. **Score.** ``score = (count - rival) / query landmarks``, where
   ``rival`` is the track's best count at any offset more than
   ``RIVAL_FRAMES`` away from its best (any speed variant): the share of
   the query's landmarks that the track explains at one offset *and at no
   other*. The rival term matters because unrelated music shares landmarks
   (the same drum sample, the same chord voicing at the same tempo), and it
   shares them once per bar, so such a track's best and rival offsets are
   about equally good; an excerpt of the track itself stands out at one
   offset. 1.0 is an exact excerpt on the reference's frame grid. A match
   needs ``score >= DEFAULT_THRESHOLD`` and ``count >= MIN_MATCHES`` (a
   very short query cannot match on a handful of landmarks); the threshold
   and the measured score distributions are below and in bench/identify.py.
6. **Speed and grid.** :func:`query_variants` fingerprints the query as if
   it had been played faster by each factor in ``SPEEDS`` (0.98–1.02 in
   0.5 % steps) and undoes that by resampling (a tape/turntable speed
   change: pitch and tempo together); the variant whose factor is right
   lines up with the reference, residual error ≤ 0.25 %: < 1 frame over a
   10 s query, ≤ 0.6 bin. Tempo-only stretches (pitch kept) are not
   searched. Each factor is analysed from ``SHIFTS`` = 4 starting samples a
   quarter hop apart (audfprint's ``--shifts``): a peak's frame depends on
   where the frame grid falls (sustained tones and noise have no sharp
   onset), and measured on these tracks an excerpt half a hop off the
   reference's grid kept ~40 % of its peaks, one within 1/8 hop ~65 %.
   9 × 4 = 36 variants of a 10 s query take ~0.25 s; the index stays one
   fingerprint per track.

Units: ``times`` in frames of ``hop_s`` seconds; offsets reported in seconds
of the reference track where the query starts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr
from scipy import ndimage

from workers.dsp.errors import UnprocessableAudio

FP_SR = 11025
N_FFT = 512
HOP = 256
HOP_S = HOP / FP_SR  # 23.2 ms

MIN_BIN = 2  # below 43 Hz: rumble, DC
MAX_BIN = 256  # bins 2..255: 43 Hz - 5.5 kHz
PEAK_F = 7  # ±7 bins (±150 Hz) ...
PEAK_T = 6  # ... × ±6 frames (±139 ms) neighbourhood of a peak
FLOOR_DB = 70.0  # peaks must be within 70 dB of the loudest bin
# ... and above -40 dB: a full-scale sine reads +42 dB through the Hann window
# (sum 256, halved), so this is ~80 dB down; digital silence gives no peaks.
ABS_FLOOR_DB = -40.0
DENSITY = 24  # strongest peaks kept per second ...
DENSITY_HALF = 21  # ... of a sliding ±21-frame (±0.49 s) window
FAN_OUT = 6  # landmarks per anchor

DT_BITS, DF_BITS, F_BITS = 6, 7, 8
MAX_DT = (1 << DT_BITS) - 1  # 63 frames
MAX_DF = (1 << (DF_BITS - 1)) - 1  # ±63 bins
HASH_BITS = DT_BITS + DF_BITS + F_BITS  # 21

SPEEDS = (0.98, 0.985, 0.99, 0.995, 1.0, 1.005, 1.01, 1.015, 1.02)
SHIFTS = 4
MIN_QUERY_S = 2.0
RIVAL_FRAMES = 4  # a rival alignment is > 4 frames (93 ms) from the best

# Measured by bench/identify.py (near-identical synthetic tracks: same kick,
# same few progressions; queries 5-10 s, 10-30 dB SNR, half MP3, half at
# 0.98-1.02 speed), the best score of a query from a track NOT in the
# catalogue was <= 0.020 at 50 and 200 tracks and <= 0.026 at 800 (p99
# 0.020), while the right track scored >= 0.057 in 95 % of queries (min
# 0.015, the one miss in 300: 5.6 s, 10.5 dB SNR, MP3 and 1.2 % slow).
# 0.03 keeps every unknown query out. The unknown maximum grows slowly with
# the catalogue (more tracks, more chances): an owner with thousands of
# tracks would want ~0.04.
DEFAULT_THRESHOLD = 0.03
MIN_MATCHES = 8


@dataclass
class Prints:
    """Landmarks of one signal: ``hashes`` (uint32, 21 bits used) and the
    frame of each landmark's anchor (``times``, int32, frames of ``hop_s``)."""

    hashes: np.ndarray
    times: np.ndarray
    hop_s: float = HOP_S
    start_s: float = 0.0  # time of frame 0 after the query's start (query variants)

    def __len__(self) -> int:
        return len(self.hashes)

    @property
    def duration_s(self) -> float:
        return float(self.times.max() + 1) * self.hop_s if len(self.times) else 0.0


@dataclass
class Match:
    """One reference's best alignment with the query."""

    ref: int  # index into the references given to score_matches
    offset_s: float  # where the query starts in the reference, seconds
    count: int  # time-consistent matching landmarks
    score: float  # (count - best rival offset's count) / query landmarks of the variant
    speed: float  # speed factor of the winning query variant

    def to_dict(self) -> dict:
        return {
            "ref": self.ref,
            "offset_s": round(self.offset_s, 3),
            "count": int(self.count),
            "score": round(self.score, 4),
            "speed": self.speed,
        }


def _spectrogram_db(y: np.ndarray) -> np.ndarray:
    """(bins, frames) magnitude in dB of mono audio at FP_SR."""
    if len(y) < N_FFT:
        y = np.pad(y, (0, N_FFT - len(y)))
    n_frames = 1 + (len(y) - N_FFT) // HOP
    frames = np.lib.stride_tricks.sliding_window_view(y, N_FFT)[::HOP][:n_frames]
    spec = np.abs(np.fft.rfft(frames * np.hanning(N_FFT).astype(np.float32), axis=1))
    return (20 * np.log10(spec.T + 1e-9)).astype(np.float32)


def _peaks(s_db: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(frame, bin) of the landmark peaks, sorted by frame then bin."""
    s = s_db[MIN_BIN:MAX_BIN]
    if s.size == 0:
        return np.zeros(0, np.int32), np.zeros(0, np.int32)
    is_max = s == ndimage.maximum_filter(s, size=(2 * PEAK_F + 1, 2 * PEAK_T + 1), mode="nearest")
    is_max &= s > max(float(s.max()) - FLOOR_DB, ABS_FLOOR_DB)
    f, t = np.nonzero(is_max)
    # Ranked by level: the loudest peaks are the ones that survive added
    # noise (ranking by contrast to the local mean kept 30 % fewer of them
    # at 10 dB SNR white noise).
    strength = s[f, t]
    # Density: a peak stays if fewer than DENSITY stronger peaks lie within
    # ±0.5 s of it. A sliding window, not fixed blocks, so an excerpt cut
    # anywhere keeps the same peaks as the whole track.
    order = np.argsort(t, kind="stable")
    f, t, strength = f[order], t[order], strength[order]
    stronger = np.zeros(len(t), np.int32)
    for k in range(1, len(t)):
        near = t[k:] - t[:-k] <= DENSITY_HALF
        if not near.any():
            break
        i = np.nonzero(near)[0]
        j = i + k
        np.add.at(stronger, i, strength[j] > strength[i])
        np.add.at(stronger, j, strength[i] > strength[j])
    keep = stronger < DENSITY
    f, t = f[keep] + MIN_BIN, t[keep]
    order = np.lexsort((f, t))
    return t[order].astype(np.int32), f[order].astype(np.int32)


def _landmarks(t: np.ndarray, f: np.ndarray) -> Prints:
    n = len(t)
    taken = np.zeros(n, np.int32)
    hashes, times = [], []
    # Peaks are in time order, so k-th next peak = k-th nearest in time; stop
    # when no anchor's k-th next peak is still inside the 63-frame zone.
    for k in range(1, n):
        a = np.arange(n - k)
        dt = t[a + k] - t[a]
        if not np.any(dt <= MAX_DT):
            break
        df = f[a + k] - f[a]
        ok = (dt >= 1) & (dt <= MAX_DT) & (np.abs(df) <= MAX_DF) & (taken[a] < FAN_OUT)
        a = a[ok]
        taken[a] += 1
        h = (f[a].astype(np.uint32) << (DF_BITS + DT_BITS)) | (
            (df[ok] + MAX_DF + 1).astype(np.uint32) << DT_BITS
        )
        hashes.append(h | dt[ok].astype(np.uint32))
        times.append(t[a])
    if not hashes:
        return Prints(np.zeros(0, np.uint32), np.zeros(0, np.int32))
    hh, tt = np.concatenate(hashes), np.concatenate(times)
    order = np.argsort(tt, kind="stable")
    return Prints(hh[order].astype(np.uint32), tt[order].astype(np.int32))


def _to_fp_rate(y: np.ndarray, sr: float) -> np.ndarray:
    y = np.asarray(y, np.float32)
    if y.ndim != 1:
        raise ValueError("fingerprint expects mono audio (1-D)")
    if sr != FP_SR:
        y = soxr.resample(y, sr, FP_SR, quality="HQ")
    return np.ascontiguousarray(y, np.float32)


def fingerprint(y: np.ndarray, sr: int) -> Prints:
    """Landmark fingerprint of mono float audio at any rate (Wang 2003).

    Silence gives empty prints (an asset can be silent; only a query needs
    content, see :func:`query_variants`)."""
    return _landmarks(*_peaks(_spectrogram_db(_to_fp_rate(y, sr))))


def query_variants(
    y: np.ndarray, sr: int, speeds: tuple[float, ...] = SPEEDS, shifts: int = SHIFTS
) -> list[tuple[float, Prints]]:
    """Prints of a query for each speed factor it may have been played at,
    each at ``shifts`` sub-hop starting points.

    Factor s means the query plays s times faster than the reference (pitch
    and tempo); its prints are taken from the query slowed back down by s,
    so their frames count reference time. A peak's frame moves with the
    phase of the frame grid (sustained tones and noise have no sharp time),
    so the query is also analysed from ``shifts`` starting samples spread
    over one hop, as audfprint's ``--shifts``: one of them is within 1/8 hop
    of the reference's grid. ``Prints.start_s`` holds each shift. Raises
    :class:`UnprocessableAudio` for a query shorter than ``MIN_QUERY_S`` or without
    landmarks (silence)."""
    if len(y) < MIN_QUERY_S * sr:
        raise UnprocessableAudio(
            f"The query is too short to identify: give at least {MIN_QUERY_S:g} s of audio"
        )
    out = []
    for s in speeds:
        # A query sped up by s is the reference sampled at sr / s.
        x = _to_fp_rate(y, sr / s if s != 1.0 else sr)
        for k in range(shifts):
            lead = k * HOP // shifts
            p = _landmarks(*_peaks(_spectrogram_db(x[lead:])))
            p.start_s = lead / FP_SR
            out.append((float(s), p))
    if max(len(p) for _, p in out) < MIN_MATCHES:
        raise UnprocessableAudio("The query is silent or has too little content to identify")
    return out


@dataclass
class _Refs:
    hashes: np.ndarray
    times: np.ndarray
    refs: np.ndarray  # index of the reference each entry belongs to


def _concat(refs: list[Prints]) -> _Refs:
    sizes = [len(p) for p in refs]
    if not sizes or sum(sizes) == 0:
        return _Refs(np.zeros(0, np.uint32), np.zeros(0, np.int32), np.zeros(0, np.int32))
    return _Refs(
        np.concatenate([p.hashes for p in refs]).astype(np.uint32, copy=False),
        np.concatenate([p.times for p in refs]).astype(np.int32, copy=False),
        np.repeat(np.arange(len(refs), dtype=np.int32), sizes),
    )


def score_matches(
    query: Prints | list[tuple[float, Prints]], refs: list[Prints], *, max_per_hash: int = 64
) -> list[Match]:
    """Every reference's best time-consistent alignment with the query,
    best first (references without a single matching hash are left out).

    ``query`` is one Prints (speed 1) or the output of :func:`query_variants`.
    A query hash that occurs more than ``max_per_hash`` times in one query
    variant (a drone, a loop) is ignored: it would add many votes and no
    evidence."""
    variants = [(1.0, query)] if isinstance(query, Prints) else list(query)
    if not variants or not refs:
        return []
    qh = np.concatenate([p.hashes for _, p in variants]).astype(np.uint32)
    qt = np.concatenate([p.times for _, p in variants]).astype(np.int64)
    qv = np.repeat(np.arange(len(variants)), [len(p) for _, p in variants])
    n_q = np.array([max(len(p), 1) for _, p in variants], np.float64)
    # Drop hashes that repeat too often within a variant.
    key = qv.astype(np.int64) << HASH_BITS | qh
    uniq, inv, cnt = np.unique(key, return_inverse=True, return_counts=True)
    ok = cnt[inv] <= max_per_hash
    qh, qt, qv = qh[ok], qt[ok], qv[ok]
    if len(qh) == 0:
        return []
    order = np.argsort(qh, kind="stable")
    qh, qt, qv = qh[order], qt[order], qv[order]

    # Direct-address tables: where each hash's query entries start in the
    # sorted query, and how many there are (gathers, not binary searches:
    # a search against 800 tracks looks up ~5 M reference entries).
    uh, first, cnt = np.unique(qh, return_index=True, return_counts=True)
    in_query = np.zeros(1 << HASH_BITS, bool)  # 2 MB: the 5 M gathers stay in cache
    in_query[uh] = True
    count_of = np.zeros(1 << HASH_BITS, np.int32)
    count_of[uh] = cnt
    first_of = np.zeros(1 << HASH_BITS, np.int32)
    first_of[uh] = first
    r = _concat(refs)
    hit = np.nonzero(in_query[r.hashes & ((1 << HASH_BITS) - 1)])[0]
    rh, rt, ra = r.hashes[hit], r.times[hit].astype(np.int64), r.refs[hit].astype(np.int64)
    if len(rh) == 0:
        return []
    lo = first_of[rh].astype(np.int64)
    n = count_of[rh].astype(np.int64)
    total = int(n.sum())
    starts = np.repeat(np.cumsum(n) - n, n)
    qi = np.repeat(lo, n) + (np.arange(total) - starts)
    offset = np.repeat(rt, n) - qt[qi]
    variant = qv[qi].astype(np.int64)
    ref = np.repeat(ra, n)

    # Vote per (ref, variant, offset); an offset's tally includes ±1 frame.
    span = int(offset.max() - offset.min()) + 3
    base = int(offset.min()) - 1
    nv = len(variants)
    cell = (ref * nv + variant) * span + (offset - base)
    cells, votes = np.unique(cell, return_counts=True)
    # cells is sorted: a cell's ±1 frame neighbours are its array neighbours.
    adjacent = cells[1:] == cells[:-1] + 1
    below = np.r_[0, np.where(adjacent, votes[:-1], 0)]
    above = np.r_[np.where(adjacent, votes[1:], 0), 0]
    near = (below, above)
    tally = votes + below + above
    group = cells // span  # ref * nv + variant
    cell_ref = group // nv
    cell_off = cells % span
    # Cells are grouped by ref (sorted), so per-ref reductions are reduceat.
    starts = np.r_[0, np.nonzero(np.diff(cell_ref))[0] + 1]
    seg = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(cells)]))
    # Best cell per ref: most votes relative to the variant's size.
    frac = tally / n_q[group % nv]
    is_best = frac == np.maximum.reduceat(frac, starts)[seg]
    cand = np.nonzero(is_best)[0]
    best = cand[np.r_[True, seg[cand][1:] != seg[cand][:-1]]]
    # Rival: the ref's best tally at any offset more than RIVAL_FRAMES away
    # (any variant). A loop that matches once per bar (a shared drum
    # pattern, a repeated chorus) has a rival close to its best and so a
    # small score; a true match stands out at one offset.
    far = np.abs(cell_off - cell_off[best][seg]) > RIVAL_FRAMES
    rival = np.zeros(len(refs), np.int64)
    rival[cell_ref[best]] = np.maximum.reduceat(np.where(far, tally, 0), starts)
    # Sub-frame offset: vote-weighted mean over the ±1 frame window.
    sub = (near[1][best] - near[0][best]) / tally[best]
    g = group[best]
    out = [
        Match(
            ref=int(ref_i),
            offset_s=float((cell_off[c] + base + d) * HOP_S - variants[v][1].start_s),
            count=int(tally[c]),
            score=float(max(tally[c] - rival[ref_i], 0) / n_q[v]),
            speed=variants[v][0],
        )
        for c, ref_i, v, d in zip(
            best.tolist(), (g // nv).tolist(), (g % nv).tolist(), sub.tolist(), strict=True
        )
    ]
    out.sort(key=lambda m: (-m.score, -m.count))
    return out


def is_match(m: Match, threshold: float = DEFAULT_THRESHOLD) -> bool:
    """Whether an alignment is strong enough to call the query identified."""
    return m.score >= threshold and m.count >= MIN_MATCHES


@dataclass
class Candidate:
    asset_id: str
    offset_s: float
    score: float
    count: int = 0
    speed: float = 1.0

    def to_dict(self) -> dict:
        return {"asset_id": self.asset_id, "offset_s": round(self.offset_s, 2), "score": round(self.score, 3)}


@dataclass
class Identification:
    match: Candidate | None
    candidates: list[Candidate]

    def to_dict(self) -> dict:
        return {
            "match": self.match.to_dict() if self.match else None,
            "candidates": [c.to_dict() for c in self.candidates],
        }


def identify(
    query: Prints | list[tuple[float, Prints]],
    ids: list[str],
    refs: list[tuple[np.ndarray, np.ndarray]],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    limit: int = 5,
) -> Identification:
    """Identify a query (``fingerprint`` or ``query_variants`` output) among
    references ``(hashes, times)`` named ``ids`` (as ``shared.fingerprints.load``
    returns an owner's index). ``match`` is the best candidate if it passes
    :func:`is_match` at ``threshold``, else None; ``candidates`` are the
    ``limit`` best alignments, best first, whatever their score."""
    matches = score_matches(query, [Prints(h, t) for h, t in refs])
    cands = [
        Candidate(ids[m.ref], m.offset_s, m.score, m.count, m.speed) for m in matches[:limit] if m.score > 0
    ]
    best = matches[0] if matches and is_match(matches[0], threshold) else None
    return Identification(cands[0] if best is not None and cands else None, cands)
