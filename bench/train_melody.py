"""Train the lead-pitch classifier of ``workers/dsp/pitch.py`` from scratch.

    nice -n 10 .venv/bin/python bench/train_melody.py --render-only   # 240 + 80 stems, ~12 min, once
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/train_melody.py   # ~1 min features, 5-8 min training

Data: the ``train`` style of ``bench/songgen.py`` (FluidR3 GM and TimGM6mb,
every melodic GM program that can lead, seeds from 1000 on): never the
benchmark's held-out split (MuseScore General, seed 31337) nor its tune
split. Each song's three stems (drums + bass, harmony, lead) are rendered
apart and cached (``bench/.cache/melody-stems/``), then mixed here several
ways: at the spec's level (lead −3 … +15 dB over the harmony), at a second
level drawn from −2 … +16 dB, and, for every fifth song, the lead alone (so
that a clean melody stays easy). Every third song (index % 3 == 1) is also
rendered with its lead an octave lower (if its lowest note stays at or above
MIDI 38; a second stems file, mixed the same ways, the lead alone when
index % 5 == 1), so that real low registers are seen. The reference is the
lead's MIDI notes: at each frame centre the sounding note's pitch, else "no lead".

Features: ``pitch.lead_features`` (the semitone harmonic salience of the
pitch tracker's spectra, MIDI 36–96, at six frame offsets, see the module
docstring of ``workers/dsp/pitch.py``) on every second frame. The last
``--dev`` songs are kept aside to choose the epoch (frame accuracy over all
frames, "no lead" a class); ``bench/accuracy.py --split dev`` and
``--split tune`` then check the decoded melody end to end.

Training: an MLP (``--hidden``), softmax cross-entropy with label smoothing
0.02, Adam (lr 1e-3 → 1e-4 cosine), batch 256, dropout 0.1 on the inputs and
0.2 on the hidden layers (``bench/train_chords.py``'s numpy trainer); every
epoch sees each training frame once, shifted by −4 … +4 semitones (60 % of
the frames) or −12 … +7 (the rest; input rows rolled along the pitch axis,
the label with them) so every register down to a bass voice is seen with
every timbre. Writes ``workers/dsp/data/leadnet.npz`` (float16).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from concurrent.futures import ThreadPoolExecutor  # noqa: E402

import numpy as np  # noqa: E402
import soxr  # noqa: E402

from bench import songgen  # noqa: E402
from bench.train_chords import Net, fit, save_weights  # noqa: E402
from workers.dsp import mlp, pitch  # noqa: E402
from workers.dsp.features import ANALYSIS_SR  # noqa: E402

STEM_CACHE = ROOT / "bench" / ".cache" / "melody-stems"
FEAT_CACHE = ROOT / "bench" / ".cache" / "melodyfeat"
FEAT_VERSION = "v2"  # v2: frames beyond the ends repeat the edge (v1: the floor)
# Every third song (index % 3 == 1) is also rendered with its lead an octave
# lower, so that real low registers (male voices, cello, bass clarinet: their
# coarser spectral resolution) are seen, if its lowest note stays at or above
# MIDI 38. (Also two octaves lower for another third: clean low melodies a little
# better, dev RPA 0.820 → 0.807; bench/docs/tonal.md.)
LOW_EVERY = 3
LOW_SHIFT = -12
LOW_MIN_MIDI = 38
SHIFT = 4  # training shifts: -SHIFT … +SHIFT semitones for 60 % of the frames ...
WIDE_SHIFT = (-12, 7)  # ... the others anywhere in -12 … +7 (the lead's register down to a bass voice)


def render_stems(song, fs_version: str) -> Path:
    """The three stems at 22.05 kHz mono (float16 .npz), rendered as
    ``songgen.render_song`` renders them (``songgen.render_stems``)."""
    spec = song.spec
    parts = [songgen._midi_bytes(x) for x in (song.rhythm, song.harmony, song.lead)]
    h = hashlib.sha256()
    for part in (json.dumps(asdict(spec), sort_keys=True).encode(), *parts, fs_version.encode()):
        h.update(hashlib.sha256(part).digest())
    path = STEM_CACHE / f"song{spec.index:04d}-{h.hexdigest()[:16]}.npz"
    if path.exists():
        return path
    STEM_CACHE.mkdir(parents=True, exist_ok=True)
    tmp = STEM_CACHE / f".tmp-{os.getpid()}-{spec.index}"
    tmp.mkdir(exist_ok=True)
    try:
        stems = [
            soxr.resample(y, songgen.RENDER_SR, ANALYSIS_SR, quality="HQ").astype(np.float32)
            for y in songgen.render_stems(song, tmp)
        ]
        np.savez(path.with_suffix(".tmp.npz"), rhythm=stems[0], harmony=stems[1], lead=stems[2])
        os.replace(path.with_suffix(".tmp.npz"), path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _rms(v: np.ndarray) -> float:
    return max(float(np.sqrt(np.mean(np.square(v, dtype=np.float64)))), 1e-12)


def transposed(song, k: int):
    """The song with its lead moved by ``k`` semitones (a new stems file)."""
    import copy

    lead = copy.deepcopy(song.lead)
    for inst in lead.instruments:
        for n in inst.notes:
            n.pitch += k
    return songgen.Song(song.spec, song.rhythm, song.harmony, lead, song.ref)


def low_version(song) -> int:
    """The semitones the song's extra, lower lead is moved by, or 0 (none)."""
    if song.spec.index % LOW_EVERY != 1:
        return 0
    low = min(n.pitch for inst in song.lead.instruments for n in inst.notes)
    return LOW_SHIFT if low + LOW_SHIFT >= LOW_MIN_MIDI else 0


