"""Speed, accuracy and memory of the analysis jobs (bpm, key, lufs, key-bpm)
side by side with the plain librosa route.

    .venv/bin/python bench/analysis.py             # everything (~4 min on 2 cores; + first librosa JIT)
    .venv/bin/python bench/analysis.py --quick     # coarser, 3 timing runs, fewer rows, no memory (~1.5 min)
    .venv/bin/python bench/analysis.py --json F    # also write every number as JSON to file F

Prints markdown tables:

* speed: a 3-minute stereo 44.1 kHz MP3 (tests/synth.py chords + drums at a
  known tempo and key, libmp3lame 192 kb/s) timed from the file, median of
  ``--repeats`` runs after one warm-up run, each stage and end to end; the
  rows' runs are interleaved so load from elsewhere hits all rows alike.
  Our route is what the worker runs per job: ``shared.audio.probe`` +
  ``decode`` (via ``workers.runner.Audio``), ``Audio.mono()`` (downmix,
  soxr to 22.05 kHz), then the task's own compute function from
  ``workers/tasks/analysis.py``. "key-bpm + lufs" is both computes on one
  decode; a row with two separate jobs (two decodes) is shown next to it.
  The librosa route: ``librosa.load(sr=22050, mono=True)`` +
  ``beat.beat_track`` (tempo), + ``feature.chroma_cqt`` and
  Krumhansl–Schmuckler template matching (key), and
  ``pyloudnorm.Meter(sr).integrated_loudness`` on
  ``librosa.load(sr=None, mono=False)`` (loudness is defined on the native
  rate, all channels); a variant that decodes once and lets librosa downmix
  and resample is shown too. librosa's first call in the process (numba JIT or
  cache load, lazy imports) is reported separately and kept out of the
  medians, as is our workers' start-up ``warmup()``.
* accuracy, both routes on the same signals: tempo (every drum pattern of
  tests/synth.py over 60–180 BPM): within ±1 %, within ±4 %, octave errors
  (×2, ×1/2, ×3/2, ×2/3, ×3, ×1/3 within ±4 %), other; key (all 24 keys per
  condition, with and without drums): correct, relative / parallel / fifth
  confusions, other; loudness: our integrated LUFS against pyloudnorm and the
  EBU Tech 3341 expected values.
* memory: peak resident memory added by each estimator on a 20-minute
  input, in a fresh process that first loads the input (not with --quick).
"""

from __future__ import annotations

import argparse
import collections
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# The project root and tests/ (for synth).
ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import numpy as np  # noqa: E402
import soundfile  # noqa: E402
import soxr  # noqa: E402
import synth  # noqa: E402

from shared import audio  # noqa: E402
from workers.dsp import key, loudness, tempo  # noqa: E402
from workers.dsp.features import ANALYSIS_SR  # noqa: E402
from workers.dsp.key import PITCH_CLASSES, estimate_key  # noqa: E402
from workers.dsp.pitchclass import pc_of  # noqa: E402
from workers.dsp.tempo import estimate_tempo  # noqa: E402
from workers.runner import Audio  # noqa: E402
from workers.tasks import analysis  # noqa: E402

SR = ANALYSIS_SR
TRACK = {"tonic": "A", "mode": "minor", "bpm": 123.4, "seconds": 180.0, "sr": 44100}
OCTAVES = {"x2": 2.0, "x1/2": 0.5, "x3/2": 1.5, "x2/3": 2 / 3, "x3": 3.0, "x1/3": 1 / 3}

# Krumhansl & Kessler (1982) probe-tone ratings, index 0 = tonic: the
# profiles of the standard Krumhansl–Schmuckler key finder. Written out here
# so the librosa route does not borrow anything from workers/dsp.
KS_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KS_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])

RESULTS: dict = {}


# --------------------------------------------------------------------------- helpers


def md_table(headers: list[str], rows: list[list[object]], align: str = "") -> None:
    """Print a markdown table; ``align`` is one letter (l/r) per column, default l then r."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    align = align or "l" + "r" * (len(headers) - 1)

    def line(values: list[str]) -> str:
        return (
            "| "
            + " | ".join(
                v.ljust(w) if a == "l" else v.rjust(w) for v, w, a in zip(values, widths, align, strict=True)
            )
            + " |"
        )

    print(line(headers))
    print(
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2)) for w, a in zip(widths, align, strict=True)
        )
        + "|"
    )
    for r in cells:
        print(line(r))


class Laps:
    """Wall-clock time per named stage of one run; consecutive stages share their boundaries."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = collections.defaultdict(float)
        self._t = time.perf_counter()

    def __call__(self, stage: str) -> None:
        now = time.perf_counter()
        self.stages[stage] += now - self._t
        self._t = now


