"""Time and peak memory of stem separation on long tracks, as a worker runs
it: the source file read from disk, separated (the pretrained model when
installed, else the DSP fallback), every stem encoded to a file.

    .venv/bin/python bench/separation_long.py [--minutes 5 10 20] [--stems 2 4] [--format wav]
    .venv/bin/python bench/separation_long.py --root /path/to/other/checkout   # compare code

The input: a generated 30-second stereo 44.1 kHz mix (tests/synth.py
``separation_mix``) repeated to length, written once as 16-bit WAV to
``bench/.cache/separation_long/`` (uploads of that size are usually WAV or
FLAC; any source is first decoded, in blocks, to a raw float32 file on
disk, which the job then reads in blocks). Each case runs in a fresh process (peak
RSS is per process): the model is loaded, ru_maxrss read ("before": the
interpreter, numpy/scipy/librosa/onnxruntime and the model), then the job's
path timed — ``codec.open_source``, ``separation.separate_stream``, one
``codec.Encoder`` per stem — and ru_maxrss read again. The Celery worker
around it adds ~40 MB that is the same for every job.

``--root`` runs the cases against another checkout of the project (its code
first on sys.path); code from before the streaming path (no
``separate_stream``) is run as its job ran it: ``codec.decode`` the whole
file, ``separation.separate``, ``codec.encode`` each stem.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".cache" / "separation_long"

CASE = """
import os, resource, sys, tempfile, time
from pathlib import Path
import numpy as np
from shared.audio import probe
from shared.settings import model_dir_from_env
from workers import codec
from workers.dsp import separation
from workers.dsp.spleeter import SpleeterModel
path, n_stems, fmt = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
model = SpleeterModel.load(Path(model_dir_from_env()))
info = probe(path)
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
before = rss()
t = time.perf_counter()
with tempfile.TemporaryDirectory(prefix="bench-sep-") as d:
    work = Path(d)
    if hasattr(separation, "separate_stream"):
        source = codec.open_source(path, info, work)
        stream = separation.separate_stream(source, n_stems, model)
        encoders = {n: codec.Encoder(work / f"{n}.{fmt}", stream.sample_rate, stream.channels, fmt)
                    for n in stream.names}
        for block in stream.blocks:
            for n, enc in encoders.items():
                enc.write(block[n])
        for enc in encoders.values():
            enc.close()
        label = stream.model
    else:  # the code before streaming, as its job ran it
        x, sr = codec.decode(path, info)
        sep = separation.separate(x, sr, n_stems, model)
        for n, y in sep.stems.items():
            codec.encode(y, sr, fmt, work / f"{n}.{fmt}")
        label = sep.model
dt = time.perf_counter() - t
peak = rss()
minutes = info.duration_s / 60
cells = [f"{minutes:g}", n_stems, label, f"{dt:.1f}", f"{dt / minutes:.2f}",
         f"{before:.0f}", f"{peak:.0f}", f"{peak - before:.0f}", f"{os.getloadavg()[0]:.1f}"]
print("| " + " | ".join(map(str, cells)) + " |", flush=True)
"""


def make_input(minutes: float) -> Path:
    """The repeated mix as 16-bit WAV, written in blocks (cached)."""
    import numpy as np
    import soundfile

    sys.path.insert(0, str(ROOT / "tests"))
    import synth

    path = CACHE / f"mix-{minutes:g}min.wav"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    x, _ = synth.separation_mix(30.0, sr=44100, seed=5)
    x = (x / max(1e-9, float(np.max(np.abs(x)))) * 10 ** (-1 / 20)).astype(np.float32)
    tmp = path.with_suffix(".tmp.wav")
    with soundfile.SoundFile(tmp, "w", 44100, 2, subtype="PCM_16", format="WAV") as f:
        for _ in range(int(round(minutes * 2))):
            f.write(x)
    os.replace(tmp, path)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, nargs="+", default=[5.0, 10.0, 20.0])
    ap.add_argument("--stems", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--format", default="wav", choices=["wav", "flac", "mp3"], help="stem format")
    ap.add_argument("--root", type=Path, default=ROOT, help="checkout whose code runs (default: this one)")
    args = ap.parse_args()
    inputs = {m: make_input(m) for m in args.minutes}
    commit = subprocess.run(
        ["git", "-C", str(args.root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    print(
        f"code: {args.root} ({commit or 'not a git checkout'}); stems as {args.format}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
    )
    print(
        "| minutes | stems | model | seconds | s per audio min | RSS before MiB | peak RSS MiB "
        "| peak − before MiB | load |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    env = {**os.environ, "PYTHONPATH": str(args.root.resolve())}
    for minutes in args.minutes:
        for n in args.stems:
            subprocess.run(
                [sys.executable, "-c", CASE, str(inputs[minutes]), str(n), args.format],
                cwd=args.root,
                env=env,
                check=True,
            )
    print("\nRSS before = interpreter, libraries and the model; load = 1-minute load average at the end.")
    print("Shared 2-core machine: times are noisy.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