def mixes(stems: dict, spec, rng: np.random.Generator, lone: bool) -> list[np.ndarray]:
    """The song's training mixes (module docstring); ``lone``: also the lead alone."""
    harm, rhy, lead = stems["harmony"], stems["rhythm"], stems["lead"]
    ref = _rms(harm)
    out = []
    for lead_db in (spec.lead_db, float(rng.uniform(-2.0, 16.0))):
        rhythm_db = spec.rhythm_db if not out else float(rng.uniform(-8.0, 6.0))
        mix = (
            harm
            + rhy * (10 ** (rhythm_db / 20) * ref / _rms(rhy))
            + lead * (10 ** (lead_db / 20) * ref / _rms(lead))
        )
        out.append(mix)
    if lone:
        out.append(lead.copy())
    for m in out:
        m *= 10 ** (float(rng.uniform(-20.0, -1.0)) / 20) / max(float(np.max(np.abs(m))), 1e-9)
    return out


def frame_labels(song, n_frames: int, hop_s: float) -> np.ndarray:
    """Class of each frame: the lead's sounding MIDI note − LEAD_MIDI_MIN, or
    the "no lead" class (also for notes outside the model's range)."""
    times = np.arange(n_frames) * hop_s
    y = np.full(n_frames, pitch.LEAD_CLASSES - 1, np.int64)
    for inst in song.lead.instruments:
        for n in inst.notes:
            c = n.pitch - pitch.LEAD_MIDI_MIN
            if 0 <= c < pitch.LEAD_CLASSES - 1:
                y[(times >= n.start) & (times < n.end)] = c
    return y


def song_features(song, stems_path: Path, lone: bool, step: int = 2) -> tuple[np.ndarray, np.ndarray]:
    key = hashlib.sha256(f"{FEAT_VERSION}|{stems_path.name}|{step}".encode()).hexdigest()[:20]
    path = FEAT_CACHE / f"{key}.npz"
    if path.exists():
        with np.load(path) as z:
            return z["x"], z["y"]
    with np.load(stems_path) as z:
        stems = {k: z[k] for k in z.files}
    rng = np.random.default_rng(song.spec.note_seed)
    xs, ys = [], []
    for y in mixes(stems, song.spec, rng, lone):
        s = pitch.lead_salience(y.astype(np.float32), ANALYSIS_SR)
        x = pitch.lead_features(*s)
        lab = frame_labels(song, len(x), 256 / ANALYSIS_SR)
        xs.append(x[::step].astype(np.float16))
        ys.append(lab[::step])
    FEAT_CACHE.mkdir(parents=True, exist_ok=True)
    x, y = np.concatenate(xs), np.concatenate(ys)
    np.savez(path, x=x, y=y)
    return x, y