def timed(fns: dict[str, Callable[[Laps], object]], repeats: int) -> dict[str, dict]:
    """One warm-up run of each function, then ``repeats`` rounds that run
    every function once in turn (interleaved, so a load spike from elsewhere
    on the machine hits all rows alike). Per function: the median per stage,
    end to end (wall), and of CPU seconds of the process (all threads)."""
    for fn in fns.values():
        fn(Laps())
    runs: dict[str, list] = {name: [] for name in fns}
    results: dict[str, object] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            laps = Laps()
            t, c = time.perf_counter(), time.process_time()
            results[name] = fn(laps)
            runs[name].append((dict(laps.stages), time.perf_counter() - t, time.process_time() - c))
    out = {}
    for name, rs in runs.items():
        wall = [r[1] for r in rs]
        out[name] = {
            "stages": {k: statistics.median(r[0].get(k, 0.0) for r in rs) for k in rs[0][0]},
            "wall": statistics.median(wall),
            "wall_min": min(wall),
            "wall_max": max(wall),
            "cpu": statistics.median(r[2] for r in rs),
            "result": results[name],
        }
    return out


def classify_tempo(est: float, truth: float) -> str:
    """ok1 (±1 %), ok4 (±4 %), an octave-error ratio name (±4 % of it), or other."""
    err = abs(est - truth) / truth
    if err <= 0.01:
        return "ok1"
    if err <= 0.04:
        return "ok4"
    for name, r in OCTAVES.items():
        if abs(est - truth * r) <= 0.04 * truth * r:
            return name
    return "other"


def classify_key(tonic: str, mode: str, est_tonic: str, est_mode: str) -> str:
    pc, epc = pc_of(tonic), pc_of(est_tonic)  # ours spells flats (Bb), the truth sharps
    if (epc, est_mode) == (pc, mode):
        return "correct"
    if est_mode != mode and epc == (pc + (3 if mode == "minor" else 9)) % 12:
        return "relative"
    if est_mode != mode and epc == pc:
        return "parallel"
    if est_mode == mode and epc in ((pc + 7) % 12, (pc + 5) % 12):
        return "fifth"
    return "other"


# --------------------------------------------------------------------------- the librosa route


def _librosa():
    import librosa

    return librosa


def librosa_tempo(y: np.ndarray, sr: int) -> float:
    tempo, _ = _librosa().beat.beat_track(y=y, sr=sr)
    return float(np.atleast_1d(tempo)[0])


def ks_key(chroma: np.ndarray) -> tuple[str, str]:
    """Krumhansl–Schmuckler: the key whose rotated K–K profile correlates best
    (Pearson) with the track's summed chroma (12 × frames, C first)."""
    profile = chroma.sum(axis=1)
    best = (-np.inf, "C", "major")
    for mode, template in (("major", KS_MAJOR), ("minor", KS_MINOR)):
        for k in range(12):
            r = float(np.corrcoef(profile, np.roll(template, k))[0, 1])
            if r > best[0]:
                best = (r, PITCH_CLASSES[k], mode)
    return best[1], best[2]


def librosa_key(y: np.ndarray, sr: int) -> tuple[str, str]:
    return ks_key(_librosa().feature.chroma_cqt(y=y, sr=sr))


def pyloudnorm_lufs(x: np.ndarray, sr: int) -> float:
    """``x``: (frames,) or (frames, channels), as pyloudnorm wants it."""
    import pyloudnorm

    return float(pyloudnorm.Meter(sr).integrated_loudness(x))


# --------------------------------------------------------------------------- the test track


def make_mp3(directory: Path) -> tuple[Path, np.ndarray]:
    """The 3-minute stereo MP3 and the 44.1 kHz stereo it was encoded from.

    Chords and drums are rendered separately and mixed at slightly different
    levels per channel, the drums 0.25 ms later on the right: a mix with some
    width, never mono on both sides."""
    sr, secs, bpm = TRACK["sr"], TRACK["seconds"], TRACK["bpm"]
    music = synth.chord_progression(TRACK["tonic"], TRACK["mode"], secs, sr, bpm=bpm, seed=3).astype(
        np.float64
    )
    drums = synth.drum_pattern(bpm, secs, sr, "rock", seed=3).astype(np.float64)
    drums *= np.sqrt(np.mean(music**2) / np.mean(drums**2))
    lag = int(round(0.00025 * sr))
    drums_r = np.concatenate([np.zeros(lag), drums[:-lag]])
    x = np.stack([music + 0.85 * drums, 0.9 * music + drums_r], axis=1)
    x = (x * (0.8 / np.max(np.abs(x)))).astype(np.float32)  # -2 dBFS: no MP3 overshoot past 1.0
    wav, mp3 = directory / "track.wav", directory / "track.mp3"
    soundfile.write(wav, x, sr, subtype="PCM_24")
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-i",
            str(wav),
            "-c:a",
            "libmp3lame",
            "-b:a",
            "192k",
            str(mp3),
        ],
        check=True,
    )
    wav.unlink()
    return mp3, x


