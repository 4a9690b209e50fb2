"""Accuracy, speed and memory of the tempo and key estimators.

    .venv/bin/python bench/analysis_accuracy.py            # everything (~30 s, more on a first librosa JIT)
    .venv/bin/python bench/analysis_accuracy.py --quick    # coarser sweeps, no librosa

Prints:

* tempo: every drum pattern of tests/synth.py at 60–180 BPM in 2.5 BPM steps
  plus 97.5/123.4, at 30 s and at 8 s: within ±1 %, octave errors by ratio,
  other errors, worst in-tolerance error;
* key: all 24 keys per condition: correct, relative / parallel / fifth
  confusions, other;
* speed: estimate_tempo + estimate_key on a 3-minute 22.05 kHz mono mix
  against librosa.beat.beat_track + librosa.feature.chroma_cqt on the same
  array (best of repeated runs after a warm-up; librosa's first call, which
  compiles its numba kernels, is reported separately);
* memory: peak resident memory added by each estimator on a 20-minute
  input, measured in a fresh process that first loads the input.
"""

from __future__ import annotations

import argparse
import collections
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The script's own folder comes first on sys.path, and bench/ holds modules
# (queue.py) named like the standard library's, which librosa's imports would
# pick up: drop the folder, add the project root and tests/ (for synth).
_HERE = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != _HERE]
ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import numpy as np  # noqa: E402
import synth  # noqa: E402

from workers.dsp.features import ANALYSIS_SR, analyze_key_tempo  # noqa: E402
from workers.dsp.key import PITCH_CLASSES, estimate_key  # noqa: E402
from workers.dsp.key import warmup as key_warmup  # noqa: E402
from workers.dsp.tempo import estimate_tempo  # noqa: E402
from workers.dsp.tempo import warmup as tempo_warmup  # noqa: E402

SR = ANALYSIS_SR
OCTAVES = {"x2": 2.0, "x1/2": 0.5, "x3/2": 1.5, "x2/3": 2 / 3, "x3": 3.0, "x1/3": 1 / 3}


def classify_tempo(est: float, truth: float) -> str:
    if abs(est - truth) <= 0.01 * truth:
        return "ok"
    for name, r in OCTAVES.items():
        if abs(est - truth * r) <= 0.01 * truth * r:
            return name
    return "wrong"


def tempo_sweep(step: float, durations: list[float]) -> None:
    tempi = sorted(set(np.round(np.arange(60.0, 180.001, step), 2)) | {97.5, 123.4})
    print(f"\n## tempo: {len(tempi)} tempi 60–180 BPM per pattern")
    print(
        f"{'pattern':14s} {'secs':>4s} {'ok':>7s} {'octave errors':30s} {'wrong':>5s} {'worst ok err':>12s}"
    )
    for seconds in durations:
        for pattern in synth.PATTERNS:
            counts: collections.Counter[str] = collections.Counter()
            worst = 0.0
            wrong = []
            for i, bpm in enumerate(tempi):
                y = synth.drum_pattern(bpm, seconds, SR, pattern, seed=1000 + i)
                est = estimate_tempo(y, SR).tempo
                verdict = classify_tempo(est, bpm)
                counts[verdict] += 1
                if verdict == "ok":
                    worst = max(worst, abs(est - bpm) / bpm)
                else:
                    wrong.append(f"{bpm:g}→{est:g}")
            octave = {k: v for k, v in counts.items() if k not in ("ok", "wrong")}
            ambiguous = pattern in synth.AMBIGUOUS_PATTERNS
            print(
                f"{pattern:14s} {seconds:4.0f} {counts['ok']:3d}/{len(tempi):<3d} {str(octave):30s} "
                f"{counts['wrong']:5d} {100 * worst:11.3f}%"
                + (" (ambiguous)" if ambiguous else " " + " ".join(wrong[:6]))
            )


def key_sweep(seconds: float) -> None:
    conditions = {
        "I-IV-V-I / i-iv-V-i": (None, None, {}),
        "  + drums": (None, None, {"with_drums": True}),
        "  + drums, -45 cents": (None, None, {"with_drums": True, "tuning_cents": -45.0}),
        "  + drums, +35 cents": (None, None, {"with_drums": True, "tuning_cents": 35.0}),
        "I-V-vi-IV / i-VI-VII-i": ("I-V-vi-IV", "i-VI-VII-i", {}),
        "  + drums @124": ("I-V-vi-IV", "i-VI-VII-i", {"with_drums": True, "bpm": 124.0}),
        "minor i-VI-III-VII (ambig.)": (None, "i-VI-III-VII", {"modes": ("minor",)}),
    }
    print(f"\n## key: all keys per condition, {seconds:g} s each")
    print(f"{'condition':30s} {'correct':>8s} {'relative':>8s} {'parallel':>8s} {'fifth':>6s} {'other':>6s}")
    for name, (maj, mi, kwargs) in conditions.items():
        kwargs = dict(kwargs)
        modes = kwargs.pop("modes", ("major", "minor"))
        c: collections.Counter[str] = collections.Counter()
        n = 0
        for mode in modes:
            for k, tonic in enumerate(PITCH_CLASSES):
                prog = maj if mode == "major" else mi
                y = synth.chord_progression(tonic, mode, seconds, SR, seed=k, progression=prog, **kwargs)
                r = estimate_key(y, SR)
                n += 1
                pc, epc = PITCH_CLASSES.index(tonic), PITCH_CLASSES.index(r.tonic)
                if (r.tonic, r.mode) == (tonic, mode):
                    c["correct"] += 1
                elif r.mode != mode and epc == (pc + (3 if mode == "minor" else 9)) % 12:
                    c["relative"] += 1
                elif r.mode != mode and epc == pc:
                    c["parallel"] += 1
                elif r.mode == mode and epc in ((pc + 7) % 12, (pc + 5) % 12):
                    c["fifth"] += 1
                else:
                    c["other"] += 1
        print(
            f"{name:30s} {c['correct']:4d}/{n:<3d} {c['relative']:8d} {c['parallel']:8d} "
            f"{c['fifth']:6d} {c['other']:6d}"
        )


