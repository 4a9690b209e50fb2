"""Train the downbeat network of ``workers/dsp/beats.py`` from scratch.

    .venv/bin/python bench/train_downbeats.py          # after bench/render_songs.py (see train_chords.py)

Data: the same ``train``-style songs as the chord model (``bench/songgen.py``,
FluidR3 GM and TimGM6mb, seeds from 1000), never the held-out split. Per
song: our own tracked beats, ``beats.beat_features`` at them, and the label
"a reference downbeat lies within 70 ms"; songs whose tracked beats are off
the reference grid (fewer than 80 % within 70 ms) are left out, since their
labels say nothing about bars. The last ``--dev`` songs choose the epoch.

Network: (2·3 + 1) × 8 = 56 inputs → 32 → 16 → 1, ReLU, a two-way softmax
(the training code of ``train_chords.py``) collapsed to one logit, Adam,
dropout. One of its features is the change of the chord network's
probabilities, so retrain this one after the chord network.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

# Run as a script from anywhere: the project root on the path (bench.*, tests.*).
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import soundfile  # noqa: E402
import soxr  # noqa: E402

from bench import songgen  # noqa: E402
from bench.train_chords import Net, fit, save_weights  # noqa: E402
from workers.dsp import beatnet, beats, chordnet, mlp  # noqa: E402
from workers.dsp.features import ANALYSIS_SR  # noqa: E402

FEAT_CACHE = ROOT / "bench" / ".cache" / "downbeatfeat"
FEAT_VERSION = "v3"  # v3: beats tracked on the beat activation


def song_features(song) -> tuple[np.ndarray, np.ndarray] | None:
    # The features hold the chord network's output: its weights are part of the key.
    chord_weights = hashlib.sha256((mlp.DATA / f"{chordnet.WEIGHTS}.npz").read_bytes()).hexdigest()[:12]
    key = hashlib.sha256(f"{FEAT_VERSION}|{chord_weights}|{song.audio_path.name}".encode()).hexdigest()[:20]
    path = FEAT_CACHE / f"{key}.npz"
    if path.exists():
        with np.load(path) as z:
            return (z["x"], z["y"]) if len(z["x"]) else None
    y44, sr = soundfile.read(song.audio_path, dtype="float32")
    y = soxr.resample(y44, sr, ANALYSIS_SR, quality="HQ").astype(np.float32)
    bands, fps = beats.onset_bands(y, ANALYSIS_SR)
    activation = beatnet.activation(bands)
    tempo = beats.tempo_from_bands(bands, fps, activation).tempo
    x = np.zeros((0, beats.N_FEATURES))
    lab = np.zeros(0)
    if tempo > 0:
        frames = beats._track(beats.beat_signal(bands, activation), 60.0 * fps / tempo)
        times = frames / fps
        on_grid = np.mean([np.min(np.abs(song.ref.beats - t)) < 0.07 for t in times]) if len(times) else 0
        if len(times) > 8 and on_grid >= 0.8:
            x = beats.beat_features(y, ANALYSIS_SR, bands, fps, frames, times)[0]
            lab = np.array([np.min(np.abs(song.ref.downbeats - t)) < 0.07 for t in times], float)
    FEAT_CACHE.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, x=x.astype(np.float32), y=lab)
    return (x, lab) if len(x) else None


def context(x: np.ndarray) -> np.ndarray:
    c = beats.DOWNBEAT_CONTEXT
    n, d = x.shape
    padded = np.zeros((n + 2 * c, d), np.float32)
    padded[c : c + n] = x
    return np.concatenate([padded[k : k + n] for k in range(2 * c + 1)], axis=1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--songs", type=int, default=400)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--dev", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--out", default=str(mlp.DATA / f"{beats.DOWNBEAT_WEIGHTS}.npz"))
    args = ap.parse_args()
    fs = songgen.fluidsynth_version()
    specs = songgen.make_specs(args.songs, args.seed, "train")
    t0 = time.perf_counter()
    xs, ys = [], []
    for i, spec in enumerate(specs):
        song = songgen.build_song(spec)
        song.audio_path = songgen.render_song(song, fs)
        out = song_features(song)
        xs.append(context(out[0]) if out else None)
        ys.append(out[1] if out else None)
        if i % 50 == 0:
            print(f"features {i + 1}/{len(specs)} ({time.perf_counter() - t0:.0f} s)", flush=True)
    n_train = len(specs) - args.dev
    keep_tr = [i for i in range(n_train) if xs[i] is not None]
    keep_dev = [i for i in range(n_train, len(specs)) if xs[i] is not None]
    x_tr = np.concatenate([xs[i] for i in keep_tr])
    y_tr = np.concatenate([ys[i] for i in keep_tr]).astype(np.int64)
    x_dev = np.concatenate([xs[i] for i in keep_dev])
    y_dev = np.concatenate([ys[i] for i in keep_dev]).astype(np.int64)
    print(f"train {len(y_tr)} beats from {len(keep_tr)} songs, dev {len(y_dev)} from {len(keep_dev)}")
    rng = np.random.default_rng(0)
    # Two outputs (softmax) rather than one logistic: the same training code
    # as the chord model; the logit is their difference.
    net = Net([x_tr.shape[1], 32, 16, 2], rng)

    def run_epoch(lr: float) -> list[float]:
        order = rng.permutation(len(y_tr))
        return [
            net.step(x_tr[order[s : s + 128]], y_tr[order[s : s + 128]], rng, lr, p_in=0.05, p_hid=0.2)
            for s in range(0, len(order), 128)
        ]

    def evaluate() -> tuple[float, str]:
        acc = float(np.mean(net.predict(x_dev) == y_dev))
        return acc, f"dev acc {acc:.4f}"

    score, best = fit(net, args.epochs, run_epoch, evaluate)
    out = Path(args.out)
    save_weights(*best, out, one_logit=True)
    print(f"best dev accuracy {score:.4f}; wrote {out} ({out.stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