# --------------------------------------------------------------------------- speed


def _ours(path: Path, computes: list, laps: Laps, mono: bool) -> list:
    """One job as the worker runs it (runner.run_job minus Redis and storage):
    probe, Audio(path, info), the task's compute function(s) on it."""
    a = Audio(path, audio.probe(path))
    laps("probe")
    _ = a.native
    laps("decode")
    if mono:
        a.mono()
        laps("mono+resample")
    out = [c(a, {}, None) for c in computes]
    laps("analysis")
    return out


class _Progress:
    """Stands in for the job context: the bundle reports progress."""

    def progress(self, fraction: float) -> None:
        pass


def _bundle(path: Path, laps: Laps) -> list:
    a = Audio(path, audio.probe(path))
    laps("probe")
    out = analysis.analyze_track.compute(a, {}, _Progress())
    laps("analysis")
    return [out]


def _bundle_parts(path: Path, laps: Laps) -> list:
    """What analyze/upload replaces: its five parts as five jobs."""
    a = analysis
    out = []
    for c, mono in (
        (a.analyze_tempo.compute, True),
        (a.analyze_key.compute, True),
        (a.measure_loudness.compute, False),
        (a.track_beat_grid.compute, True),
        (a.recognize_chords.compute, True),
    ):
        out += _ours(path, [c], laps, mono=mono)
    return out


def _ours_two_jobs(path: Path, laps: Laps) -> list:
    """key-bpm and lufs as two separate jobs: each decodes the file itself."""
    k = _ours(path, [analysis.analyze_key_tempo.compute], laps, mono=True)
    lu = _ours(path, [analysis.measure_loudness.compute], laps, mono=False)
    return k + lu


def _lib_load22(path: Path, laps: Laps) -> np.ndarray:
    y, _ = _librosa().load(path, sr=SR, mono=True)
    laps("load (22.05 kHz mono)")
    return y


def _lib_loudness(path: Path, laps: Laps) -> float:
    x, sr = _librosa().load(path, sr=None, mono=False)
    laps("load (native)")
    lufs = pyloudnorm_lufs(x.T, sr)
    laps("analysis")
    return lufs


def _lib_tempo(path: Path, laps: Laps) -> float:
    y = _lib_load22(path, laps)
    t = librosa_tempo(y, SR)
    laps("analysis")
    return t


def _lib_key(path: Path, laps: Laps) -> tuple[str, str]:
    y = _lib_load22(path, laps)
    k = librosa_key(y, SR)
    laps("analysis")
    return k


def _lib_all(path: Path, laps: Laps) -> tuple:
    y = _lib_load22(path, laps)
    t, k = librosa_tempo(y, SR), librosa_key(y, SR)
    laps("analysis")
    return t, k, _lib_loudness(path, laps)


def _lib_all_one_load(path: Path, laps: Laps) -> tuple:
    """Not the issue's route: one native decode, then librosa's own downmix and
    soxr resample, as a careful librosa user might write it."""
    lr = _librosa()
    x, sr = lr.load(path, sr=None, mono=False)
    laps("load (native)")
    y = lr.resample(lr.to_mono(x), orig_sr=sr, target_sr=SR, res_type="soxr_hq")
    laps("mono+resample")
    t, k, lufs = librosa_tempo(y, SR), librosa_key(y, SR), pyloudnorm_lufs(x.T, sr)
    laps("analysis")
    return t, k, lufs


def first_calls() -> dict:
    """First call in this process of each route's analysis functions, on 10 s
    of audio: numba compilation (or loading numba's on-disk cache) and lazy
    imports. Kept out of the medians; a worker pays ours once at start."""
    y = synth.chord_progression("C", "major", 10.0, SR, bpm=120.0, with_drums=True)
    x = np.stack([y, y], axis=1)
    out = {}
    t = time.perf_counter()
    for module in (tempo, key, loudness):
        module.warmup()
    out["ours: warmup() of workers/dsp tempo, key, loudness (numba cache load, FFT plans)"] = (
        time.perf_counter() - t
    )
    t = time.perf_counter()
    librosa_tempo(y, SR)
    out["librosa: import + first beat_track (numba JIT / cache load)"] = time.perf_counter() - t
    t = time.perf_counter()
    librosa_key(y, SR)
    out["librosa: first chroma_cqt"] = time.perf_counter() - t
    t = time.perf_counter()
    pyloudnorm_lufs(x, SR)
    out["pyloudnorm: import + first integrated_loudness"] = time.perf_counter() - t
    return out