def _best_time(fn, repeats: int) -> tuple[float, float]:
    """Best wall-clock and best CPU seconds (all threads) of ``repeats`` runs:
    the machine may be shared, and interference only adds time."""
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return min(wall), min(cpu)


def speed(with_librosa: bool) -> None:
    y = synth.chord_progression("A", "minor", 180.0, SR, bpm=123.4, with_drums=True)
    print("\n## speed: 3-minute 22.05 kHz mono mix (A minor, 123.4 BPM); wall / CPU ms, best of n")
    t = time.perf_counter()
    tempo_warmup()
    key_warmup()
    print(f"warmup() of both modules: {1000 * (time.perf_counter() - t):.0f} ms")
    tempo_t = _best_time(lambda: estimate_tempo(y, SR), 7)
    key_t = _best_time(lambda: estimate_key(y, SR), 7)
    both_t = _best_time(lambda: analyze_key_tempo(y, SR), 7)
    key, tempo = analyze_key_tempo(y, SR)

    def row(name: str, t: tuple[float, float], note: str = "") -> None:
        print(f"{name:20s} {1000 * t[0]:6.0f} / {1000 * t[1]:6.0f}   {note}")

    row("estimate_tempo", tempo_t, f"-> {tempo.tempo} BPM")
    row("estimate_key", key_t, f"-> {key.key}")
    row("analyze_key_tempo", both_t)
    if not with_librosa:
        return
    import librosa

    t = time.perf_counter()
    librosa.beat.beat_track(y=y, sr=SR)
    first = time.perf_counter() - t
    beat_t = _best_time(lambda: librosa.beat.beat_track(y=y, sr=SR), 3)
    chroma_t = _best_time(lambda: librosa.feature.chroma_cqt(y=y, sr=SR), 3)
    lib_tempo = float(np.atleast_1d(librosa.beat.beat_track(y=y, sr=SR)[0])[0])
    row("librosa beat_track", beat_t, f"-> {lib_tempo:.2f} BPM (first call {first:.1f} s: numba JIT/cache)")
    row("librosa chroma_cqt", chroma_t)
    print(
        f"speed-up of analyze_key_tempo over beat_track + chroma_cqt (warm): "
        f"{(beat_t[0] + chroma_t[0]) / both_t[0]:.1f}x wall, {(beat_t[1] + chroma_t[1]) / both_t[1]:.1f}x CPU"
    )


# Linux: writing 5 to clear_refs resets the peak-RSS mark (VmHWM), so the
# transient copies made while loading the input do not hide the estimator's.
_MEMORY_CHILD = """
import sys, numpy as np
sys.path[:0] = [{root!r}]
from workers.dsp.{module} import estimate_{module}, warmup
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024
warmup()
y = np.load({path!r})
open("/proc/self/clear_refs", "w").write("5")
before = status("VmRSS")
r = estimate_{module}(y, {sr})
print(status("VmHWM") - before, r)
"""


def memory() -> None:
    print("\n## memory: 20-minute input (float32, 22.05 kHz = 106 MB), fresh process per estimator")
    y = synth.drum_pattern(123.4, 20 * 60.0, SR, "rock", seed=5)
    y = y + 0.2 * synth.chord_progression("C", "major", 20 * 60.0, SR, bpm=123.4)
    with tempfile.TemporaryDirectory() as d:
        path = str(Path(d) / "y.npy")
        np.save(path, y.astype(np.float32))
        del y
        for module in ("tempo", "key"):
            code = _MEMORY_CHILD.format(root=str(ROOT), module=module, path=path, sr=SR)
            t = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            mb, _, result = out.stdout.strip().partition(" ")
            print(
                f"estimate_{module:5s} peak RSS above input: {float(mb):6.0f} MB   "
                f"({time.perf_counter() - t:.1f} s incl. start-up) -> {result}"
            )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="coarser sweeps, skip librosa and memory")
    args = ap.parse_args()
    t = time.perf_counter()
    tempo_sweep(step=7.5 if args.quick else 2.5, durations=[30.0] if args.quick else [30.0, 8.0])
    key_sweep(seconds=20.0)
    speed(with_librosa=not args.quick)
    if not args.quick:
        memory()
    print(
        f"\n(total {time.perf_counter() - t:.0f} s; own peak RSS "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
