"""Time and peak memory of stem separation on long tracks, as a worker runs
it (the pretrained model when installed, else the DSP fallback).

    .venv/bin/python bench/separation_long.py [--minutes 10] [--stems 2 4]

Each case runs in a fresh process (peak RSS is per process): a generated
30-second stereo 44.1 kHz mix repeated to length, ``separation.separate``
timed, ru_maxrss read before and after the call.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CASE = """
import resource, sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, "tests")
import synth
from shared.settings import model_dir_from_env
from workers.dsp import separation
from workers.dsp.spleeter import SpleeterModel
minutes, n_stems = float(sys.argv[1]), int(sys.argv[2])
x, _ = synth.separation_mix(30.0, sr=44100, seed=5)
x = np.tile(x, (int(round(minutes * 2)), 1))
model = SpleeterModel.load(Path(model_dir_from_env()))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t = time.perf_counter()
sep = separation.separate(x, 44100, n_stems, model)
dt = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
cells = [f"{minutes:g}", n_stems, sep.model, f"{dt:.1f}", f"{dt / minutes:.2f}",
         f"{x.nbytes / 2**20:.0f}", f"{before:.0f}", f"{peak:.0f}"]
print("| " + " | ".join(map(str, cells)) + " |")
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, nargs="+", default=[10.0])
    ap.add_argument("--stems", type=int, nargs="+", default=[2, 4])
    args = ap.parse_args()
    print(
        "| minutes | stems | model | seconds | s per audio min | input MiB | RSS before MiB | peak RSS MiB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for minutes in args.minutes:
        for n in args.stems:
            subprocess.run([sys.executable, "-c", CASE, str(minutes), str(n)], cwd=ROOT, check=True)
    print("\nRSS before = interpreter, libraries, the model and the input.")
    print("Shared 2-core machine: times are noisy.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