def speed(repeats: int, directory: Path, variants: bool = True) -> np.ndarray:
    """Times both routes on the MP3; returns the stereo it was encoded from.
    ``variants``: also the two-jobs and one-load rows."""
    t = time.perf_counter()
    path, source = make_mp3(directory)
    info = audio.probe(path)
    dur = info.duration_s
    print(
        f"\n## speed: {dur:.1f} s stereo {info.sample_rate / 1000:g} kHz MP3 "
        f"({path.stat().st_size / 1e6:.1f} MB, libmp3lame 192k; {TRACK['tonic']} {TRACK['mode']}, "
        f"{TRACK['bpm']} BPM; made in {time.perf_counter() - t:.1f} s)"
    )
    print(
        f"\nmedian of {repeats} interleaved runs after a warm-up run, from the MP3 file; "
        "wall seconds per stage. "
        "librosa.load(sr=22050, mono=True) downmixes and resamples (soxr_hq) inside its load column; "
        "CPU s counts all threads.\n"
    )
    jit = first_calls()

    a = analysis
    rows_def: list[tuple[str, str, Callable[[Laps], object]]] = [
        ("ours", "bpm", lambda L: _ours(path, [a.analyze_tempo.compute], L, True)),
        ("ours", "key", lambda L: _ours(path, [a.analyze_key.compute], L, True)),
        ("ours", "lufs", lambda L: _ours(path, [a.measure_loudness.compute], L, False)),
        ("ours", "key-bpm", lambda L: _ours(path, [a.analyze_key_tempo.compute], L, True)),
        (
            "ours",
            "key-bpm + lufs (one decode)",
            lambda L: _ours(path, [a.analyze_key_tempo.compute, a.measure_loudness.compute], L, True),
        ),
        ("ours", "key-bpm job + lufs job (two decodes)", lambda L: _ours_two_jobs(path, L)),
        ("ours", "analyze/upload (one job)", lambda L: _bundle(path, L)),
        ("ours", "bpm+key+lufs+beatgrid+chords as five jobs", lambda L: _bundle_parts(path, L)),
        ("librosa", "tempo", lambda L: _lib_tempo(path, L)),
        ("librosa", "key", lambda L: _lib_key(path, L)),
        ("librosa", "loudness", lambda L: _lib_loudness(path, L)),
        ("librosa", "tempo + key + loudness", lambda L: _lib_all(path, L)),
        ("librosa", "tempo + key + loudness, one load (variant)", lambda L: _lib_all_one_load(path, L)),
    ]
    if not variants:
        rows_def = [
            r
            for r in rows_def
            if not any(w in r[1] for w in ("two decodes", "variant", "analyze", "five jobs"))
        ]
    measured = timed({f"{route}: {name}": fn for route, name, fn in rows_def}, repeats)
    timings = {(route, name): measured[f"{route}: {name}"] for route, name, _ in rows_def}

    def cell(s: dict, *keys: str) -> str:
        v = sum(s["stages"].get(k, 0.0) for k in keys)
        return f"{v:.3f}" if any(k in s["stages"] for k in keys) else "–"

    rows = []
    for (route, name), s in timings.items():
        rows.append(
            [
                route,
                name,
                cell(s, "probe"),
                cell(s, "decode", "load (22.05 kHz mono)", "load (native)"),
                cell(s, "mono+resample"),
                cell(s, "analysis"),
                f"{s['wall']:.3f}",
                f"{dur / s['wall']:.0f}×",
                f"{s['cpu']:.3f}",
                f"{s['wall_min']:.3f}–{s['wall_max']:.3f}",
            ]
        )
    md_table(
        [
            "route",
            "operation",
            "probe s",
            "decode/load s",
            "mono+resample s",
            "analysis s",
            "end-to-end s",
            "× realtime",
            "CPU s",
            "wall min–max",
        ],
        rows,
        "llrrrrrrrr",
    )
    ours = timings[("ours", "key-bpm + lufs (one decode)")]
    lib = timings[("librosa", "tempo + key + loudness")]
    speedup = lib["wall"] / ours["wall"]
    print(
        f"\nspeed-up of key-bpm + lufs (one decode) over librosa tempo + key + loudness: "
        f"**{speedup:.1f}× wall**, {lib['cpu'] / ours['cpu']:.1f}× CPU "
        f"(target ≥ 3×: {'met' if speedup >= 3 else 'NOT met'})"
    )
    extra = {}
    if variants:
        ours2 = timings[("ours", "key-bpm job + lufs job (two decodes)")]
        lib1 = timings[("librosa", "tempo + key + loudness, one load (variant)")]
        extra = {
            "speedup_two_jobs_vs_librosa": lib["wall"] / ours2["wall"],
            "speedup_vs_librosa_one_load": lib1["wall"] / ours["wall"],
        }
        print(
            f"as two separate jobs (two decodes): {extra['speedup_two_jobs_vs_librosa']:.1f}× wall, "
            f"{lib['cpu'] / ours2['cpu']:.1f}× CPU; against the one-load librosa variant: "
            f"{extra['speedup_vs_librosa_one_load']:.1f}× wall, {lib1['cpu'] / ours['cpu']:.1f}× CPU"
        )

    print("\nfirst call in this process (not in the medians):\n")
    md_table(["what", "seconds"], [[k, f"{v:.2f}"] for k, v in jit.items()])

    key_d, lufs_d = ours["result"]
    lt, (lk_t, lk_m), llufs = lib["result"]
    truth_key = f"{TRACK['tonic']} {TRACK['mode']}"
    print("\nestimates on this track:\n")
    md_table(
        ["route", "tempo (BPM)", "key", "integrated LUFS"],
        [
            ["truth", TRACK["bpm"], truth_key, "–"],
            ["ours", key_d["tempo"], key_d["key"], lufs_d["integrated_lufs"]],
            ["librosa", f"{lt:.2f}", f"{lk_t} {lk_m}", f"{llufs:.2f}"],
        ],
    )
    RESULTS["speed"] = {
        "audio_seconds": dur,
        "repeats": repeats,
        "rows": [
            {"route": r, "operation": n, **{k: v for k, v in s.items() if k != "result"}}
            for (r, n), s in timings.items()
        ],
        "speedup_keybpm_lufs_vs_librosa": speedup,
        **extra,
        "first_calls": jit,
        "estimates": {
            "ours": {"tempo": key_d["tempo"], "key": key_d["key"], "lufs": lufs_d["integrated_lufs"]},
            "librosa": {"tempo": lt, "key": f"{lk_t} {lk_m}", "lufs": llufs},
        },
    }
    return source


