"""Render a set of ``bench/songgen.py`` songs into its cache (for the chord
model's training set, or to prepare a split ahead of a benchmark run).

    .venv/bin/python bench/render_songs.py --style train --songs 400 --seed 1000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# Run as a script from anywhere: the project root on the path (bench.*, tests.*).
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from concurrent.futures import ThreadPoolExecutor  # noqa: E402

from bench import songgen  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--style", default="train", choices=sorted(songgen.STYLES))
    ap.add_argument("--songs", type=int, default=400)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    problem = songgen.check_prerequisites(args.style)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    fs = songgen.fluidsynth_version()
    specs = songgen.make_specs(args.songs, args.seed, args.style)
    t = time.perf_counter()

    def one(spec):
        return songgen.render_song(songgen.build_song(spec), fs)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for i, path in enumerate(pool.map(one, specs)):
            if i % 25 == 0:
                print(f"{i + 1}/{len(specs)} {path.name} ({time.perf_counter() - t:.0f} s)", flush=True)
    print(f"done: {len(specs)} songs in {time.perf_counter() - t:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
