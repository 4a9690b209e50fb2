"""Accuracy, false matches, latency and index size of ``identify``
(workers/dsp/fingerprint.py + shared/fingerprints.py) on a generated catalogue.

    .venv/bin/python bench/identify.py                    # 50 -> 200 -> 800 tracks, ~15 min on 2 busy cores
    .venv/bin/python bench/identify.py --sizes 50,200 --queries 60 --unknown 60   # quicker

The catalogue: tracks of 30-60 s, each a tests/synth.py ``song`` (drums,
a chord per bar, bass) with a random tempo (70-170 BPM), key, mode, meter,
drum pattern, progression and swing, plus a seeded random melody (harmonic
tones on the beat grid) so that no two bars are alike. Near-identical by
design: every song uses the same kick sound and the same few progressions,
so unrelated tracks share many landmarks. Prints are cached in
``bench/.cache/identify/`` (keyed by seed, length and a generator version).

Queries: 5-10 s excerpts at uniform random offsets, each with white or pink
noise at 10-30 dB SNR (uniform), half of them re-encoded as 64 kbps MP3
(ffmpeg, libmp3lame) and half of them played 0.98-1.02 times as fast
(resampled: pitch and tempo). Unknown queries are made the same way from
100 tracks that are not in the catalogue (other seeds).

Each catalogue size is indexed under one owner in a private redis-server
(``ops.services.start_redis``), and every query is searched with
``fingerprints.load`` + ``fingerprint.identify`` (what the identify job
does). Reported: top-1 accuracy (right asset and a match
above the default threshold), offset error, false matches among unknown
queries, score distributions, latency (fingerprinting the query's 36
variants, and the search: Redis load + matching) and index memory (``MEMORY
USAGE`` of every key, per minute of audio). Timings are wall clock on a
shared machine: noisy.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402
import redis  # noqa: E402
import soxr  # noqa: E402
import synth  # noqa: E402
from scipy import signal  # noqa: E402

from ops import services  # noqa: E402
from shared import db  # noqa: E402
from shared import fingerprints as index  # noqa: E402
from workers.dsp import fingerprint as fp  # noqa: E402

SR = 22050
CACHE = ROOT / "bench" / ".cache" / "identify"
GENERATOR_VERSION = 1
OWNER = "bench-owner"
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
DRUMS = ("rock", "four_on_floor", "swing", "syncopated", "halftime", "eighths")
UNKNOWN_SEED0 = 100_000


def _tone(midi: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    tilt = rng.uniform(0.5, 1.2)
    x = sum(
        k**-tilt * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.3))
        for k in range(1, 7)
        if k * f0 < SR * 0.45
    )
    env = np.minimum(1, t / 0.01) * np.minimum(1, (t[-1] - t) / 0.03) * np.exp(-t / rng.uniform(0.4, 1.5))
    return x * env


def track(seed: int, seconds: float) -> np.ndarray:
    """A synth.song with random parameters and a random melody on top."""
    rng = np.random.default_rng(seed)
    bpm = float(rng.uniform(70, 170))
    key = str(rng.choice(synth.PITCH_CLASSES))
    mode = str(rng.choice(["major", "minor"]))
    meter = 3 if rng.random() < 0.2 else 4
    prog = str(rng.choice([p for p in synth.PROGRESSIONS if p.startswith("i-") == (mode == "minor")]))
    y, _, _ = synth.song(
        bpm, seconds, key=key, mode=mode, meter=meter, sr=SR, seed=seed,
        pattern=str(rng.choice(DRUMS)), progression=prog, swing=float(rng.choice([0, 0, 0.5, 1])),
    )  # fmt: skip
    mel = np.zeros(len(y))
    tonic = 60 + synth.PITCH_CLASSES.index(key)
    pos, deg, beat = 0.0, 7, 60 / bpm
    while pos < seconds:
        dur = beat * float(rng.choice([0.5, 0.5, 1, 1, 1.5, 2]))
        if rng.random() < 0.85:
            deg = int(np.clip(deg + rng.integers(-3, 4), 0, 14))
            midi = tonic + 12 * (deg // 7) + SCALES[mode][deg % 7] - 5
            s = int(pos * SR)
            x = _tone(midi, dur, rng)[: len(mel) - s]
            mel[s : s + len(x)] += x * rng.uniform(0.7, 1.0)
        pos += dur
    out = y + mel * (0.8 * np.sqrt(np.mean(y**2) / (np.mean(mel**2) + 1e-12)))
    return (out / np.max(np.abs(out)) * 0.9).astype(np.float32)


def track_seconds(seed: int) -> float:
    return float(np.random.default_rng([seed, 7]).uniform(30, 60))


def catalogue_prints(seed: int) -> fp.Prints:
    path = CACHE / f"v{GENERATOR_VERSION}-{seed}.npz"
    if path.exists():
        z = np.load(path)
        return fp.Prints(z["hashes"], z["times"])
    p = fp.fingerprint(track(seed, track_seconds(seed)), SR)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, hashes=p.hashes, times=p.times)
    return p


def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    # Paul Kellet's -3 dB/octave filter on white noise.
    b = [0.049922035, -0.095993537, 0.050612699, -0.004408786]
    a = [1, -2.494956002, 2.017265875, -0.522189400]
    return signal.lfilter(b, a, rng.standard_normal(n))


def _mp3(x: np.ndarray) -> np.ndarray:
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()
    enc = ["ffmpeg", "-loglevel", "error", "-f", "s16le", "-ar", str(SR), "-ac", "1", "-i", "-"]
    mp3 = subprocess.run([*enc, "-b:a", "64k", "-f", "mp3", "-"], input=pcm, capture_output=True, check=True)
    dec = ["ffmpeg", "-loglevel", "error", "-i", "-", "-f", "s16le", "-ac", "1", "-ar", str(SR), "-"]
    out = subprocess.run(dec, input=mp3.stdout, capture_output=True, check=True)
    return np.frombuffer(out.stdout, "<i2").astype(np.float32) / 32768


def make_query(seed: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A degraded excerpt of track ``seed`` and what was done to it."""
    seconds = track_seconds(seed)
    y = track(seed, seconds)
    dur = float(rng.uniform(5, 10))
    start = float(rng.uniform(0, seconds - dur))
    x = y[int(start * SR) : int((start + dur) * SR)].astype(np.float64)
    speed = float(rng.uniform(0.98, 1.02)) if rng.random() < 0.5 else 1.0
    if speed != 1.0:
        x = soxr.resample(x, SR * speed, SR)  # played `speed` times faster
    snr = float(rng.uniform(10, 30))
    colour = "white" if rng.random() < 0.5 else "pink"
    n = rng.standard_normal(len(x)) if colour == "white" else _pink(len(x), rng)
    x = x + n * np.sqrt(np.mean(x**2) / np.mean(n**2) / 10 ** (snr / 10))
    x = x / max(1.0, float(np.max(np.abs(x))))
    mp3 = bool(rng.random() < 0.5)
    if mp3:
        x = _mp3(x)
    info = {"seed": seed, "start": start, "dur": dur, "speed": speed, "snr": snr, "noise": colour, "mp3": mp3}
    return x.astype(np.float32), info


