"""The key a chord sequence implies: which triads are diatonic to it, how
long each sounds, which chord opens and closes the piece, and how often a
dominant resolves to its tonic.

Why not a pitch-class profile alone: a key's scale is shared by its
relative key (C major / A minor) and differs by one note from its
neighbours a fifth away, so a global chroma profile against the
Krumhansl–Kessler ratings mostly confuses exactly those. What tells them
apart is function — which triad is the home chord: it lasts longest, opens
and closes phrases, and is reached from its dominant (V–I, and in minor the
raised V–i) — as in Temperley's and Lerdahl's accounts of tonal centre
(Temperley, *The Cognition of Basic Musical Structures*, 2001, ch. 7;
Lerdahl, *Tonal Pitch Space*, 2001) and in chord-based key finders such as
Papadopoulos & Peeters, "Local key estimation from an audio signal relying
on harmonic and metrical structures", IEEE TASLP 20(4), 2012.

Score of key k over the sequence (chord probabilities per interval, their
durations, the decoded path):

  S(k) = Σ_c D(c) · W_k(c)                      diatonic fit, D = time share
       + LAST · [the last chord is k's tonic]     closing
       + FIRST · [the first chord is k's tonic]   opening
       + CADENCE · (dominant→tonic changes / all changes)

W_k(c) weighs each triad by its scale degree (``DEGREE_WEIGHTS``: the tonic
1, the dominant and subdominant next, the other diatonic triads less,
non-diatonic 0). The weights were set by hand from this reasoning and
checked on the tune split and the training songs of ``bench/songgen.py``
(``bench/docs/tonal.md``), never on the held-out split.
"""

from __future__ import annotations

import numpy as np

# (semitones above the tonic, quality index 0 maj / 1 min): weight.
DEGREE_WEIGHTS = {
    "major": {(0, 0): 1.0, (5, 0): 0.75, (7, 0): 0.8, (9, 1): 0.45, (2, 1): 0.5, (4, 1): 0.35, (10, 0): 0.15},
    "minor": {
        (0, 1): 1.0,
        (5, 1): 0.7,
        (7, 0): 0.8,
        (7, 1): 0.5,
        (8, 0): 0.5,
        (10, 0): 0.45,
        (3, 0): 0.4,
        (5, 0): 0.15,
    },
}
LAST = 0.25
FIRST = 0.1
CADENCE = 0.4
MODES = ("major", "minor")


def _weight_matrix() -> np.ndarray:
    """(24 keys: major C..B then minor C..B, 24 chords: maj C..B, min C..B)."""
    w = np.zeros((24, 24))
    for mi, mode in enumerate(MODES):
        for tonic in range(12):
            for (deg, q), v in DEGREE_WEIGHTS[mode].items():
                w[mi * 12 + tonic, q * 12 + (tonic + deg) % 12] = v
    return w


_W = _weight_matrix()


def key_scores(probs: np.ndarray, durations: np.ndarray, path: np.ndarray) -> np.ndarray:
    """S(k) of the module docstring for the 24 keys (major C..B, minor C..B);
    all zero when no interval holds a chord."""
    probs = np.asarray(probs, np.float64)
    share = (probs[:, :24] * np.asarray(durations, np.float64)[:, None]).sum(axis=0)
    total = share.sum()
    scores = np.zeros(24)
    chords = [int(s) for s in path if s < 24]
    if total <= 0 or not chords:
        return scores
    scores += _W @ (share / total)
    # Runs of the decoded path: the chord sequence without repeats.
    runs = [c for i, c in enumerate(chords) if i == 0 or c != chords[i - 1]]
    for mi in range(2):
        for tonic in range(12):
            k = mi * 12 + tonic
            home = mi * 12 + tonic  # tonic triad: maj in major, min in minor (same index layout)
            dominant = (tonic + 7) % 12  # major triad on the fifth
            scores[k] += LAST * (runs[-1] == home) + FIRST * (runs[0] == home)
            if len(runs) > 1:
                v_i = sum(1 for a, b in zip(runs[:-1], runs[1:], strict=True) if a == dominant and b == home)
                scores[k] += CADENCE * v_i / (len(runs) - 1)
    return scores


def key_from_chords(
    probs: np.ndarray, durations: np.ndarray, path: np.ndarray
) -> tuple[int, str, float] | None:
    """(tonic pitch class, mode, margin over the runner-up) of the best key,
    or None when the sequence holds no chord."""
    scores = key_scores(probs, durations, path)
    if not scores.any():
        return None
    order = np.argsort(scores)[::-1]
    mi, pc = divmod(int(order[0]), 12)
    return pc, MODES[mi], float(scores[order[0]] - scores[order[1]])


def diatonic_mask(pc: int, mode: str) -> np.ndarray:
    """(24,) True for the triads weighted in key (pc, mode) (maj C..B, min C..B)."""
    return _W[MODES.index(mode) * 12 + pc] > 0
