"""Accuracy and speed of ``workers.dsp.structure.find_sections`` on generated
songs with a known form.

    .venv/bin/python bench/structure.py              # 16 songs (~1 min to render once)
    .venv/bin/python bench/structure.py --songs 8 --verbose

Needs the Debian packages fluidsynth and fluid-soundfont-gm, pretty_midi and
mir_eval (as bench/accuracy.py, whose prerequisite check this reuses).

The songs. Each is General MIDI built with pretty_midi from a spec drawn
deterministically from ``--seed``: a form from :data:`FORMS` (intro, verse,
pre-chorus, chorus, bridge, outro; no section follows itself), 76-150 BPM,
4/4 (a quarter of the songs in 3/4), any key. Every section *type* gets its
own arrangement, fixed for the song: a chord loop (the bridge in the
relative key), comping instrument and style, drum pattern (or none: the
intro and some bridges), bass style, lead instrument (or none) and a
velocity level (choruses loudest). Each occurrence of a section gets a new
lead melody over the same chords, so repeats are varied, never copies;
drums play a fill in the last bar of a section and a crash on its first
downbeat. Sections: intro and outro 4 bars, pre-chorus 4, verse 8 or 16,
chorus and bridge 8. Rendered with the FluidSynth CLI and FluidR3 GM
(44.1 kHz), downmixed to mono, peak-normalised, 0.2-1 s of silence before
the first bar and 1 s after the last, cached as FLAC in
``bench/.cache/structure/`` keyed by a hash of the MIDI and render settings.

The reference: a boundary at every change of section (plus 0 and the end),
labels by section type (all verses one label). Ours runs as the
``segment-transcribe`` job will: ``beats.track_beats`` on the 22.05 kHz mono
copy, then ``find_sections`` on its beats and downbeats (timed together, as
seconds of wall clock per minute of audio, after one warm-up call; the
machine is shared, so timings are noisy). A second row gives
``find_sections`` the true downbeats, separating structure errors from
beat-tracking errors.

Scores with mir_eval, mean over songs: boundary hit rate F-measure within
±0.5 s and ±3 s (``segment.detection``, trim=True: the trivial boundaries at
0 and the end are not counted), pairwise label F-measure
(``segment.pairwise``) with our primes folded (a varied repeat ``A'`` counts
as ``A``; the reference has no primes), and the number of sections found
over the true number.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import soundfile  # noqa: E402
import soxr  # noqa: E402

from bench.accuracy import PITCH_CLASSES, SOUNDFONT, check_prerequisites, md_table  # noqa: E402
from workers.dsp.beats import track_beats  # noqa: E402
from workers.dsp.features import ANALYSIS_SR  # noqa: E402
from workers.dsp.structure import find_sections  # noqa: E402

SR = ANALYSIS_SR
RENDER_SR = 44100
CACHE = ROOT / "bench" / ".cache" / "structure"
RENDER_VERSION = "fluidsynth-cli/float/mono/v1"  # bump when the mixing changes
TAIL_S = 1.0

FORMS = (
    "IVCVCBCO",
    "VCVCBC",
    "IVPCVPCBCO",
    "VCVCO",
    "IVPCVPCO",
    "VPCVPCBC",
    "IVCBVCO",
    "VCBCVC",
)
SECTION_BARS = {"I": 4, "O": 4, "P": 4, "V": 8, "C": 8, "B": 8}
SCALE = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
TRIADS = {"maj": (0, 4, 7), "min": (0, 3, 7)}
LOOPS = {
    "major": (
        ((0, "maj"), (5, "maj"), (7, "maj"), (0, "maj")),
        ((0, "maj"), (7, "maj"), (9, "min"), (5, "maj")),
        ((9, "min"), (5, "maj"), (0, "maj"), (7, "maj")),
        ((2, "min"), (7, "maj"), (0, "maj"), (0, "maj")),
        ((0, "maj"), (9, "min"), (2, "min"), (7, "maj")),
        ((5, "maj"), (7, "maj"), (4, "min"), (9, "min")),
    ),
    "minor": (
        ((0, "min"), (5, "min"), (7, "maj"), (0, "min")),
        ((0, "min"), (8, "maj"), (3, "maj"), (10, "maj")),
        ((0, "min"), (10, "maj"), (8, "maj"), (10, "maj")),
        ((0, "min"), (5, "min"), (10, "maj"), (3, "maj")),
        ((8, "maj"), (10, "maj"), (0, "min"), (0, "min")),
        ((5, "min"), (8, "maj"), (7, "maj"), (7, "maj")),
    ),
}
COMP = {0: ("quarters", "halves"), 4: ("offbeat", "quarters"), 25: ("halves", "eighths"), 48: ("sustain",)}
COMP |= {16: ("sustain",), 89: ("sustain",), 5: ("eighths", "offbeat")}
LEADS = (
    73,
    40,
    56,
    65,
    71,
    68,
    81,
    11,
)  # flute, violin, trumpet, alto sax, clarinet, oboe, lead synth, vibes
KICK, SNARE, HAT, OPEN_HAT, CRASH, RIDE = 36, 38, 42, 46, 49, 51
DRUMS = {
    4: {
        "rock": [(0, KICK), (2, KICK), (1, SNARE), (3, SNARE)] + [(h / 2, HAT) for h in range(8)],
        "disco": [(q, KICK) for q in range(4)]
        + [(1, SNARE), (3, SNARE)]
        + [(q + 0.5, OPEN_HAT) for q in range(4)],
        "halftime": [(0, KICK), (2.5, KICK), (2, SNARE)] + [(q, RIDE) for q in range(4)],
        "pop": [(0, KICK), (1.5, KICK), (2, KICK), (1, SNARE), (3, SNARE)]
        + [(h / 4, HAT) for h in range(16)],
    },
    3: {
        "waltz": [(0, KICK), (1, SNARE), (2, SNARE)] + [(h / 2, HAT) for h in range(6)],
        "ballad": [(0, KICK), (2, SNARE)] + [(q, RIDE) for q in range(3)],
        "shuffle": [(0, KICK), (1.5, KICK), (1, SNARE), (2, SNARE)] + [(h / 2, OPEN_HAT) for h in range(6)],
    },
}
BASS = ("roots", "eighths", "octaves", "walk")


@dataclass(frozen=True)
class Part:
    """The arrangement of one section type."""

    loop: tuple[tuple[int, str], ...]
    tonic: int  # pitch class the loop is relative to
    mode: str
    comp_program: int
    comp_style: str
    drums: str | None
    bass: str | None
    lead: int | None
    level: float  # velocity multiplier


@dataclass
class Song:
    index: int
    bpm: float
    meter: int
    key: str
    form: str
    lead_in: float
    midi: object  # pretty_midi.PrettyMIDI
    ref_intervals: np.ndarray
    ref_labels: list[str]
    downbeats: np.ndarray

    @property
    def duration(self) -> float:
        return float(self.ref_intervals[-1, 1])


def _arrangements(rng: np.random.Generator, tonic: int, mode: str, meter: int) -> dict[str, Part]:
    loops = rng.permutation(len(LOOPS[mode]))
    programs = rng.permutation(list(COMP))
    leads = rng.permutation(LEADS)
    styles = list(DRUMS[meter])
    drum_order = rng.permutation(len(styles))
    relative = (tonic + 9) % 12 if mode == "major" else (tonic + 3) % 12
    other = "minor" if mode == "major" else "major"
    parts = {}
    for i, kind in enumerate("VCBPIO"):
        prog = int(programs[i % len(programs)])
        if kind == "B":
            loop, t, m = LOOPS[other][int(rng.integers(len(LOOPS[other])))], relative, other
        elif kind == "I":  # the intro plays the verse's chords
            loop, t, m = parts["V"].loop, tonic, mode
        elif kind == "O":  # the outro the chorus's
            loop, t, m = parts["C"].loop, tonic, mode
        else:
            loop, t, m = LOOPS[mode][int(loops[i])], tonic, mode
        drums = styles[int(drum_order[i % len(styles)])]
        if kind == "I" or (kind == "B" and rng.random() < 0.4):
            drums = None
        parts[kind] = Part(
            loop=loop,
            tonic=t,
            mode=m,
            comp_program=prog,
            comp_style=str(rng.choice(COMP[prog])),
            drums=drums,
            bass=None if kind == "I" else str(rng.choice(BASS)),
            lead=None if kind in "IO" or (kind == "B" and rng.random() < 0.5) else int(leads[i]),
            level={"C": 1.1, "V": 0.85, "P": 0.9, "B": 0.8, "I": 0.7, "O": 0.8}[kind],
        )
    return parts


def build_song(index: int, rng: np.random.Generator) -> Song:
    import pretty_midi as pm

    meter = 3 if index % 4 == 3 else 4
    bpm = float(round(rng.uniform(76, 150), 1))
    tonic, mode = int(rng.integers(12)), str(rng.choice(["major", "minor"]))
    form = FORMS[index % len(FORMS)]
    lead_in = round(float(rng.uniform(0.2, 1.0)), 3)
    beat = 60.0 / bpm
    parts = _arrangements(rng, tonic, mode, meter)
    mid = pm.PrettyMIDI(resolution=960, initial_tempo=bpm)
    mid.time_signature_changes.append(pm.TimeSignature(meter, 4, 0.0))
    drums = pm.Instrument(program=0, is_drum=True, name="drums")
    bass = pm.Instrument(program=33, name="bass")
    comps: dict[int, object] = {}
    leads: dict[int, object] = {}

    def t(beats: float) -> float:
        return lead_in + beats * beat

    def add(inst, pitch: int, start: float, length: float, vel: float) -> None:
        v = int(np.clip(round(vel + rng.normal(0, 5)), 20, 127))
        inst.notes.append(pm.Note(velocity=v, pitch=int(pitch), start=t(start), end=t(start + length)))

    bar = 0
    bounds, labels, letters = [0.0], [], {}
    for k, kind in enumerate(form):
        p = parts[kind]
        n_bars = SECTION_BARS[kind] if kind != "V" else (16 if form.count("V") == 2 and index % 3 == 0 else 8)
        comp = comps.setdefault(p.comp_program, pm.Instrument(program=p.comp_program))
        lead = leads.setdefault(p.lead, pm.Instrument(program=p.lead)) if p.lead is not None else None
        scale = [(p.tonic + d) % 12 for d in SCALE[p.mode]]
        prev = 67
        for b in range(n_bars):
            x = (bar + b) * meter
            off, q = p.loop[b % len(p.loop)]
            root = (p.tonic + off) % 12
            pcs = [(root + iv) % 12 for iv in TRIADS[q]]
            voicing = sorted(55 + (pc - 55) % 12 for pc in pcs)
            hits = {
                "sustain": [(0, meter)],
                "quarters": [(i, 0.9) for i in range(meter)],
                "halves": [(0, 2), (2, meter - 2)],
                "offbeat": [(i + 0.5, 0.4) for i in range(meter)],
                "eighths": [(i / 2, 0.45) for i in range(2 * meter)],
            }[p.comp_style]
            for pos, length in hits:
                for v in voicing:
                    add(comp, v, x + pos, length, 70 * p.level)
            if p.bass:
                r = 36 + root
                bhits = {
                    "roots": [(0, r, 2), (2, r, meter - 2)],
                    "eighths": [(i / 2, r, 0.45) for i in range(2 * meter)],
                    "octaves": [(i, r + 12 * (i % 2), 0.9) for i in range(meter)],
                    "walk": [(i, r + (0, 4, 7, 9)[i], 0.9) for i in range(meter)],
                }[p.bass]
                for pos, pitch, length in bhits:
                    add(bass, pitch, x + pos, length, 90 * p.level)
            if p.drums:
                last = b == n_bars - 1 and k < len(form) - 1
                for pos, drum in DRUMS[meter][p.drums]:
                    if not (last and pos >= meter - 1 and drum != KICK):
                        add(drums, drum, x + pos, 0.2, (100 if drum in (KICK, SNARE) else 70) * p.level)
                if last:
                    for i in range(4):
                        add(drums, SNARE, x + meter - 1 + i / 4, 0.2, 70 + 8 * i)
                if b == 0:
                    add(drums, CRASH, x, 1.0, 100 * p.level)
            if lead is not None:
                # A new melody for every occurrence: chord tones on the beat, scale steps between.
                pos = 0.0
                while pos < meter - (0.5 if b % 4 != 3 else 1.5):
                    length = float(rng.choice([0.5, 1.0, 1.0, 1.5, 2.0]))
                    length = min(length, meter - pos)
                    if pos % 1 == 0:
                        cands = [m for m in range(60, 80) if m % 12 in pcs]
                    else:
                        cands = [m for m in range(60, 80) if m % 12 in scale]
                    cands.sort(key=lambda m: abs(m - prev))
                    prev = cands[int(rng.integers(min(3, len(cands))))]
                    if rng.random() > 0.1:
                        add(lead, prev, x + pos, 0.9 * length, 95 * p.level)
                    pos += length
        bar += n_bars
        bounds.append(t(bar * meter))
        labels.append(letters.setdefault(kind, chr(ord("A") + len(letters))))
    bounds[0] = 0.0
    duration = t(bar * meter) + TAIL_S
    bounds[-1] = duration
    for inst in comps.values():
        inst.control_changes.append(pm.ControlChange(number=7, value=100, time=duration))
    mid.instruments += [drums, bass, *comps.values(), *leads.values()]
    intervals = np.stack([bounds[:-1], bounds[1:]], axis=1)
    return Song(
        index=index,
        bpm=bpm,
        meter=meter,
        key=f"{PITCH_CLASSES[tonic]} {mode}",
        form=form,
        lead_in=lead_in,
        midi=mid,
        ref_intervals=intervals,
        ref_labels=labels,
        downbeats=lead_in + meter * beat * np.arange(bar + 1),
    )


def render(song: Song) -> Path:
    """The song's mono 44.1 kHz render, from the cache when it is there."""
    buf = io.BytesIO()
    song.midi.write(buf)
    data = buf.getvalue()
    key = f"{RENDER_VERSION}|{SOUNDFONT}|{SOUNDFONT.stat().st_size}|{RENDER_SR}|{song.duration}".encode()
    digest = hashlib.sha256(hashlib.sha256(data).digest() + key).hexdigest()[:16]
    path = CACHE / f"song{song.index:03d}-{digest}.flac"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = CACHE / f".tmp-{os.getpid()}-{song.index}"
    tmp.mkdir(exist_ok=True)
    try:
        (tmp / "song.mid").write_bytes(data)
        cmd = ["fluidsynth", "-ni", "-q", "-r", str(RENDER_SR), "-O", "float", "-T", "wav"]
        subprocess.run([*cmd, "-F", str(tmp / "song.wav"), str(SOUNDFONT), str(tmp / "song.mid")], check=True)
        x, _ = soundfile.read(tmp / "song.wav", dtype="float32", always_2d=True)
        n = int(round(song.duration * RENDER_SR))
        y = np.pad(x.mean(axis=1), (0, max(0, n - len(x))))[:n]
        y *= 10 ** (-1 / 20) / max(float(np.max(np.abs(y))), 1e-9)
        soundfile.write(path.with_suffix(".tmp.flac"), y, RENDER_SR, subtype="PCM_24")
        os.replace(path.with_suffix(".tmp.flac"), path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _intervals(structure) -> tuple[np.ndarray, list[str]]:
    secs = structure.sections
    return np.array([[s.start, s.end] for s in secs]), [s.label.rstrip("'") for s in secs]


def score(song: Song, structure) -> dict[str, float]:
    import mir_eval

    est, labels = _intervals(structure)
    est[-1, 1] = song.duration  # ms rounding of the end
    ref = song.ref_intervals
    out = {}
    for w in (0.5, 3.0):
        out[f"F@{w:g}s"] = mir_eval.segment.detection(ref, est, window=w, trim=True)[2]
    out["pairwise F"] = mir_eval.segment.pairwise(ref, song.ref_labels, est, labels)[2]
    out["sections/true"] = len(est) / len(ref)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--songs", type=int, default=16, help="number of songs (default 16)")
    ap.add_argument("--seed", type=int, default=5, help="test-set seed (default 5)")
    ap.add_argument("--verbose", action="store_true", help="also print one row per song")
    args = ap.parse_args()
    problem = check_prerequisites()
    if problem:
        print(problem, file=sys.stderr)
        return 2
    rng = np.random.default_rng(args.seed)
    songs = [build_song(i, rng) for i in range(args.songs)]
    audio = []
    for s in songs:
        x, sr = soundfile.read(render(s), dtype="float32")
        audio.append(soxr.resample(x, sr, SR, quality="HQ").astype(np.float32))

    def ours(y: np.ndarray):
        grid = track_beats(y, SR)
        return find_sections(y, SR, grid.beats, grid.downbeats)

    ours(audio[0][: 30 * SR])  # warm-up: numba kernels, filterbanks
    rows: dict[str, list[dict]] = {"tracked beats": [], "true downbeats": []}
    seconds = 0.0
    per_song = []
    for s, y in zip(songs, audio, strict=True):
        t0 = time.perf_counter()
        est = ours(y)
        seconds += time.perf_counter() - t0
        truth = find_sections(y, SR, [], [float(d) for d in s.downbeats])
        rows["tracked beats"].append(score(s, est))
        rows["true downbeats"].append(score(s, truth))
        per_song.append((s, est))
    minutes = sum(s.duration for s in songs) / 60
    metrics = list(rows["tracked beats"][0])
    table = [[name, *(f"{np.mean([r[m] for r in rs]):.3f}" for m in metrics)] for name, rs in rows.items()]
    table[0].append(f"{seconds / minutes:.3f}")
    table[1].append("")
    print(f"{len(songs)} songs, {minutes:.1f} min of audio, seed {args.seed}\n")
    print("\n".join(md_table(["find_sections on", *metrics, "s per min (beats + sections)"], table)))
    if args.verbose:
        print()
        lines = []
        for (s, est), r in zip(per_song, rows["tracked beats"], strict=True):
            form = "".join(s.ref_labels)
            got = "".join(x.label for x in est.sections)
            lines.append(
                [s.index, f"{s.bpm:g} {s.meter}/4", s.form, form, got, *(f"{r[m]:.2f}" for m in metrics)]
            )
        print(
            "\n".join(
                md_table(["song", "tempo", "form", "truth", "ours", *metrics], lines, "lllll" + "r" * 4)
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