def _pct(v: list[float], q: float) -> float:
    return float(np.percentile(v, q)) if v else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="50,200,800", help="catalogue sizes, comma-separated")
    ap.add_argument("--queries", type=int, default=100, help="queries from the catalogue, per size")
    ap.add_argument("--unknown", type=int, default=100, help="queries from tracks not in the catalogue")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = np.random.default_rng(args.seed)

    t0 = time.perf_counter()
    prints = [catalogue_prints(s) for s in range(max(sizes))]
    minutes = [track_seconds(s) / 60 for s in range(max(sizes))]
    print(
        f"catalogue: {len(prints)} tracks, {sum(minutes):.0f} min, ready in {time.perf_counter() - t0:.0f} s"
    )

    def variants(x: np.ndarray) -> tuple[list, float]:
        t = time.perf_counter()
        v = fp.query_variants(x, SR)
        return v, time.perf_counter() - t

    unknown = []
    for j in range(args.unknown):
        x, info = make_query(UNKNOWN_SEED0 + j, rng)
        unknown.append((*variants(x), info))

    rows, detail = [], []
    with tempfile.TemporaryDirectory() as tmp:
        proc = services.start_redis(Path(tmp) / "redis")
        try:
            r = redis.Redis(port=proc.ports["redis"], decode_responses=True)
            for n in sizes:
                r.flushdb()
                for s in range(n):
                    r.hset(db.asset_key(f"t{s}"), "owner", OWNER)  # prints are kept for live assets
                    index.add(r, OWNER, f"t{s}", prints[s], ttl_s=86400)
                mem = sum(r.memory_usage(k, samples=0) or 0 for k in r.scan_iter("aq:fp*"))
                hits, errs, true_scores, q_ms, s_ms, per = 0, [], [], [], [], []
                for _ in range(args.queries):
                    seed = int(rng.integers(n))
                    x, info = make_query(seed, rng)
                    v, tq = variants(x)
                    t = time.perf_counter()
                    res = fp.identify(v, *index.load(r, OWNER))
                    s_ms.append(1000 * (time.perf_counter() - t))
                    q_ms.append(1000 * tq)
                    ok = res.match is not None and res.match.asset_id == f"t{seed}"
                    hits += ok
                    if ok:
                        errs.append(abs(res.match.offset_s - info["start"]))
                    own = [c.score for c in res.candidates if c.asset_id == f"t{seed}"]
                    true_scores.append(own[0] if own else 0.0)
                    per.append((ok, info))
                false, fscores = 0, []
                for v, _tq, _info in unknown:
                    t = time.perf_counter()
                    res = fp.identify(v, *index.load(r, OWNER))
                    s_ms.append(1000 * (time.perf_counter() - t))
                    false += res.match is not None
                    fscores.append(res.candidates[0].score if res.candidates else 0.0)
                rows.append(
                    {
                        "n": n,
                        "min": sum(minutes[:n]),
                        "top1": hits / max(args.queries, 1),
                        "err_p50": _pct(errs, 50),
                        "err_max": max(errs) if errs else float("nan"),
                        "false": false,
                        "unknown": len(unknown),
                        "fp_p50": _pct(q_ms, 50),
                        "fp_p99": _pct(q_ms, 99),
                        "s_p50": _pct(s_ms, 50),
                        "s_p99": _pct(s_ms, 99),
                        "kb_min": mem / 1024 / sum(minutes[:n]),
                        "mem_mb": mem / 2**20,
                        "true_p5": _pct(true_scores, 5),
                        "true_min": min(true_scores),
                        "false_max": max(fscores) if fscores else float("nan"),
                        "false_p99": _pct(fscores, 99),
                    }
                )
                detail.append((n, per))
                print(f"  {n} tracks done", flush=True)
        finally:
            proc.stop()

    print(f"\ndefault threshold {fp.DEFAULT_THRESHOLD}, min {fp.MIN_MATCHES} matching landmarks; "
          f"{len(fp.SPEEDS)} speeds x {fp.SHIFTS} shifts per query\n")  # fmt: skip
    print("| tracks | audio min | top-1 | offset err p50 / max (s) | false matches | "
          "query fp p50 / p99 (ms) | search p50 / p99 (ms) | index KB / track-min | index MB |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for w in rows:
        print(
            f"| {w['n']} | {w['min']:.0f} | {100 * w['top1']:.1f} % | "
            f"{w['err_p50']:.3f} / {w['err_max']:.3f} | "
            f"{w['false']} / {w['unknown']} | {w['fp_p50']:.0f} / {w['fp_p99']:.0f} | "
            f"{w['s_p50']:.0f} / {w['s_p99']:.0f} | {w['kb_min']:.1f} | {w['mem_mb']:.1f} |"
        )
    print("\n| tracks | true score p5 | true score min | unknown best score p99 | unknown best score max |")
    print("|---:|---:|---:|---:|---:|")
    for w in rows:
        print(
            f"| {w['n']} | {w['true_p5']:.3f} | {w['true_min']:.3f} | "
            f"{w['false_p99']:.3f} | {w['false_max']:.3f} |"
        )
    # Accuracy by condition, all sizes pooled.
    groups = {
        "SNR 10-15 dB": lambda i: i["snr"] < 15,
        "SNR 15-30 dB": lambda i: i["snr"] >= 15,
        "white noise": lambda i: i["noise"] == "white",
        "pink noise": lambda i: i["noise"] == "pink",
        "MP3 64 kbps": lambda i: i["mp3"],
        "speed != 1": lambda i: i["speed"] != 1.0,
        "speed > 1.5 % off": lambda i: abs(i["speed"] - 1) > 0.015,
        "5-7 s excerpt": lambda i: i["dur"] < 7,
    }
    print("\n| condition (all sizes) | queries | top-1 |")
    print("|---|---:|---:|")
    pooled = [p for _, per in detail for p in per]
    for name, pred in groups.items():
        sel = [ok for ok, i in pooled if pred(i)]
        if sel:
            print(f"| {name} | {len(sel)} | {100 * np.mean(sel):.1f} % |")
    misses = [i for ok, i in pooled if not ok]
    if misses:
        print("\nmissed:")
        for i in misses:
            print("  ", {k: round(v, 3) if isinstance(v, float) else v for k, v in i.items()})


if __name__ == "__main__":
    main()
