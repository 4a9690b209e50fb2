"""Train the beat-activation network of ``workers/dsp/beatnet.py`` from scratch.

    nice -n 10 .venv/bin/python bench/train_beats.py   # renders (~8 min on a busy box), trains (~1 min)

Data: ``bench/songgen.py`` ``train``-style songs (FluidR3 GM and TimGM6mb),
32 songs from each of the seeds 1003-1006 (``--seeds``); never the held-out
split (MuseScore General), and not the seeds the beat tracker was tuned on
(the dev split, 77, and 1000-1002). Per song: the onset bands of
``workers.dsp.tempo.onset_bands`` and, per frame, ``beatnet.activation_inputs``;
the label is 1 within one frame (11.6 ms) of a reference beat, 0 from four
frames on (the frames between are left out, so the network is not asked to
place a beat more precisely than the references' jitter). A fifth of the
negative frames is kept. The songs of the last seed choose the epoch.

Network: 243 inputs → 64 → 32 → 1, ReLU, trained as a two-way softmax (the
training code of ``train_chords.py``) collapsed to one logit; Adam,
dropout; float16 weights in ``workers/dsp/data/beats.npz``.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import soundfile  # noqa: E402
import soxr  # noqa: E402

from bench import songgen  # noqa: E402
from bench.train_chords import Net, fit, save_weights  # noqa: E402
from workers.dsp import beatnet, mlp  # noqa: E402
from workers.dsp.features import ANALYSIS_SR  # noqa: E402
from workers.dsp.tempo import onset_bands  # noqa: E402

FEAT_CACHE = ROOT / "bench" / ".cache" / "beatbands"
FEAT_VERSION = "v1"
SONGS_PER_SEED = 32
NEGATIVE_SHARE = 0.2


def song_bands(song) -> tuple[np.ndarray, float]:
    """The onset bands of a rendered song (cached)."""
    key = hashlib.sha256(f"{FEAT_VERSION}|{song.audio_path.name}".encode()).hexdigest()[:20]
    path = FEAT_CACHE / f"{key}.npz"
    if path.exists():
        with np.load(path) as z:
            return z["bands"], float(z["fps"])
    y44, sr = soundfile.read(song.audio_path, dtype="float32")
    y = soxr.resample(y44, sr, ANALYSIS_SR, quality="HQ").astype(np.float32)
    bands, fps = onset_bands(y, ANALYSIS_SR)
    FEAT_CACHE.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, bands=bands.astype(np.float32), fps=fps)
    return bands, fps


def examples(bands: np.ndarray, fps: float, ref: np.ndarray, rng: np.random.Generator):
    """(inputs, labels) of one song: positives within a frame of a reference
    beat, a NEGATIVE_SHARE sample of the frames four or more away."""
    n = bands.shape[1]
    t = np.arange(n) / fps
    idx = np.clip(np.searchsorted(ref, t), 1, len(ref) - 1)
    dist = np.minimum(np.abs(t - ref[idx - 1]), np.abs(t - ref[idx])) * fps
    pos = dist <= 1.0
    neg = (dist >= 4.0) & (rng.random(n) < NEGATIVE_SHARE)
    # Only inside the music (the references stop at the last bar).
    inside = (t >= ref[0] - 1.0) & (t <= ref[-1] + 1.0)
    keep = (pos | neg) & inside
    x = beatnet.activation_inputs(bands)[keep]
    return x, pos[keep].astype(np.int64)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="1003-1006", help="first-last seed (32 songs each); the last is dev")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--out", default=str(mlp.DATA / f"{beatnet.WEIGHTS}.npz"))
    args = ap.parse_args()
    first, last = (int(v) for v in args.seeds.split("-"))
    fs = songgen.fluidsynth_version()
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    parts: dict[str, list] = {"train": [], "dev": []}
    for seed in range(first, last + 1):
        for spec in songgen.make_specs(SONGS_PER_SEED, seed, "train"):
            song = songgen.build_song(spec)
            song.audio_path = songgen.render_song(song, fs)
            bands, fps = song_bands(song)
            parts["dev" if seed == last else "train"].append(examples(bands, fps, song.ref.beats, rng))
        print(f"seed {seed} ({time.perf_counter() - t0:.0f} s)", flush=True)
    x_tr = np.concatenate([p[0] for p in parts["train"]])
    y_tr = np.concatenate([p[1] for p in parts["train"]])
    x_dev = np.concatenate([p[0] for p in parts["dev"]])
    y_dev = np.concatenate([p[1] for p in parts["dev"]])
    print(f"train {len(y_tr)} frames ({y_tr.mean():.3f} beats), dev {len(y_dev)}", flush=True)
    net = Net([x_tr.shape[1], 64, 32, 2], rng)

    def run_epoch(lr: float) -> list[float]:
        order = rng.permutation(len(y_tr))
        return [
            net.step(x_tr[order[s : s + 256]], y_tr[order[s : s + 256]], rng, lr, p_in=0.05, p_hid=0.2)
            for s in range(0, len(order), 256)
        ]

    def evaluate() -> tuple[float, str]:
        logits = net.forward(x_dev)[0]
        logit = logits[:, 1] - logits[:, 0]
        dev_loss = float(np.mean(np.logaddexp(0, -logit) * y_dev + np.logaddexp(0, logit) * (1 - y_dev)))
        return dev_loss, f"dev loss {dev_loss:.4f}"

    score, best = fit(net, args.epochs, run_epoch, evaluate, lower_is_better=True)
    out = Path(args.out)
    save_weights(*best, out, one_logit=True)
    print(f"best dev loss {score:.4f}; wrote {out} ({out.stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
