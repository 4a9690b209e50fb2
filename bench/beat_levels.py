"""Metrical-level sweep of the tempo and beat tracker: beat F-measure, tempo
within 4 % and the count of songs read at half or double tempo, for several
values of ``tempo.FASTER_LEVEL_EXPONENT``, with the beat activation
computed once per song.

    nice -n 10 .venv/bin/python bench/beat_levels.py                      # the beats-4 choice (352 songs)
    nice -n 10 .venv/bin/python bench/beat_levels.py --exponents 0.3,0.4 --weights /tmp/beats.npz

Sets (``--sets``): ``tune:SEED`` is ``bench/accuracy.py``'s tune generator,
``train:SEED`` (or ``train:FIRST-LAST``) ``bench/songgen.py``'s train style,
32 songs a seed (``--songs``). Use only seeds no training script uses (77,
1000-1002, 1400-1405: see ``bench/train_beats.py``); never the held-out style.
Scores as ``bench/accuracy.py`` (mir_eval, ±70 ms, the first 5 s ignored);
the beats are the tracker's (``beats._track`` on ``beats.beat_signal``) at
the chosen tempo, without the downbeat step, so a run takes a minute or two
once the songs are rendered (renders and onset bands are cached).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench import accuracy, songgen  # noqa: E402
from bench.train_beats import song_bands  # noqa: E402
from workers.dsp import beatnet, beats, tempo  # noqa: E402

DEFAULT_SETS = "tune:2024,train:77,train:1000-1002,train:1400-1405"


def expand(sets: str) -> list[tuple[str, int]]:
    out = []
    for item in sets.split(","):
        style, seeds = item.split(":")
        first, _, last = seeds.partition("-")
        out += [(style, s) for s in range(int(first), int(last or first) + 1)]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default=DEFAULT_SETS, help=f"default {DEFAULT_SETS}")
    ap.add_argument("--songs", type=int, default=32, help="songs per seed")
    ap.add_argument("--exponents", default="0.3,0.35,0.4,0.45,0.5")
    ap.add_argument("--weights", help="another beat network's .npz (the same beatnet.LAYOUT)")
    ap.add_argument(
        "--verbose", action="store_true", help="list the songs read at another level or off the beat"
    )
    args = ap.parse_args()
    import mir_eval

    if args.weights:
        beatnet.WEIGHTS = str(Path(args.weights).resolve().with_suffix(""))
    exponents = [float(e) for e in args.exponents.split(",")]
    fs = songgen.fluidsynth_version()
    trim = mir_eval.beat.trim_beats
    names, rows = [], []  # rows: (set, exponent, F, within 4 %, ratio)
    for style, seed in expand(args.sets):
        name = f"{style}:{seed}"
        names.append(name)
        if style == "tune":
            songs = [accuracy.build_song(s) for s in accuracy.make_specs(args.songs, seed)]
        else:
            songs = [songgen.build_song(s) for s in songgen.make_specs(args.songs, seed, style)]
        for i, song in enumerate(songs):
            song.audio_path = (
                accuracy.render_song(song, fs) if style == "tune" else songgen.render_song(song, fs)
            )
            bands, fps = song_bands(song)
            act = beatnet.activation(bands)
            signal = beats.beat_signal(bands, act)
            for e in exponents:
                tempo.FASTER_LEVEL_EXPONENT = e
                bpm = tempo.tempo_from_bands(bands, fps, act).tempo
                frames = beats._track(signal, 60.0 * fps / bpm) if bpm > 0 else np.zeros(0, np.int64)
                f = mir_eval.beat.f_measure(trim(np.asarray(song.ref.beats)), trim(frames / fps))
                ratio = bpm / song.ref.tempo
                rows.append((name, e, f, abs(ratio - 1) <= 0.04, ratio))
                if args.verbose and (f < 0.9 or abs(ratio - 1) > 0.04):
                    print(f"  exp {e:g} {name} #{i}: {bpm:.2f} for {song.ref.tempo:g} BPM, F {f:.2f}")
        print(f"{name} done", file=sys.stderr, flush=True)
    print(f"| exponent | beat F | tempo 4 % | half | double | {' | '.join(names)} |")
    print("|---" * (5 + len(names)) + "|")
    for e in exponents:
        mine = [r for r in rows if r[1] == e]
        half = sum(0.45 < r[4] < 0.55 for r in mine)
        double = sum(1.9 < r[4] < 2.1 for r in mine)
        per = " | ".join(f"{np.mean([r[2] for r in mine if r[0] == n]):.3f}" for n in names)
        f_all = np.mean([r[2] for r in mine])
        t_all = np.mean([r[3] for r in mine])
        print(f"| {e:g} | {f_all:.4f} | {t_all:.3f} | {half} | {double} | {per} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
