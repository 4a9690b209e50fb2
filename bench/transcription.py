"""Note-transcription accuracy and speed of ``workers/dsp/transcription.py``
(Basic Pitch, ONNX) on MIDI songs rendered with FluidSynth.

    .venv/bin/python bench/transcription.py              # 34 songs of 30 s, ~1 min (+1 min to render once)
    .venv/bin/python bench/transcription.py --quick      # one song per family and texture, 20 s each
    .venv/bin/python bench/transcription.py --basic-pitch --verbose

Needs the Debian packages fluidsynth and fluid-soundfont-gm, and pretty_midi
and mir_eval (dev dependencies).

The test set. For every instrument family, GM programs played solo, each
song 30 s (``--seconds``) of generated MIDI, deterministic from ``--seed``:
a random key (major or minor) and tempo (70–150 BPM), 0.5 s of silence
first and 1 s of render tail after.

* monophonic: one melodic line from the key's scale in the program's range
  (steps mostly, some leaps; eighths to half notes; rests; legato 85–100 %
  of the slot; velocity 60–110);
* polyphonic: the same kind of line on top and, below it, a triad (close
  position, diatonic, a new one every half bar) on the same instrument:
  block chords (piano, organ, mallets, strings, brass), strummed with 12 ms
  between strings (guitar). Bass and solo winds have no polyphonic songs.

Rendering: the FluidSynth CLI with the FluidR3 GM soundfont at 44.1 kHz,
its default reverb and chorus on, downmixed to mono, peak-normalised to
-1 dBFS, the last 0.3 s of the 1 s tail faded out, then resampled to 22.05 kHz (soxr HQ, as the worker's
``Audio.mono()``; not timed). Renders are cached as FLAC in
``bench/.cache/transcription/``, keyed by a hash of the MIDI bytes, the
render settings and the FluidSynth version.

Scores: ``mir_eval.transcription.precision_recall_f1_overlap`` against the
MIDI notes (MIDI note-off as the reference end), onsets within 50 ms and the
pitch within 50 cents; "onset" ignores offsets (``offset_ratio=None``),
"onset+offset" also wants the end within 20 % of the note's length or
50 ms, whichever is larger (mir_eval's defaults). Per row the mean over the
row's songs. The note ends of decaying instruments (piano, guitar, mallets)
are not where the MIDI note-off is, so their onset+offset scores are low by
construction. Time: wall-clock and CPU (all threads of the process)
seconds of ``NoteModel.transcribe`` per minute of audio, after one warm-up
call (model load, imports and numba compilation excluded); onnxruntime uses
all cores; on a shared machine take them as rough.

``--basic-pitch`` also runs basic-pitch's own file-based
``basic_pitch.inference.predict`` (same model, thresholds and 58 ms minimum
note length) on the rendered 22.05 kHz audio, for comparison.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import soundfile  # noqa: E402
import soxr  # noqa: E402

from bench.accuracy import SOUNDFONT, _fluidsynth_version, _midi_bytes, check_prerequisites  # noqa: E402
from shared import operations  # noqa: E402
from shared.settings import model_dir_from_env  # noqa: E402
from workers.dsp import transcription  # noqa: E402

SR = transcription.MODEL_SR
MODEL = Path(model_dir_from_env()) / operations.NOTE_MODEL
RENDER_SR = 44100
CACHE = ROOT / "bench" / ".cache" / "transcription"
RENDER_VERSION = "fluidsynth-cli/float/mono/-1dBFS/fade0.3/v2"  # bump when the rendering changes
LEAD_IN_S = 0.5
TAIL_S = 1.0
FADE_S = 0.3  # fade-out at the end of the tail

SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}


@dataclass(frozen=True)
class Program:
    number: int  # GM program (0-based)
    name: str
    low: int  # MIDI range the melody keeps to
    high: int
    textures: tuple[str, ...]


# Families and the GM programs that represent them.
FAMILIES: dict[str, tuple[Program, ...]] = {
    "piano": (
        Program(0, "acoustic grand", 48, 84, ("mono", "poly")),
        Program(4, "electric piano", 48, 84, ("mono", "poly")),
    ),
    "guitar": (
        Program(24, "nylon guitar", 52, 79, ("mono", "poly")),
        Program(25, "steel guitar", 52, 79, ("mono", "poly")),
    ),
    "strings": (
        Program(40, "violin", 60, 88, ("mono",)),
        Program(42, "cello", 40, 67, ("mono",)),
        Program(48, "string ensemble", 55, 84, ("poly",)),
        Program(49, "slow strings", 55, 84, ("poly",)),
    ),
    "winds/brass": (
        Program(73, "flute", 62, 91, ("mono",)),
        Program(71, "clarinet", 52, 84, ("mono",)),
        Program(56, "trumpet", 58, 82, ("mono",)),
        Program(65, "alto sax", 52, 79, ("mono",)),
        Program(61, "brass section", 55, 79, ("poly",)),
    ),
    "bass": (
        Program(33, "finger bass", 28, 52, ("mono",)),
        Program(32, "acoustic bass", 28, 52, ("mono",)),
    ),
    "mallets": (
        Program(11, "vibraphone", 55, 89, ("mono", "poly")),
        Program(12, "marimba", 48, 84, ("mono", "poly")),
    ),
    "organ": (
        Program(16, "drawbar organ", 48, 84, ("mono", "poly")),
        Program(19, "church organ", 48, 84, ("mono", "poly")),
    ),
    "synth lead": (
        Program(80, "square lead", 52, 84, ("mono",)),
        Program(81, "saw lead", 52, 84, ("mono",)),
    ),
}


@dataclass
class Song:
    name: str
    family: str
    texture: str
    program: Program
    midi: object  # pretty_midi.PrettyMIDI
    duration: float
    ref_intervals: np.ndarray
    ref_pitches: np.ndarray  # MIDI numbers
    audio: np.ndarray | None = None


# --------------------------------------------------------------------------- songs


def _melody(rng: np.random.Generator, scale: list[int], beat: float, t0: float, t1: float):
    """(start, end, midi, velocity) of one line from ``scale`` (sorted MIDI
    numbers within the program's range) between t0 and t1 seconds."""
    notes = []
    idx = int(rng.integers(len(scale) // 3, 2 * len(scale) // 3 + 1))
    t = t0
    while t < t1:
        slot = beat * float(rng.choice([0.5, 0.5, 1.0, 1.0, 1.5, 2.0]))
        if rng.random() < 0.12:  # a rest
            t += slot
            continue
        step = int(rng.choice([-2, -1, -1, 1, 1, 2, -4, 3, 4, 0]))
        idx = int(np.clip(idx + step, 0, len(scale) - 1))
        end = min(t + slot * float(rng.uniform(0.85, 1.0)), t1)
        if end - t > 0.06:
            notes.append((t, end, scale[idx], int(rng.integers(60, 111))))
        t += slot
    return notes


def make_song(family: str, prog: Program, texture: str, seconds: float, seed: int) -> Song:
    import pretty_midi

    rng = np.random.default_rng(seed)
    tonic = int(rng.integers(12))
    mode = str(rng.choice(["major", "minor"]))
    bpm = float(rng.uniform(70, 150))
    beat = 60.0 / bpm
    pcs = {(tonic + d) % 12 for d in SCALES[mode]}
    t0, t1 = LEAD_IN_S, LEAD_IN_S + seconds
    notes: list[tuple[float, float, int, int]] = []
    if texture == "mono":
        scale = [m for m in range(prog.low, prog.high + 1) if m % 12 in pcs]
        notes += _melody(rng, scale, beat, t0, t1)
    else:
        # The line in the upper part of the range, triads below it.
        split = prog.low + (prog.high - prog.low) * 5 // 12
        scale = [m for m in range(split + 1, prog.high + 1) if m % 12 in pcs]
        notes += _melody(rng, scale, beat, t0, t1)
        below = [m for m in range(prog.low, split + 1) if m % 12 in pcs]
        half_bar = 2 * beat
        t = t0
        while t < t1 - 0.1:
            root = int(rng.integers(len(below) - 4))
            chord = [below[root], below[root + 2], below[root + 4]] if root + 4 < len(below) else below[-3:]
            end = min(t + half_bar * 0.95, t1)
            vel = int(rng.integers(50, 90))
            strum = 0.012 if family == "guitar" else 0.0
            for i, m in enumerate(chord):
                notes.append((t + i * strum, end, m, vel))
            t += half_bar
    pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    inst = pretty_midi.Instrument(program=prog.number, name=prog.name)
    for s, e, m, v in notes:
        inst.notes.append(pretty_midi.Note(v, m, s, e))
    pm.instruments.append(inst)
    # What the reference says is what the MIDI file says (tick-rounded).
    pm = pretty_midi.PrettyMIDI(io.BytesIO(_midi_bytes(pm)))
    ref = sorted((n.start, n.end, n.pitch) for n in pm.instruments[0].notes)
    name = f"{family.replace('/', '-').replace(' ', '-')}-{prog.number:03d}-{texture}-{seed}"
    return Song(
        name,
        family,
        texture,
        prog,
        pm,
        t1 + TAIL_S,
        np.array([[s, e] for s, e, _ in ref]).reshape(-1, 2),
        np.array([p for *_, p in ref], dtype=float),
    )


def make_songs(seconds: float, seed: int, per_program: int, quick: bool) -> list[Song]:
    songs = []
    k = 0
    for family, progs in FAMILIES.items():
        seen: set[str] = set()
        for prog in progs:
            for texture in prog.textures:
                if quick and texture in seen:
                    continue
                seen.add(texture)
                for _ in range(per_program):
                    songs.append(make_song(family, prog, texture, seconds, seed * 1000 + k))
                    k += 1
    return songs


def render(song: Song, fs_version: str) -> np.ndarray:
    """The song at 22.05 kHz mono, rendered once and cached as FLAC (44.1 kHz)."""
    data = _midi_bytes(song.midi)
    h = hashlib.sha256(data)
    h.update(f"{RENDER_VERSION}|{fs_version}|{SOUNDFONT}|{SOUNDFONT.stat().st_size}|{RENDER_SR}".encode())
    path = CACHE / f"{song.name}-{h.hexdigest()[:16]}.flac"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            mid, wav = Path(tmp) / "song.mid", Path(tmp) / "song.wav"
            mid.write_bytes(data)
            cmd = [
                "fluidsynth",
                "-ni",
                "-q",
                "-r",
                str(RENDER_SR),
                "-O",
                "float",
                "-T",
                "wav",
                "-F",
                str(wav),
            ]
            subprocess.run([*cmd, str(SOUNDFONT), str(mid)], check=True, capture_output=True)
            x, sr = soundfile.read(wav, dtype="float32", always_2d=True)
            assert sr == RENDER_SR
            n = int(round(song.duration * RENDER_SR))
            y = np.pad(x.mean(axis=1), (0, max(0, n - len(x))))[:n]
            # End as a recording would, not with a cut through the reverb
            # tail (the model hears a cut as a re-attack).
            fade = int(FADE_S * RENDER_SR)
            y[n - fade :] *= np.linspace(1.0, 0.0, fade) ** 2
            y *= 10 ** (-1 / 20) / max(float(np.max(np.abs(y))), 1e-9)
            tmp_flac = Path(tmp) / "song.flac"
            soundfile.write(tmp_flac, y, RENDER_SR, subtype="PCM_24")
            os.replace(tmp_flac, path)
    y, sr = soundfile.read(path, dtype="float32")
    return soxr.resample(y, sr, SR, quality="HQ").astype(np.float32)


# --------------------------------------------------------------------------- scoring


def _hz(midi: np.ndarray) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(midi, float) - 69.0) / 12.0)


def score(song: Song, est: list[tuple[float, float, int]]) -> dict[str, float]:
    import mir_eval

    ei = np.array([[s, e] for s, e, _ in est]).reshape(-1, 2)
    ep = _hz([p for *_, p in est])
    ri, rp = song.ref_intervals, _hz(song.ref_pitches)
    on = mir_eval.transcription.precision_recall_f1_overlap(
        ri, rp, ei, ep, onset_tolerance=0.05, offset_ratio=None
    )
    onoff = mir_eval.transcription.precision_recall_f1_overlap(ri, rp, ei, ep, onset_tolerance=0.05)
    return {"onset_p": on[0], "onset_r": on[1], "onset_f": on[2], "onoff_f": onoff[2]}


def run_ours(model: transcription.NoteModel, y: np.ndarray) -> tuple[list[tuple[float, float, int]], float]:
    t, c = time.perf_counter(), time.process_time()
    tr = model.transcribe(y, SR)
    dt, dc = time.perf_counter() - t, time.process_time() - c
    return [(n.start, n.end, n.midi) for n in tr.notes], dt, dc


def run_basic_pitch(bp_model, y: np.ndarray) -> tuple[list[tuple[float, float, int]], float]:
    from basic_pitch.inference import predict

    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        soundfile.write(f.name, y, SR, subtype="FLOAT")
        t = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            _, _, events = predict(f.name, bp_model, minimum_note_length=58.0)
        dt = time.perf_counter() - t
    return [(float(s), float(e), int(p)) for s, e, p, *_ in events], dt


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=7, help="test-set seed (default 7)")
    ap.add_argument("--seconds", type=float, default=30.0, help="music per song, s (default 30)")
    ap.add_argument("--per-program", type=int, default=1, help="songs per program and texture (default 1)")
    ap.add_argument("--quick", action="store_true", help="one program per family and texture, 20 s songs")
    ap.add_argument("--basic-pitch", action="store_true", help="also run basic-pitch's own predict()")
    ap.add_argument("--verbose", action="store_true", help="one row per song too")
    args = ap.parse_args()
    problem = check_prerequisites()
    if problem:
        print(problem, file=sys.stderr)
        return 2
    seconds = 20.0 if args.quick else args.seconds
    songs = make_songs(seconds, args.seed, args.per_program, args.quick)
    fs_version = _fluidsynth_version()
    t = time.perf_counter()
    for s in songs:
        s.audio = render(s, fs_version)
    print(
        f"{len(songs)} songs rendered or read from the cache in {time.perf_counter() - t:.1f} s",
        file=sys.stderr,
    )

    model = transcription.NoteModel.load(MODEL)
    model.transcribe(songs[0].audio[: 5 * SR], SR)  # warm-up: imports, onnxruntime's first run
    bp_model = None
    if args.basic_pitch:
        from basic_pitch.inference import Model

        bp_model = Model(str(MODEL))
        run_basic_pitch(bp_model, songs[0].audio[: 5 * SR])

    rows = []
    for s in songs:
        est, dt, dc = run_ours(model, s.audio)
        row = {"song": s, "seconds": dt, "cpu": dc, **score(s, est), "n_est": len(est)}
        if bp_model is not None:
            est_bp, dt_bp = run_basic_pitch(bp_model, s.audio)
            sc = score(s, est_bp)
            row |= {"bp_onset_f": sc["onset_f"], "bp_onoff_f": sc["onoff_f"], "bp_seconds": dt_bp}
        rows.append(row)
        if args.verbose:
            print(
                f"{s.name:40s} ref {len(s.ref_pitches):3d} est {len(est):3d} "
                f"onset P {row['onset_p']:.3f} R {row['onset_r']:.3f} F {row['onset_f']:.3f} "
                f"on+off F {row['onoff_f']:.3f} {dt:.2f} s"
                + (f" | basic-pitch F {row['bp_onset_f']:.3f} / {row['bp_onoff_f']:.3f}" if bp_model else ""),
                file=sys.stderr,
            )
    print_table(rows, bp_model is not None, args, seconds)
    return 0


