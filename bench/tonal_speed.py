"""CPU time of the five tonal/rhythm jobs as the worker runs them, per
minute of audio: bpm, beatgrid, key, chords, pitch.

    nice -n 10 .venv/bin/python bench/tonal_speed.py                 # 8 tune-split songs
    nice -n 10 .venv/bin/python bench/tonal_speed.py --split dev --songs 4 --profile chords

Each song of the split (``bench/accuracy.py``'s renders, cached) is written
once as a stereo 44.1 kHz MP3 (libmp3lame 192 kb/s, the commonest upload;
the right channel 0.3 ms late so the two differ). Every job then starts from
the file as the worker does: ``shared.audio.probe``, a fresh
``workers.runner.Audio`` (decode, downmix, soxr to 22.05 kHz) and the task's
own compute function from ``workers/tasks/analysis.py`` — so each job pays
for its own decode, as separate jobs do. Timed as CPU seconds of the process
(``time.process_time``) with one BLAS/OpenMP thread (threadpoolctl, as the
workers run), so load from elsewhere on the machine changes little; the wall
time is printed next to it with the load average. One warm-up pass (numba
caches, network weights, FFT plans) is not counted; then ``--repeats``
passes, the median per song and job.

``--profile JOB`` prints the cProfile of that job's compute over the songs
instead (cumulative time, top 30).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import soundfile  # noqa: E402
import threadpoolctl  # noqa: E402

from bench import accuracy  # noqa: E402
from shared import audio as shared_audio  # noqa: E402
from workers.runner import Audio  # noqa: E402
from workers.tasks import analysis  # noqa: E402

# The operation names of the five jobs and their compute functions; pitch
# with the benchmark's melody range (bench/accuracy.py).
JOBS = {
    "bpm": (analysis.analyze_tempo.compute, {}),
    "beatgrid": (analysis.track_beat_grid.compute, {}),
    "key": (analysis.analyze_key.compute, {}),
    "chords": (analysis.recognize_chords.compute, {}),
    "pitch": (analysis.track_pitch.compute, {"fmin": accuracy.FMIN_HZ, "fmax": accuracy.FMAX_HZ}),
}


def to_mp3(flac: Path, out: Path) -> float:
    """Stereo 44.1 kHz MP3 of a mono render; returns its duration (s)."""
    y, sr = soundfile.read(flac, dtype="float32")
    lag = int(round(0.0003 * sr))
    x = np.stack([y, np.concatenate([np.zeros(lag, np.float32), 0.95 * y[:-lag]])], axis=1)
    wav = out.with_suffix(".wav")
    soundfile.write(wav, x, sr, subtype="PCM_24")
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(wav), "-c:a", "libmp3lame", "-b:a", "192k"]
    subprocess.run([*cmd, str(out)], check=True)
    wav.unlink()
    return len(y) / sr


def run_job(name: str, path: Path) -> dict:
    compute, options = JOBS[name]
    audio = Audio(path, shared_audio.probe(path))
    return compute(audio, dict(options), None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--split", default="tune", choices=accuracy.SPLITS)
    ap.add_argument("--songs", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--jobs", default=",".join(JOBS), help="comma-separated subset of " + ",".join(JOBS))
    ap.add_argument("--profile", choices=tuple(JOBS), help="cProfile one job instead of timing")
    args = ap.parse_args()
    jobs = [j for j in args.jobs.split(",") if j]

    threadpoolctl.threadpool_limits(limits=1)
    seeds = [accuracy.SPLIT_SEEDS[args.split]]
    songs = accuracy.split_songs(args.split, args.songs, seeds, 2, accuracy._fluidsynth_version())
    with tempfile.TemporaryDirectory() as tmp:
        files, minutes = [], 0.0
        for i, song in enumerate(songs):
            mp3 = Path(tmp) / f"song{i}.mp3"
            minutes += to_mp3(song.audio_path, mp3) / 60
            files.append(mp3)
        for name in jobs:  # warm-up: numba caches, weights, FFT plans
            run_job(name, files[0])
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            for f in files:
                run_job(args.profile, f)
            prof.disable()
            pstats.Stats(prof).sort_stats("cumulative").print_stats(30)
            return 0
        load0 = os.getloadavg()[0]
        cpu: dict[str, list[float]] = {j: [0.0] * len(files) for j in jobs}
        wall: dict[str, list[float]] = {j: [0.0] * len(files) for j in jobs}
        for i, f in enumerate(files):
            for name in jobs:
                c_runs, w_runs = [], []
                for _ in range(args.repeats):
                    w, c = time.perf_counter(), time.process_time()
                    run_job(name, f)
                    c_runs.append(time.process_time() - c)
                    w_runs.append(time.perf_counter() - w)
                cpu[name][i] = statistics.median(c_runs)
                wall[name][i] = statistics.median(w_runs)
        load1 = os.getloadavg()[0]

    print(
        f"{args.split} split, {len(files)} songs, {minutes:.1f} min of audio, stereo 44.1 kHz MP3; "
        f"load average {load0:.2f} at the start, {load1:.2f} at the end\n"
    )
    print("| job | CPU s / min | wall s / min |")
    print("|---|---:|---:|")
    for name in jobs:
        print(f"| {name} | {sum(cpu[name]) / minutes:.3f} | {sum(wall[name]) / minutes:.3f} |")
    total_c = sum(sum(v) for v in cpu.values()) / minutes
    total_w = sum(sum(v) for v in wall.values()) / minutes
    print(f"| all {len(jobs)} | **{total_c:.3f}** | {total_w:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