def shift(x: np.ndarray, y: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Roll every pitch block of the features by ``k`` semitones (floor
    value fills in), the label with it; labels pushed out of range become
    "no lead"."""
    if k == 0:
        return x, y
    n = pitch.LEAD_CLASSES - 1
    blocks = x.reshape(len(x), -1, n)
    out = np.full_like(blocks, pitch.LEAD_FLOOR)
    if k > 0:
        out[:, :, k:] = blocks[:, :, :-k]
    else:
        out[:, :, :k] = blocks[:, :, -k:]
    y2 = y.copy()
    voiced = y < n
    moved = y + k
    y2[voiced] = np.where((moved[voiced] >= 0) & (moved[voiced] < n), moved[voiced], n)
    return out.reshape(x.shape), y2


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--songs", type=int, default=240)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--dev", type=int, default=24, help="songs kept aside for choosing the epoch")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--hidden", default="256,128")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--render-only", action="store_true")
    ap.add_argument("--out", default=str(mlp.DATA / f"{pitch.LEAD_WEIGHTS}.npz"))
    args = ap.parse_args()

    fs = songgen.fluidsynth_version()
    specs = songgen.make_specs(args.songs, args.seed, "train")
    t0 = time.perf_counter()

    def one(spec):
        song = songgen.build_song(spec)
        versions = [(song, spec.index % 5 == 0)]
        k = low_version(song)
        if k:
            versions.append((transposed(song, k), spec.index % 5 == 1))
        out = []
        for v, lone in versions:
            path = render_stems(v, fs)
            if not args.render_only:
                out.append(song_features(v, path, lone))
        return out

    xs, ys, n_low = [], [], 0
    n_train = len(specs) - args.dev
    x_tr: list[np.ndarray] = []
    y_tr: list[np.ndarray] = []
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for i, r in enumerate(pool.map(one, specs)):
            n_low += len(r) > 1
            for x, y in r:
                (x_tr if i < n_train else xs).append(x)
                (y_tr if i < n_train else ys).append(y)
            if i % 20 == 0:
                print(f"songs {i + 1}/{len(specs)} ({time.perf_counter() - t0:.0f} s)", flush=True)
    if args.render_only:
        return 0
    x_tr, y_tr = np.concatenate(x_tr), np.concatenate(y_tr)
    x_dev, y_dev = np.concatenate(xs).astype(np.float32), np.concatenate(ys)
    del xs, ys
    print(
        f"train {len(y_tr)} frames from {n_train} songs, dev {len(y_dev)} from {args.dev} "
        f"({n_low} songs also with a lower lead)",
        flush=True,
    )

    rng = np.random.default_rng(0)
    sizes = [x_tr.shape[1], *(int(h) for h in args.hidden.split(",")), pitch.LEAD_CLASSES]
    net = Net(sizes, rng)
    unv = pitch.LEAD_CLASSES - 1

    def run_epoch(lr: float) -> list[float]:
        shifts = np.where(
            rng.random(len(y_tr)) < 0.6,
            rng.integers(-SHIFT, SHIFT + 1, len(y_tr)),
            rng.integers(WIDE_SHIFT[0], WIDE_SHIFT[1] + 1, len(y_tr)),
        )
        order = rng.permutation(len(y_tr))
        losses = []
        for s in range(0, len(order), 256):
            j = np.sort(order[s : s + 256])
            xb, yb = x_tr[j].astype(np.float32), y_tr[j]
            ks = shifts[j]
            xa, ya = np.empty_like(xb), np.empty_like(yb)
            for k in np.unique(ks):
                sel = ks == k
                xa[sel], ya[sel] = shift(xb[sel], yb[sel], int(k))
            losses.append(net.step(xa, ya, rng, lr, smooth=0.02, wd=1e-5, p_in=0.1, p_hid=0.2))
        return losses

    def evaluate() -> tuple[float, str]:
        pred = np.concatenate([net.predict(x_dev[s : s + 8192]) for s in range(0, len(x_dev), 8192)])
        acc = float(np.mean(pred == y_dev))
        voiced = y_dev != unv
        rpa = float(np.mean(pred[voiced] == y_dev[voiced]))
        fa = float(np.mean(pred[~voiced] != unv))
        return acc, f"dev acc {acc:.4f} pitch {rpa:.4f} false alarm {fa:.4f}"

    score, best = fit(net, args.epochs, run_epoch, evaluate)
    out = Path(args.out)
    save_weights(*best, out)
    print(f"best dev accuracy {score:.4f}; wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