def print_table(rows: list[dict], with_bp: bool, args, seconds: float) -> None:
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["song"].family, r["song"].texture), []).append(r)
    for texture in ("mono", "poly"):
        sel = [r for r in rows if r["song"].texture == texture]
        if sel:
            groups[("all", texture)] = sel
    groups[("all", "all")] = rows

    head = (
        "| family | texture | songs | programs | onset P | onset R | onset F | onset+offset F"
        " | s / min | CPU s / min |"
    )
    rule = "|---|---|---|---|---|---|---|---|---|---|"
    if with_bp:
        head += " basic-pitch predict() onset F | on+off F | s / min |"
        rule += "---|---|---|"
    cmd = "bench/transcription.py " + " ".join(sys.argv[1:])
    print(f"Note transcription ({transcription.NoteModel.name}), `{cmd.strip()}`: {len(rows)} songs of")
    print(
        f"{seconds:g} s, FluidSynth + FluidR3 GM; mir_eval, onsets ±50 ms; mean over songs;"
        " time per minute of audio."
    )
    print()
    print(head)
    print(rule)
    for (family, texture), rs in groups.items():
        minutes = sum(r["song"].duration for r in rs) / 60
        progs = ", ".join(sorted({r["song"].program.name for r in rs})) if family != "all" else "—"

        def m(k: str, rs: list[dict] = rs) -> float:
            return float(np.mean([r[k] for r in rs]))

        label = f"**{family}**" if family == "all" else family
        line = (
            f"| {label} | {texture} | {len(rs)} | {progs} | {m('onset_p'):.3f} | {m('onset_r'):.3f} | "
            f"{m('onset_f'):.3f} | {m('onoff_f'):.3f} | {sum(r['seconds'] for r in rs) / minutes:.2f} |"
            f" {sum(r['cpu'] for r in rs) / minutes:.2f} |"
        )
        if with_bp:
            line += (
                f" {m('bp_onset_f'):.3f} | {m('bp_onoff_f'):.3f} |"
                f" {sum(r['bp_seconds'] for r in rs) / minutes:.2f} |"
            )
        print(line)


if __name__ == "__main__":
    sys.exit(main())
