"""Train the chord classifier of ``workers/dsp/chordnet.py`` from scratch.

    .venv/bin/python bench/render_songs.py --style train --songs 400 --seed 1000   # ~5 min, once
    .venv/bin/python bench/train_chords.py                                         # ~15 min on 2 cores

Data (``--sets``, default ``train:1000:400``, the shipped network's): the
``train`` style of ``bench/songgen.py`` (FluidR3 GM and TimGM6mb, seeds from
1000 on), never the benchmark's held-out style (MuseScore General) nor its
tune split. The last tenth of each set (``--dev-share``) is kept aside to
choose the epoch and report a per-beat accuracy; ``bench/accuracy.py`` then
checks the decoded chords end to end. Adding ``train-sf:2000:400`` (the same
style on csound's GM bank and OPL-3 FM) was tried and not shipped: see
``bench/docs/tonal.md``, "chords-2".

Per song: the audio at 22.05 kHz mono, our own beat tracker's beats (so the
training intervals carry the tracker's errors, as at run time) and, as a
second copy, the fixed grid ``estimate_chords`` uses without beats; the pitch
salience of ``workers/dsp/salience.py`` and ``chordnet.interval_features``;
the label of an interval is the reference chord covering most of it.
Features are cached in ``bench/.cache/chordfeat/``.

Training: a 685-256-128-25 ReLU network, softmax cross-entropy with label
smoothing 0.05, Adam (lr 1e-3 → 1e-4 cosine), batch 256, dropout 0.1 on the
inputs and 0.3 on the hidden layers, weight decay 1e-4; every epoch sees each
training interval once in a random transposition (−5 … +6 semitones). Writes
``workers/dsp/data/chordnet.npz`` (float16 weights) and prints the dev
accuracy per epoch.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

# Run as a script from anywhere: the project root on the path (bench.*, tests.*).
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import soundfile  # noqa: E402
import soxr  # noqa: E402

from bench import songgen  # noqa: E402
from workers.dsp import beats, chordnet, chords, mlp, salience  # noqa: E402
from workers.dsp.features import ANALYSIS_SR  # noqa: E402

FEAT_CACHE = ROOT / "bench" / ".cache" / "chordfeat"
FEAT_VERSION = "v2"
QUAL = {"maj": 0, "min": 1}


def label_index(label: str) -> int:
    if label == "N":
        return 24
    root, q = label.split(":")
    return QUAL[q] * 12 + songgen.PITCH_CLASSES.index(root)


def interval_labels(edges: np.ndarray, ref_intervals: np.ndarray, ref_labels: list[str]) -> np.ndarray:
    """The reference class covering most of each interval."""
    out = np.zeros(len(edges) - 1, np.int64)
    for i, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        overlap = np.clip(np.minimum(b, ref_intervals[:, 1]) - np.maximum(a, ref_intervals[:, 0]), 0, None)
        out[i] = label_index(ref_labels[int(np.argmax(overlap))])
    return out


def song_features(song) -> list[tuple[np.ndarray, np.ndarray]]:
    """(features, labels) on the tracked beats and on the grid used without beats."""
    key = hashlib.sha256(f"{FEAT_VERSION}|{song.audio_path.name}".encode()).hexdigest()[:20]
    path = FEAT_CACHE / f"{key}.npz"
    if path.exists():
        with np.load(path) as z:
            return [(z["x"], z["y"]), (z["xg"], z["yg"])]
    y44, sr = soundfile.read(song.audio_path, dtype="float32")
    y = soxr.resample(y44, sr, ANALYSIS_SR, quality="HQ").astype(np.float32)
    grid = beats.track_beats(y, ANALYSIS_SR)
    duration = len(y) / ANALYSIS_SR
    fr = salience.pitch_salience(y, ANALYSIS_SR)
    out = []
    for beat_times in (grid.beats, None):
        edges = chords.interval_edges(beat_times, duration, fr.hop_seconds)
        x = chordnet.interval_features(fr.salience, fr.hop_seconds, edges).astype(np.float32)
        out.append((x, interval_labels(edges, song.ref.chord_intervals, song.ref.chord_labels)))
    FEAT_CACHE.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, x=out[0][0], y=out[0][1], xg=out[1][0], yg=out[1][1])
    return out


class Net:
    """A ReLU MLP trained with Adam, in numpy."""

    def __init__(self, sizes: list[int], rng: np.random.Generator) -> None:
        self.w = [
            rng.normal(0, np.sqrt(2 / a), (a, b)).astype(np.float32)
            for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        ]
        self.b = [np.zeros(b, np.float32) for b in sizes[1:]]
        self.m = [np.zeros_like(p) for p in self.w + self.b]
        self.v = [np.zeros_like(p) for p in self.w + self.b]
        self.t = 0

    def forward(self, x, rng=None, p_in=0.0, p_hid=0.0):
        acts, masks = [x], []
        h = x
        if rng is not None and p_in:
            mask = (rng.random(h.shape) >= p_in).astype(np.float32) / (1 - p_in)
            h = h * mask
            acts[0] = h
        for i, (w, b) in enumerate(zip(self.w, self.b, strict=True)):
            h = h @ w + b
            if i < len(self.w) - 1:
                h = np.maximum(h, 0)
                if rng is not None and p_hid:
                    mask = (rng.random(h.shape) >= p_hid).astype(np.float32) / (1 - p_hid)
                    h = h * mask
                    masks.append(mask)
                else:
                    masks.append(None)
                acts.append(h)
        return h, acts, masks

    def step(self, x, y, rng, lr, smooth=0.05, wd=1e-4, p_in=0.1, p_hid=0.3) -> float:
        logits, acts, masks = self.forward(x, rng, p_in, p_hid)
        logits = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        k = p.shape[1]
        target = np.full_like(p, smooth / k)
        target[np.arange(len(y)), y] += 1 - smooth
        loss = float(-np.mean(np.sum(target * np.log(p + 1e-12), axis=1)))
        g = (p - target) / len(y)
        grads_w, grads_b = [None] * len(self.w), [None] * len(self.b)
        for i in range(len(self.w) - 1, -1, -1):
            grads_w[i] = acts[i].T @ g + wd * self.w[i]
            grads_b[i] = g.sum(axis=0)
            if i > 0:
                g = g @ self.w[i].T
                g = g * (acts[i] > 0)
                if masks[i - 1] is not None:
                    g = g * masks[i - 1]
        self.t += 1
        b1, b2 = 0.9, 0.999
        params = self.w + self.b
        grads = grads_w + grads_b
        for j, (prm, gr) in enumerate(zip(params, grads, strict=True)):
            self.m[j] = b1 * self.m[j] + (1 - b1) * gr
            self.v[j] = b2 * self.v[j] + (1 - b2) * gr * gr
            mh = self.m[j] / (1 - b1**self.t)
            vh = self.v[j] / (1 - b2**self.t)
            prm -= (lr * mh / (np.sqrt(vh) + 1e-8)).astype(np.float32)
        return loss

    def predict(self, x):
        return self.forward(x)[0].argmax(axis=1)


def fit(net: Net, epochs: int, run_epoch, evaluate, *, lower_is_better: bool = False):
    """The training loop of every network here: ``epochs`` epochs with a
    learning rate annealed from 1e-3 to 1e-4 (cosine); ``run_epoch(lr)``
    takes one epoch's Adam steps and returns their losses, ``evaluate()``
    scores the dev songs as ``(score, text to print)``. Returns the best
    score and ``(weights, biases)`` of the epoch that reached it."""
    best_score, best = None, None
    for epoch in range(epochs):
        lr = 1e-4 + 0.5 * (1e-3 - 1e-4) * (1 + np.cos(np.pi * epoch / epochs))
        t = time.perf_counter()
        losses = run_epoch(lr)
        score, text = evaluate()
        if best_score is None or (score < best_score if lower_is_better else score > best_score):
            best_score, best = score, ([w.copy() for w in net.w], [b.copy() for b in net.b])
        print(
            f"epoch {epoch + 1:3d} lr {lr:.5f} loss {np.mean(losses):.4f} {text} "
            f"({time.perf_counter() - t:.0f} s)",
            flush=True,
        )
    return best_score, best


def save_weights(ws: list[np.ndarray], bs: list[np.ndarray], out: Path, *, one_logit: bool = False) -> None:
    """Write a network's layers as float16 ``w0, b0, ...`` (the layout
    ``workers/dsp/mlp.py`` loads). ``one_logit``: collapse a two-way softmax
    into one logit, (w1 - w0), (b1 - b0)."""
    ws, bs = list(ws), list(bs)
    if one_logit:
        ws[-1] = ws[-1][:, 1:] - ws[-1][:, :1]
        bs[-1] = bs[-1][1:] - bs[-1][:1]
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"layers": np.array(len(ws))}
    for i, (w, b) in enumerate(zip(ws, bs, strict=True)):
        arrays[f"w{i}"] = w.astype(np.float16)
        arrays[f"b{i}"] = b.astype(np.float16)
    np.savez_compressed(out, **arrays)


def song_set(text: str) -> tuple[str, int, int]:
    """``STYLE:SEED:SONGS`` (a ``bench/songgen.py`` style)."""
    style, seed, n = text.split(":")
    if style not in songgen.STYLES:
        raise argparse.ArgumentTypeError(f"unknown style {style!r}")
    return style, int(seed), int(n)


def _features_of(spec, fs: str) -> tuple[np.ndarray, np.ndarray]:
    song = songgen.build_song(spec)
    song.audio_path = songgen.render_song(song, fs)
    pairs = song_features(song)
    x = np.concatenate([chordnet.with_context(x) for x, _ in pairs]).astype(np.float32)
    return x, np.concatenate([y for _, y in pairs])


def load_sets(sets: list[tuple[str, int, int]], dev_share: float, jobs: int):
    """Training and dev (features, labels) of the song sets: the last
    ``dev_share`` of each set's songs is dev."""
    fs = songgen.fluidsynth_version()
    t0 = time.perf_counter()
    train, dev = [], []
    for style, seed, n in sets:
        specs = songgen.make_specs(n, seed, style)
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            pairs = list(pool.map(_features_of, specs, [fs] * len(specs), chunksize=4))
        n_dev = int(round(dev_share * n))
        train += pairs[: n - n_dev]
        dev += pairs[n - n_dev :]
        print(f"features of {style}:{seed}:{n} ({time.perf_counter() - t0:.0f} s)", flush=True)
    x_tr, y_tr = (np.concatenate(a) for a in zip(*train, strict=True))
    x_dev, y_dev = (np.concatenate(a) for a in zip(*dev, strict=True))
    print(f"train {len(y_tr)} intervals from {len(train)} songs, dev {len(y_dev)} from {len(dev)}")
    return x_tr, y_tr, x_dev, y_dev


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--sets",
        type=lambda v: [song_set(x) for x in v.split(",")],
        default=[("train", 1000, 400)],
        help="comma-separated STYLE:SEED:SONGS (default train:1000:400)",
    )
    ap.add_argument("--dev-share", type=float, default=0.1, help="last share of each set kept for the epoch")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--hidden", default="256,128")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default=str(mlp.DATA / f"{chordnet.WEIGHTS}.npz"))
    args = ap.parse_args()

    x_tr, y_tr, x_dev, y_dev = load_sets(args.sets, args.dev_share, args.jobs)
    rng = np.random.default_rng(0)
    sizes = [x_tr.shape[1], *(int(h) for h in args.hidden.split(",")), chordnet.N_CLASSES]
    net = Net(sizes, rng)

    def run_epoch(lr: float) -> list[float]:
        shifts = rng.integers(-5, 7, len(y_tr))
        xa, ya = np.empty_like(x_tr), np.empty_like(y_tr)
        for k in range(-5, 7):
            sel = shifts == k
            xa[sel], ya[sel] = chordnet.transpose(x_tr[sel], y_tr[sel], k)
        order = rng.permutation(len(ya))
        batches = (order[s : s + 256] for s in range(0, len(order), 256))
        return [net.step(xa[j], ya[j], rng, lr) for j in batches]

    def evaluate() -> tuple[float, str]:
        acc = float(np.mean(net.predict(x_dev) == y_dev))
        return acc, f"dev acc {acc:.4f}"

    score, best = fit(net, args.epochs, run_epoch, evaluate)
    out = Path(args.out)
    save_weights(*best, out)
    print(f"best dev accuracy {score:.4f}; wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