# --------------------------------------------------------------------------- accuracy


def tempo_sweep(sweeps: list[tuple[float, float]]) -> None:
    """``sweeps``: (seconds of audio, BPM step) pairs; tempi 60–180 BPM in that step, plus 97.5 and 123.4."""
    grids = {
        seconds: sorted(set(np.round(np.arange(60.0, 180.001, step), 2).tolist()) | {97.5, 123.4})
        for seconds, step in sweeps
    }
    desc = ", ".join(f"{len(grids[sec])} tempi at {sec:g} s (every {step:g} BPM)" for sec, step in sweeps)
    print(f"\n## tempo: 60–180 BPM + 97.5 + 123.4 per drum pattern, 22.05 kHz mono: {desc}")
    print("\n±4 % includes ±1 %; octave = ×2, ×½, ×3/2, ×2/3, ×3, ×⅓ within ±4 %\n")
    totals = {(route, amb): collections.Counter() for route in ("ours", "librosa") for amb in (False, True)}
    rows, misses, out = [], [], []
    for seconds, tempi in grids.items():
        for pattern in synth.PATTERNS:
            ambiguous = pattern in synth.AMBIGUOUS_PATTERNS
            counts = {"ours": collections.Counter(), "librosa": collections.Counter()}
            for i, bpm in enumerate(tempi):
                y = synth.drum_pattern(bpm, seconds, SR, pattern, seed=1000 + i)
                for route, est in (("ours", estimate_tempo(y, SR).tempo), ("librosa", librosa_tempo(y, SR))):
                    v = classify_tempo(est, bpm)
                    c = counts[route]
                    c["n"] += 1
                    c["ok1"] += v == "ok1"
                    c["ok4"] += v in ("ok1", "ok4")
                    c["octave"] += v in OCTAVES
                    c["other"] += v == "other"
                    if v == "other" and not ambiguous:
                        misses.append(f"{route} {pattern} {seconds:g} s: {bpm:g}→{est:.2f}")
            row: list[object] = [pattern + (" (ambiguous)" if ambiguous else ""), f"{seconds:g}", len(tempi)]
            for route in ("ours", "librosa"):
                c = counts[route]
                row += [c["ok1"], c["ok4"], c["octave"], c["other"]]
                totals[(route, ambiguous)].update(c)
            rows.append(row)
            out.append({"pattern": pattern, "seconds": seconds, "ambiguous": ambiguous, **counts})
    for label, ambs in (("**all unambiguous**", (False,)), ("**all patterns**", (False, True))):
        row = [label, "", sum(totals[("ours", a)]["n"] for a in ambs)]
        for route in ("ours", "librosa"):
            c = sum((totals[(route, a)] for a in ambs), collections.Counter())
            row += [f"**{c['ok1']}**", f"**{c['ok4']}**", c["octave"], c["other"]]
        rows.append(row)
    md_table(
        [
            "pattern",
            "s",
            "n",
            "ours ±1 %",
            "ours ±4 %",
            "ours octave",
            "ours other",
            "librosa ±1 %",
            "librosa ±4 %",
            "librosa octave",
            "librosa other",
        ],
        rows,
        "lrrrrrrrrrr",
    )
    if misses:
        shown = [m for m in misses if m.startswith("ours")][:6] + [m for m in misses if m.startswith("lib")][
            :6
        ]
        print(f"\nnon-octave misses on unambiguous patterns ({len(misses)}; first few): " + "; ".join(shown))
    RESULTS["tempo"] = {
        "tempi": {f"{sec:g} s": tempi for sec, tempi in grids.items()},
        "rows": out,
        "totals": {f"{r}{' ambiguous' if a else ''}": dict(c) for (r, a), c in totals.items()},
    }


