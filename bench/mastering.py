"""Loudness and true-peak accuracy and speed of ``workers.dsp.mastering.master``
on FluidSynth-rendered songs at varied levels, against two baselines.

    .venv/bin/python bench/mastering.py             # 10 songs x 6 (target, ceiling) pairs, ~1.5 min
    .venv/bin/python bench/mastering.py --songs 4 --verbose

The songs are the General MIDI songs of ``bench/accuracy.py`` (its
``make_specs`` / ``build_song``: drums, bass, chords, a lead; 30-45 s each),
rendered here in stereo by the FluidSynth CLI with FluidR3 GM at 44.1 kHz
(band and lead mixed, lead +6 dB) and cached in ``bench/.cache/mastering/``.
Each song then gets a level treatment, in turn:

* ``-1 dBFS``: peak-normalised to -1 dBFS (as mixed);
* ``quiet``: peak at -24 dBFS;
* ``clipped``: 9 dB into full scale, hard-clipped (loud, flat, inter-sample
  overs);
* ``soft-clipped``: 9 dB into a tanh curve;
* ``verse/chorus``: the first half 18 dB down (a very dynamic track);
* ``48 kHz``: the -1 dBFS mix resampled to 48 kHz (soxr), mono.

Systems, each re-measured by our meter (``workers.dsp.loudness.measure``):

* ours: ``mastering.master(x, sr, target, ceiling)``; a 422 (target not
  reachable without more than 12 dB of limiting) is counted, not scored;
* pyloudnorm + clip: ``pyloudnorm.normalize.loudness`` to the target (its
  own BS.1770 meter), then samples clipped at the ceiling (a sample-peak
  "limiter");
* pedalboard: gain to the target by our meter, then
  ``pedalboard.BrickwallLimiter(ceiling_db=ceiling, true_peak=True)``
  (5 ms look-ahead, 100 ms release).

Columns per (target, ceiling): runs, 422s, |error| LU max and mean, how many
are within ±0.5 LU, max (true peak − ceiling) in dB (positive = over the
ceiling), and seconds per minute of audio (wall clock, single-threaded, after
a warm-up; noisy on a shared machine).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

# Run as a script from anywhere: the project root on the path (bench.*, tests.*).
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import soundfile  # noqa: E402
import soxr  # noqa: E402

from bench.accuracy import (  # noqa: E402
    LEAD_DB,
    SOUNDFONT,
    build_song,
    check_prerequisites,
    make_specs,
)
from workers.dsp import loudness, mastering  # noqa: E402
from workers.dsp.errors import UnprocessableAudio  # noqa: E402

RENDER_SR = 44100
CACHE = ROOT / "bench" / ".cache" / "mastering"
RENDER_VERSION = "fluidsynth-cli/float/stereo-mix/lead+6dB/v1"  # bump when the mixing changes
# Broadcast, podcast, streaming, loud, very loud, and one past what most music takes cleanly.
PAIRS = [(-23.0, -2.0), (-16.0, -1.0), (-14.0, -1.0), (-11.0, -1.0), (-9.0, -0.5), (-7.0, -1.0)]
TREATMENTS = ("-1 dBFS", "quiet", "clipped", "soft-clipped", "verse/chorus", "48 kHz")
SYSTEMS = ("ours", "pyloudnorm + clip", "pedalboard")


def render(spec, fs_version: str) -> Path:
    """The song's stereo 44.1 kHz mix, peak -1 dBFS (rendered once, cached)."""
    song = build_song(spec)
    parts = []
    for mid in (song.band, song.lead):
        buf = io.BytesIO()
        mid.write(buf)
        parts.append(buf.getvalue())
    h = hashlib.sha256()
    for part in (json.dumps(asdict(spec), sort_keys=True).encode(), *parts):
        h.update(hashlib.sha256(part).digest())
    h.update(f"{RENDER_VERSION}|{fs_version}|{SOUNDFONT.stat().st_size}|{RENDER_SR}".encode())
    path = CACHE / f"song{spec.index:03d}-{h.hexdigest()[:16]}.flac"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = CACHE / f".tmp-{os.getpid()}-{spec.index}"
    tmp.mkdir(exist_ok=True)
    try:
        stems = []
        for name, data in zip(("band", "lead"), parts, strict=True):
            mid, wav = tmp / f"{name}.mid", tmp / f"{name}.wav"
            mid.write_bytes(data)
            cmd = ["fluidsynth", "-ni", "-q", "-r", str(RENDER_SR), "-O", "float", "-T", "wav"]
            subprocess.run([*cmd, "-F", str(wav), str(SOUNDFONT), str(mid)], check=True, capture_output=True)
            x, sr = soundfile.read(wav, dtype="float32", always_2d=True)
            assert sr == RENDER_SR
            stems.append(x)
        n = int(round(spec.duration * RENDER_SR))
        band, lead = (np.pad(s, ((0, max(0, n - len(s))), (0, 0)))[:n] for s in stems)
        rms = lambda v: float(np.sqrt(np.mean(np.square(v, dtype=np.float64))))  # noqa: E731
        mix = band + lead * (10 ** (LEAD_DB / 20) * rms(band) / max(rms(lead), 1e-12))
        mix *= 10 ** (-1 / 20) / float(np.max(np.abs(mix)))
        soundfile.write(path.with_suffix(".tmp.flac"), mix.astype(np.float32), RENDER_SR, subtype="PCM_24")
        os.replace(path.with_suffix(".tmp.flac"), path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def treat(x: np.ndarray, sr: int, treatment: str) -> tuple[np.ndarray, int]:
    """The mix at one of the TREATMENTS levels (x peaks at -1 dBFS)."""
    if treatment == "-1 dBFS":
        return x, sr
    if treatment == "quiet":
        return x * 10 ** (-23 / 20), sr
    if treatment == "clipped":
        return np.clip(x * 10 ** (9 / 20), -1.0, 1.0), sr
    if treatment == "soft-clipped":
        return np.tanh(x * 10 ** (9 / 20)), sr
    if treatment == "verse/chorus":
        y = x.copy()
        y[: len(y) // 2] *= 10 ** (-18 / 20)
        return y, sr
    if treatment == "48 kHz":
        return soxr.resample(x.mean(axis=1), sr, 48000, quality="HQ"), 48000
    raise ValueError(treatment)


@dataclass
class Run:
    song: int
    treatment: str
    target: float
    ceiling: float
    system: str
    seconds: float  # wall clock of the call
    minutes: float  # audio duration
    lufs: float | None = None  # output, our meter; None for a 422
    true_peak: float | None = None


def run_ours(x, sr, target, ceiling):
    try:
        return mastering.master(x, sr, target_lufs=target, ceiling_dbtp=ceiling).audio
    except UnprocessableAudio:
        return None


def run_pyloudnorm(x, sr, target, ceiling):
    import pyloudnorm

    warnings.filterwarnings("ignore", "Possible clipped samples", UserWarning)  # clipping is the point

    meter = pyloudnorm.Meter(sr)
    y = pyloudnorm.normalize.loudness(x, meter.integrated_loudness(x), target)
    c = 10 ** (ceiling / 20)
    return np.clip(y, -c, c).astype(np.float32)


def run_pedalboard(x, sr, target, ceiling):
    import pedalboard

    gain = 10 ** ((target - loudness.measure(x, sr).integrated_lufs) / 20)
    limiter = pedalboard.BrickwallLimiter(ceiling_db=ceiling, true_peak=True)
    y = (x * gain).astype(np.float32)
    return limiter(y.T if y.ndim == 2 else y, sr).T if y.ndim == 2 else limiter(y, sr)


RUNNERS = {"ours": run_ours, "pyloudnorm + clip": run_pyloudnorm, "pedalboard": run_pedalboard}


def summary_rows(runs: list[Run]) -> list[list[str]]:
    rows = []
    for target, ceiling in PAIRS:
        for system in SYSTEMS:
            rs = [r for r in runs if (r.target, r.ceiling, r.system) == (target, ceiling, system)]
            done = [r for r in rs if r.lufs is not None]
            errs = np.array([abs(r.lufs - r.target) for r in done]) if done else np.array([np.nan])
            over = max((r.true_peak - r.ceiling for r in done), default=float("nan"))
            spm = sum(r.seconds for r in rs) / max(1e-9, sum(r.minutes for r in rs))
            rows.append(
                [
                    f"{target:g} / {ceiling:g}",
                    system,
                    str(len(rs)),
                    str(len(rs) - len(done)),
                    f"{np.nanmax(errs):.2f}",
                    f"{np.nanmean(errs):.3f}",
                    f"{int(np.sum(errs <= 0.5))}/{len(done)}",
                    f"{over:+.2f}",
                    f"{spm:.2f}",
                ]
            )
    return rows


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--songs", type=int, default=10, help="number of songs (default 10)")
    ap.add_argument("--seed", type=int, default=2025, help="song-set seed (default 2025)")
    ap.add_argument("--verbose", action="store_true", help="also print one row per run of ours")
    args = ap.parse_args()

    problem = check_prerequisites()
    if problem:
        print(problem, file=sys.stderr)
        return 2
    out = subprocess.run(["fluidsynth", "--version"], capture_output=True, text=True).stdout
    fs_version = out.splitlines()[0] if out else "unknown"
    specs = make_specs(args.songs, args.seed)
    t = time.perf_counter()
    paths = [render(s, fs_version) for s in specs]
    print(f"{len(specs)} songs (seed {args.seed}); renders ready in {time.perf_counter() - t:.0f} s")

    loudness.warmup()
    mastering.warmup()
    runs: list[Run] = []
    for i, path in enumerate(paths):
        mix, sr0 = soundfile.read(path, dtype="float32", always_2d=True)
        treatment = TREATMENTS[i % len(TREATMENTS)]
        x, sr = treat(mix.astype(np.float64), sr0, treatment)
        x = x.astype(np.float32)
        before = loudness.measure(x, sr)
        minutes = len(x) / sr / 60
        line = [
            f"[{i + 1:2d}/{len(paths)}] {treatment:12s} {before.integrated_lufs:6.1f} LUFS "
            f"{before.true_peak_dbtp:+5.1f} dBTP:"
        ]
        for target, ceiling in PAIRS:
            for system in SYSTEMS:
                t = time.perf_counter()
                y = RUNNERS[system](x, sr, target, ceiling)
                r = Run(i, treatment, target, ceiling, system, time.perf_counter() - t, minutes)
                if y is not None:
                    m = loudness.measure(y, sr)
                    r.lufs, r.true_peak = m.integrated_lufs, m.true_peak_dbtp
                runs.append(r)
            ours = runs[-len(SYSTEMS)]
            line.append("422" if ours.lufs is None else f"{ours.lufs - target:+.2f}")
        print(" ".join(line), flush=True)
        if args.verbose:
            for r in runs[-len(PAIRS) * len(SYSTEMS) :]:
                if r.system == "ours" and r.lufs is not None:
                    print(
                        f"      {r.target:g}/{r.ceiling:g}: {r.lufs:.2f} LUFS {r.true_peak:.2f} dBTP "
                        f"{r.seconds:.2f} s"
                    )

    headers = [
        "target LUFS / ceiling dBTP",
        "system",
        "runs",
        "422",
        "max |err| LU",
        "mean |err| LU",
        "within 0.5",
        "max TP-ceiling dB",
        "s per min",
    ]
    print()
    print(table(headers, summary_rows(runs)))
    minutes = sum(soundfile.info(p).frames / RENDER_SR for p in paths) / 60
    print(
        f"\n{len(paths)} songs, {minutes:.1f} min of audio; load average {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} cores (timings are wall clock, noisy on a shared machine)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
