"""Time and peak memory of mastering long tracks, as a worker runs it: the
source file read from disk, ``master`` to -10 LUFS under -1 dBTP, the master
encoded (WAV, or MP3 decoded and measured again, re-mastered while over the
ceiling).

    .venv/bin/python bench/mastering_long.py [--minutes 5 10 20] [--format wav mp3]
    .venv/bin/python bench/mastering_long.py --root /path/to/other/checkout   # compare code

The input is bench/separation_long.py's (a generated 30-second stereo 44.1
kHz mix repeated to length, -15.8 LUFS, true peak -1 dBTP, 16-bit WAV,
cached); -10 LUFS gives the whole chain work: the compressor engages
(~0.8 dB), and the limiter holds ~5 dB of peaks. Each case runs in a fresh process:
ru_maxrss is read after the imports ("before") and after the job's path
(``workers.tasks.mastering.master_to_file``: ``codec.open_source``,
``mastering.master_stream``, ``codec.Encoder``); the task module is imported
with placeholder S3 credentials in the environment (nothing is contacted),
so "before" includes the Celery app as in a worker.

``--root`` runs the cases against another checkout; code from before the
streaming path (no ``master_to_file``) is run as its job ran it: the whole
file decoded, ``mastering.master``, ``codec.encode``, and for MP3
``codec.decode`` + ``loudness.measure`` of the file.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET, CEILING = -10.0, -1.0

CASE = """
import os, resource, sys, tempfile, time
from pathlib import Path
from shared.audio import probe
from workers import codec
from workers.dsp import loudness, mastering
import workers.tasks.mastering as task
path, fmt, target, ceiling = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
info = probe(path)
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
loudness.warmup(); mastering.warmup()
before = rss()
t = time.perf_counter()
with tempfile.TemporaryDirectory(prefix="bench-master-") as d:
    out = Path(d) / f"mastered.{fmt}"
    if hasattr(task, "master_to_file"):
        source = codec.open_source(path, info, d)
        summary, output, _ = task.master_to_file(source, target, ceiling, fmt, out, lambda f: None)
    else:  # the code before streaming, as its job ran it
        x, sr = codec.decode(path, info)
        limit = ceiling
        for attempt in range(task.MP3_RETRIES + 1):
            done = mastering.master(x, sr, target, limit)
            summary = done.to_dict()
            codec.encode(done.audio, sr, fmt, out)
            output = summary["output"]
            if fmt != "mp3":
                break
            y, ysr = codec.decode(out, probe(out))
            output = loudness.measure(y, ysr).to_dict()
            del y
            over = output["true_peak_dbtp"] - ceiling
            if over <= 0:
                break
            limit -= over + 0.05
dt = time.perf_counter() - t
peak = rss()
minutes = info.duration_s / 60
cells = [f"{minutes:g}", fmt, f"{summary['input']['integrated_lufs']:.2f}", f"{summary['gain_db']:+.2f}",
         f"{output['integrated_lufs']:.2f}", f"{output['true_peak_dbtp']:.2f}", f"{dt:.1f}",
         f"{dt / minutes:.2f}", f"{before:.0f}", f"{peak:.0f}", f"{peak - before:.0f}",
         f"{os.getloadavg()[0]:.1f}"]
print("| " + " | ".join(map(str, cells)) + " |", flush=True)
"""


def make_input(minutes: float) -> Path:
    sys.path.insert(0, str(ROOT))
    from bench.separation_long import make_input as mix

    return mix(minutes)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, nargs="+", default=[5.0, 10.0, 20.0])
    ap.add_argument("--format", nargs="+", default=["wav", "mp3"], choices=["wav", "flac", "mp3"])
    ap.add_argument("--root", type=Path, default=ROOT, help="checkout whose code runs (default: this one)")
    args = ap.parse_args()
    inputs = {m: make_input(m) for m in args.minutes}
    commit = subprocess.run(
        ["git", "-C", str(args.root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    print(
        f"code: {args.root} ({commit or 'not a git checkout'}); target {TARGET:g} LUFS, "
        f"ceiling {CEILING:g} dBTP; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
    )
    print(
        "| minutes | format | input LUFS | gain dB | output LUFS | output dBTP | seconds | s per audio min "
        "| RSS before MiB | peak RSS MiB | peak − before MiB | load |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    env = {
        **os.environ,
        "PYTHONPATH": str(args.root.resolve()),
        # The task module builds the Celery app, which wants S3 credentials; nothing connects.
        "AUDIOQ_S3_ACCESS_KEY": os.environ.get("AUDIOQ_S3_ACCESS_KEY", "bench"),
        "AUDIOQ_S3_SECRET_KEY": os.environ.get("AUDIOQ_S3_SECRET_KEY", "bench-secret"),
    }
    for minutes in args.minutes:
        for fmt in args.format:
            subprocess.run(
                [sys.executable, "-c", CASE, str(inputs[minutes]), fmt, str(TARGET), str(CEILING)],
                cwd=args.root,
                env=env,
                check=True,
            )
    print(
        "\nRSS before = interpreter, libraries, the Celery app and the compiled kernels; "
        "load = 1-minute load average at the end."
    )
    print("Shared 2-core machine: times are noisy.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