KEY_CONDITIONS = {
    "I-IV-V-I / i-iv-V-i": (None, None, {}),
    "  + drums": (None, None, {"with_drums": True}),
    "  + drums, -45 cents": (None, None, {"with_drums": True, "tuning_cents": -45.0}),
    "  + drums, +35 cents": (None, None, {"with_drums": True, "tuning_cents": 35.0}),
    "I-V-vi-IV / i-VI-VII-i": ("I-V-vi-IV", "i-VI-VII-i", {}),
    "  + drums @124": ("I-V-vi-IV", "i-VI-VII-i", {"with_drums": True, "bpm": 124.0}),
    "minor i-VI-III-VII (ambiguous)": (None, "i-VI-III-VII", {"modes": ("minor",)}),
}
QUICK_KEY_CONDITIONS = ("I-IV-V-I / i-iv-V-i", "  + drums", "  + drums @124")


def key_sweep(seconds: float, conditions: tuple[str, ...]) -> None:
    print(f"\n## key: all keys per condition, {seconds:g} s each, 22.05 kHz mono\n")
    print("confusions: relative / parallel / fifth (either direction) / other\n")
    rows, out = [], []
    totals = {r: collections.Counter() for r in ("ours", "librosa")}
    for name in conditions:
        maj, mi, kwargs = KEY_CONDITIONS[name]
        kwargs = dict(kwargs)
        modes = kwargs.pop("modes", ("major", "minor"))
        counts = {"ours": collections.Counter(), "librosa": collections.Counter()}
        for mode in modes:
            for k, tonic in enumerate(PITCH_CLASSES):
                prog = maj if mode == "major" else mi
                y = synth.chord_progression(tonic, mode, seconds, SR, seed=k, progression=prog, **kwargs)
                r = estimate_key(y, SR)
                counts["ours"][classify_key(tonic, mode, r.tonic, r.mode)] += 1
                counts["librosa"][classify_key(tonic, mode, *librosa_key(y, SR))] += 1
        n = 12 * len(modes)
        row: list[object] = [name.strip() if not name.startswith(" ") else "… " + name.strip(), n]
        for route in ("ours", "librosa"):
            c = counts[route]
            row += [c["correct"], f"{c['relative']} / {c['parallel']} / {c['fifth']} / {c['other']}"]
            if "ambiguous" not in name:
                totals[route].update(c)
                totals[route]["n"] += n
        rows.append(row)
        out.append({"condition": name.strip(), "n": n, **{r: dict(c) for r, c in counts.items()}})
    row = ["**all but the ambiguous**", totals["ours"]["n"]]
    for route in ("ours", "librosa"):
        c = totals[route]
        row += [f"**{c['correct']}**", f"{c['relative']} / {c['parallel']} / {c['fifth']} / {c['other']}"]
    rows.append(row)
    md_table(
        [
            "condition",
            "n",
            "ours correct",
            "ours rel / par / 5th / other",
            "librosa correct",
            "librosa rel / par / 5th / other",
        ],
        rows,
        "lrrrrr",
    )
    RESULTS["key"] = {"seconds": seconds, "rows": out, "totals": {r: dict(c) for r, c in totals.items()}}


def _tone(
    sr: int, segments: list[tuple[float, float]], freq: float = 1000.0, channels: int = 2
) -> np.ndarray:
    """EBU Tech 3341 style test signal: a sine at ``freq`` Hz through
    consecutive (seconds, dBFS) segments, identical on every channel."""
    parts = []
    for seconds, dbfs in segments:
        t = np.arange(int(seconds * sr)) / sr
        parts.append(10 ** (dbfs / 20) * np.sin(2 * np.pi * freq * t))
    y = np.concatenate(parts)
    return np.repeat(y[:, None], channels, axis=1).astype(np.float32)


def loudness_check(track: np.ndarray) -> None:
    print("\n## loudness: integrated LUFS, ours (workers/dsp/loudness.measure) vs pyloudnorm\n")
    rng = np.random.default_rng(7)
    white = rng.standard_normal((30 * 48000, 2)) * 0.1
    mono = synth.chord_progression("D", "major", 30.0, SR, bpm=96.0, with_drums=True) * 0.5
    signals: list[tuple[str, np.ndarray, int, float | None]] = [
        ("EBU 3341 #1: 1 kHz −23 dBFS stereo, 48 kHz", _tone(48000, [(20, -23)]), 48000, -23.0),
        ("EBU 3341 #2: 1 kHz −33 dBFS stereo, 48 kHz", _tone(48000, [(20, -33)]), 48000, -33.0),
        (
            "EBU 3341 #3: −36/−23/−36 dBFS (rel. gate)",
            _tone(48000, [(10, -36), (60, -23), (10, -36)]),
            48000,
            -23.0,
        ),
        (
            "EBU 3341 #4: −72/−36/−23/−36/−72 (abs. gate)",
            _tone(48000, [(10, -72), (10, -36), (60, -23), (10, -36), (10, -72)]),
            48000,
            -23.0,
        ),
        ("1 kHz −23 dBFS stereo, 44.1 kHz", _tone(44100, [(20, -23)]), 44100, -23.0),
        ("white noise stereo, 48 kHz", white.astype(np.float32), 48000, None),
        ("chords + drums mono, 22.05 kHz", mono.astype(np.float32), SR, None),
        ("the speed MP3's source, stereo 44.1 kHz, 3 min", track, TRACK["sr"], None),
    ]
    rows, out = [], []
    for name, x, sr, expected in signals:
        ours = loudness.measure(x, sr).integrated_lufs
        ref = pyloudnorm_lufs(x.astype(np.float64), sr)
        rows.append(
            [
                name,
                "–" if expected is None else f"{expected:.2f}",
                f"{ours:.3f}",
                f"{ref:.3f}",
                f"{ours - ref:+.3f}",
                "–" if expected is None else f"{ours - expected:+.3f}",
                "–" if expected is None else f"{ref - expected:+.3f}",
            ]
        )
        out.append({"signal": name, "expected": expected, "ours": ours, "pyloudnorm": ref})
    md_table(["signal", "expected", "ours", "pyloudnorm", "ours − pyln", "ours − exp.", "pyln − exp."], rows)
    RESULTS["loudness"] = out


# --------------------------------------------------------------------------- memory

# Linux: writing 5 to clear_refs resets the peak-RSS mark (VmHWM), so the
# transient copies made while loading the input do not hide the estimator's.
_MEMORY_CHILD = """
import sys, numpy as np
sys.path[:0] = [{root!r}]
from workers.dsp import {module} as m
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024
m.warmup()
y = np.load({path!r})
open("/proc/self/clear_refs", "w").write("5")
before = status("VmRSS")
r = m.{func}(y, {sr})
print(status("VmHWM") - before, {show})
"""


def memory() -> None:
    print("\n## memory: 20-minute input, fresh process per estimator\n")
    t = time.perf_counter()
    y = synth.drum_pattern(123.4, 20 * 60.0, SR, "rock", seed=5)
    y = (y + 0.2 * synth.chord_progression("C", "major", 20 * 60.0, SR, bpm=123.4)).astype(np.float32)
    y44 = soxr.resample(y, SR, 44100)
    stereo = np.stack([y44, 0.9 * y44], axis=1).astype(np.float32)
    del y44
    made = time.perf_counter() - t
    rows, out = [], []
    with tempfile.TemporaryDirectory(prefix="audioq-bench-") as d:
        mono_path, stereo_path = str(Path(d) / "mono.npy"), str(Path(d) / "stereo.npy")
        np.save(mono_path, y)
        np.save(stereo_path, stereo)
        cases = [
            ("tempo.estimate_tempo", "tempo", "estimate_tempo", mono_path, SR, "r.tempo", y),
            ("key.estimate_key", "key", "estimate_key", mono_path, SR, "r.key.replace(' ', '_')", y),
            (
                "loudness.measure",
                "loudness",
                "measure",
                stereo_path,
                44100,
                "round(r.integrated_lufs, 2)",
                stereo,
            ),
        ]
        for label, module, func, path, sr, show, arr in cases:
            code = _MEMORY_CHILD.format(root=str(ROOT), module=module, func=func, path=path, sr=sr, show=show)
            t = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=str(ROOT)
            )
            mb, _, result = proc.stdout.strip().partition(" ")
            ch = arr.shape[1] if arr.ndim > 1 else 1
            desc = f"{ch} ch float32 {sr / 1000:g} kHz = {arr.nbytes / 1e6:.0f} MB"
            rows.append([label, desc, f"{float(mb):.0f}", f"{time.perf_counter() - t:.1f}", result])
            out.append({"estimator": label, "input_mb": arr.nbytes / 1e6, "peak_mb_above_input": float(mb)})
    md_table(["estimator", "input", "peak RSS above input, MB", "s incl. start-up", "result"], rows)
    print(f"\n(inputs synthesized in {made:.1f} s)")
    RESULTS["memory"] = out


# --------------------------------------------------------------------------- verdict


def verdict() -> None:
    print("\n## verdict\n")
    lines = []
    if "speed" in RESULTS:
        s = RESULTS["speed"]["speedup_keybpm_lufs_vs_librosa"]
        lines.append(
            f"key-bpm + lufs vs librosa tempo + key + loudness: {s:.1f}× "
            f"(target ≥ 3×: {'met' if s >= 3 else 'NOT met'})"
        )
    if "tempo" in RESULTS:
        tot = RESULTS["tempo"]["totals"]

        def both(route: str, metric: str) -> int:
            return tot[route].get(metric, 0) + tot[f"{route} ambiguous"].get(metric, 0)

        for metric, label in (("ok1", "±1 %"), ("ok4", "±4 %")):
            o, lb = tot["ours"].get(metric, 0), tot["librosa"].get(metric, 0)
            oa, la = both("ours", metric), both("librosa", metric)
            ok = o >= lb and oa >= la
            lines.append(
                f"tempo {label}: ours {o} vs librosa {lb} unambiguous, {oa} vs {la} all patterns "
                f"({'equal or better' if ok else 'WORSE'})"
            )
    if "key" in RESULTS:
        o, lb = RESULTS["key"]["totals"]["ours"]["correct"], RESULTS["key"]["totals"]["librosa"]["correct"]
        lines.append(f"key correct: ours {o} vs librosa {lb} ({'equal or better' if o >= lb else 'WORSE'})")
    if "loudness" in RESULTS:
        rows = RESULTS["loudness"]
        d = max(abs(r["ours"] - r["pyloudnorm"]) for r in rows)
        exp = [r for r in rows if r["expected"] is not None]
        eo = max(abs(r["ours"] - r["expected"]) for r in exp)
        ep = max(abs(r["pyloudnorm"] - r["expected"]) for r in exp)
        lines.append(
            f"loudness: max |ours − pyloudnorm| {d:.3f} LU; max error vs EBU expected: ours {eo:.3f}, "
            f"pyloudnorm {ep:.3f} LU "
            f"({'equal or better' if eo <= ep + 0.005 else 'WORSE'} on the reference signals)"
        )
    for line in lines:
        print(f"- {line}")
    RESULTS["verdict"] = lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        help="coarser sweeps, 3 timing runs, no two-jobs/one-load rows, no memory measurement",
    )
    ap.add_argument("--repeats", type=int, help="timed runs per row (default 5, 3 with --quick; at least 3)")
    ap.add_argument("--json", metavar="PATH", help="also write all results as JSON to PATH")
    args = ap.parse_args()
    if shutil.which("ffmpeg") is None:
        print("ffmpeg is needed to encode the test MP3", file=sys.stderr)
        return 1
    repeats = max(3, args.repeats or (3 if args.quick else 5))
    t = time.perf_counter()
    sections = RESULTS.setdefault("section_seconds", {})

    def section(name: str, fn: Callable, *a, **kw):
        t0 = time.perf_counter()
        out = fn(*a, **kw)
        sections[name] = time.perf_counter() - t0
        print(f"\n({name}: {sections[name]:.0f} s)")
        return out

    with tempfile.TemporaryDirectory(prefix="audioq-bench-") as d:
        track = section("speed", speed, repeats, Path(d), variants=not args.quick)
    section("tempo", tempo_sweep, [(30.0, 10.0)] if args.quick else [(30.0, 2.5), (8.0, 5.0)])
    section(
        "key",
        key_sweep,
        seconds=12.0 if args.quick else 20.0,
        conditions=QUICK_KEY_CONDITIONS if args.quick else tuple(KEY_CONDITIONS),
    )
    section("loudness", loudness_check, track)
    if not args.quick:
        section("memory", memory)
    verdict()
    total = time.perf_counter() - t
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n(total {total:.0f} s; own peak RSS {peak_mb:.0f} MB)")
    if args.json:
        RESULTS["total_seconds"] = total
        RESULTS["quick"] = args.quick
        Path(args.json).write_text(json.dumps(RESULTS, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
