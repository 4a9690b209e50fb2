"""A second song generator, built to differ *structurally* from the one in
``bench/accuracy.py`` (the "tune" split, on which the analysis code was
tuned): other soundfonts, other instruments, other voicings and bass lines,
a louder lead with more notes outside the chord, random chord loops and
chord rhythms. Three styles:

* ``heldout`` — the generalisation split of ``bench/accuracy.py``. Rendered
  with MuseScore General (Debian ``musescore-general-soundfont``), never
  with the soundfonts the tune split or the chord model's training set use.
  Its numbers are reported, never used to choose a parameter.
* ``train`` — the chord model's training set (``bench/train_chords.py``):
  FluidR3 GM and TimGM6mb soundfonts, every melodic GM program in its role,
  wider ranges of everything. Different seeds and soundfonts from the
  held-out split.
* ``train-sf`` — the train style on two more soundfonts (csound's GM bank,
  OPL-3 FM synthesis): more timbres for training (tried for the chord
  network, not shipped: ``bench/docs/tonal.md``, "chords-2").

What a song is (both styles; the ranges differ, see ``STYLES``):

* tempo 60-180 BPM (stratified), all 24 keys, 3/4 (a fifth) or 4/4, a
  quarter swung (ratio 0.58-0.67);
* a chord loop drawn at random from the key's diatonic triads (natural minor
  plus the major V in minor), the tonic first and last, a dominant before
  the final tonic most of the time; one chord per bar, two per bar (4/4) or
  one per two bars;
* comping on one program in one pattern (sustained, quarters, halves,
  off-beats, broken-chord arpeggio, strummed with 8-25 ms between strings,
  syncopated stabs) and voicing (voice-led close position, a random
  inversion per chord, open position, or spread root-fifth-tenth);
* bass on root and fifth (or root, octave, a walking approach tone);
* a lead with velocity 85-110 over a harmony at ~70, a share of its notes
  (40 % in the held-out style) scale steps *outside* the current chord,
  strong beats included;
* drums as in the tune split plus a sparse ride/rim pattern; a shuffle hat
  on swung songs;
* three stems (drums+bass, harmony, lead) rendered apart and mixed with the
  lead 6-15 dB (RMS) over the harmony, the rhythm section within ±4 dB of
  it; mono, peak -1 dBFS.

References come from the MIDI as in the tune split (same ``Reference``
fields), chords at their true change times.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import soundfile

ROOT = Path(__file__).resolve().parent.parent
RENDER_SR = 44100
TAIL_S = 1.0
MELODY_HOP_S = 0.01
RENDER_VERSION = "songgen/fluidsynth-cli/float/mono/3-stems/v1"
GAP_S = 3.0  # silence between the stems in the one render

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
TRIADS = {"maj": (0, 4, 7), "min": (0, 3, 7)}
# Diatonic triads (semitones above the tonic, quality); minor adds the major V.
DIATONIC = {
    "major": ((0, "maj"), (2, "min"), (4, "min"), (5, "maj"), (7, "maj"), (9, "min")),
    "minor": ((0, "min"), (3, "maj"), (5, "min"), (7, "min"), (7, "maj"), (8, "maj"), (10, "maj")),
}
KICK, RIM, SNARE, HAT, OPEN_HAT, CRASH, RIDE = 36, 37, 38, 42, 46, 49, 51

FLUID = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
TIMGM = "/usr/share/sounds/sf2/TimGM6mb.sf2"
MUSESCORE = "/usr/share/sounds/sf3/MuseScore_General_Full.sf3"
CSOUND = "/usr/share/sounds/sf2/sf_GMbank.sf2"
OPL3 = "/usr/share/sounds/sf2/OPL-3_FM_128M.sf2"
APT_HINT = (
    "sudo apt-get install -y fluidsynth fluid-soundfont-gm timgm6mb-soundfont musescore-general-soundfont"
    " csound-soundfont opl3-soundfont"
)

COMP_PATTERNS = ("sustain", "quarters", "halves", "offbeat", "arpeggio", "strum", "stabs")


@dataclass(frozen=True)
class Style:
    name: str
    soundfonts: tuple[str, ...]
    comp: dict[int, tuple[str, ...]]  # GM program: patterns it plays
    bass_programs: tuple[int, ...]
    lead_programs: tuple[int, ...]
    voicings: tuple[str, ...]
    lead_db: tuple[float, float]  # lead RMS over the harmony's
    rhythm_db: tuple[float, float]  # drums + bass RMS over the harmony's
    off_chord: tuple[float, float]  # share of lead notes on non-chord scale tones
    chord_rates: tuple[float, ...]  # chords per bar
    reverb: tuple[bool, ...]


GUITARS = ("arpeggio", "strum", "quarters", "halves")
KEYS = ("quarters", "halves", "offbeat", "arpeggio", "stabs", "sustain")
SUSTAINED = ("sustain", "halves")

STYLES = {
    # The list: nylon/steel guitar, acoustic and electric piano,
    # strings and pads; saxophones, flute, square lead and voices.
    "heldout": Style(
        name="heldout",
        soundfonts=(MUSESCORE,),
        comp={
            24: GUITARS,
            25: GUITARS,
            1: KEYS,
            2: KEYS,
            5: KEYS,
            49: SUSTAINED,
            88: SUSTAINED,
            90: SUSTAINED,
        },
        bass_programs=(32, 35, 38),
        lead_programs=(64, 66, 67, 73, 80, 52, 53, 54),
        voicings=("close", "inversion", "open", "spread"),
        lead_db=(6.0, 15.0),
        rhythm_db=(-4.0, 4.0),
        off_chord=(0.4, 0.4),
        chord_rates=(1.0, 1.0, 2.0, 0.5),
        reverb=(True,),
    ),
    # Every melodic GM family in its role, two other soundfonts.
    "train": Style(
        name="train",
        soundfonts=(FLUID, TIMGM),
        comp={
            **{p: KEYS for p in range(0, 8)},
            **{p: KEYS for p in range(16, 24)},
            **{p: GUITARS for p in range(24, 32)},
            **{p: SUSTAINED + ("quarters",) for p in range(48, 56)},
            **{p: SUSTAINED for p in range(88, 96)},
            **{p: ("arpeggio", "quarters") for p in (8, 9, 10, 11, 12, 13, 46, 105, 106, 107, 108)},
            **{p: SUSTAINED + ("stabs",) for p in (56, 57, 58, 59, 60, 61, 62, 63, 81)},
        },
        bass_programs=(32, 33, 34, 35, 36, 37, 38, 39, 43, 58, 42),
        lead_programs=(*range(40, 47), *range(52, 55), *range(56, 80), *range(80, 88), 11, 12, 13, 22),
        voicings=("close", "inversion", "open", "spread"),
        lead_db=(-3.0, 15.0),
        rhythm_db=(-8.0, 6.0),
        off_chord=(0.1, 0.5),
        chord_rates=(1.0, 1.0, 2.0, 0.5),
        reverb=(True, False),
    ),
}
# The train style's songs on two more soundfonts (csound's GM bank: small
# sampled instruments; OPL-3: FM synthesis), for timbres neither FluidR3 nor
# TimGM6mb has. Training data only, like "train".
STYLES["train-sf"] = replace(STYLES["train"], name="train-sf", soundfonts=(CSOUND, OPL3))


@dataclass(frozen=True)
class SongSpec:
    index: int
    style: str
    bpm: float
    tonic: str
    mode: str
    meter: int
    progression: str  # the loop, e.g. "I-vi-ii-V"
    loop: tuple[tuple[int, str], ...]
    chord_rate: float
    swing: float
    drums: str
    bass: str
    bass_program: int
    chord_program: int
    comping: str
    voicing: str
    lead_program: int
    lead_db: float
    rhythm_db: float
    off_chord: float
    soundfont: str
    reverb: bool
    lead_in: float
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
        return (
            f"{self.bpm:g} BPM {self.meter}/4, {self.key}, {self.progression} ×{self.chord_rate:g}/bar, "
            f"comp {self.chord_program} {self.comping}/{self.voicing}, lead {self.lead_program} "
            f"+{self.lead_db:.0f} dB{sw}"
        )


_ROMAN = {0: "i", 2: "ii", 3: "iii", 4: "iii", 5: "iv", 7: "v", 8: "vi", 9: "vi", 10: "vii"}


def _roman(mode: str, off: int, q: str) -> str:
    r = _ROMAN[off].upper() if q == "maj" else _ROMAN[off]
    return "b" + r if mode == "minor" and off in (3, 8, 10) else r


def _loop(rng: np.random.Generator, mode: str) -> tuple[tuple[int, str], ...]:
    """A chord loop of 4 (or 3, 6, 8) diatonic triads, tonic first, no
    immediate repeats; often ending on a dominant or subdominant so the
    loop cadences back to the tonic."""
    pool = list(DIATONIC[mode])
    tonic = pool[0]
    length = int(rng.choice([3, 4, 4, 4, 6, 8]))
    chords = [tonic]
    while len(chords) < length:
        c = pool[int(rng.integers(len(pool)))]
        if c != chords[-1]:
            chords.append(c)
    if rng.random() < 0.6:
        v = (7, "maj")
        chords[-1] = v if chords[-2] != v else (5, "maj" if mode == "major" else "min")
    return tuple(chords)


def make_specs(n: int, seed: int, style: str) -> list[SongSpec]:
    """``n`` specs of the given style, deterministic from ``seed``."""
    st = STYLES[style]
    rng = np.random.default_rng([seed, 7919])
    tempo_slots = rng.permutation(n)
    keys = [(pc, mode) for mode in ("major", "minor") for pc in range(12)]
    key_order = list(rng.permutation(24)) + list(rng.integers(0, 24, max(0, n - 24)))
    meters = rng.permutation([3 if i < n // 5 else 4 for i in range(n)])
    swung = rng.permutation([i < n // 4 for i in range(n)])
    specs = []
    for i in range(n):
        bpm = 60.0 + 120.0 * (tempo_slots[i] + rng.random()) / n
        bpm = round(bpm, 2) if i % 2 else float(round(bpm))
        pc, mode = keys[int(key_order[i])]
        meter = int(meters[i])
        program = int(rng.choice(list(st.comp)))
        pattern = str(rng.choice(st.comp[program]))
        rate = float(rng.choice(st.chord_rates))
        if meter == 3 and rate == 2.0:
            rate = 1.0
        loop = _loop(rng, mode)
        swing = round(float(rng.uniform(0.58, 0.67)), 3) if swung[i] else 0.5
        drum_pool = ("rock", "pop", "disco", "sparse") if meter == 4 else ("waltz", "ballad", "sparse")
        bass_pool = (
            ("root_fifth", "root_fifth", "octave", "walking") if meter == 4 else ("root_fifth", "waltz")
        )
        lead_in = round(float(rng.uniform(0.2, 1.0)), 3)
        bar = meter * 60.0 / bpm
        n_bars = max(4, int(round((rng.uniform(30.0, 45.0) - lead_in - TAIL_S) / bar)))
        specs.append(
            SongSpec(
                index=i,
                style=style,
                bpm=bpm,
                tonic=PITCH_CLASSES[pc],
                mode=mode,
                meter=meter,
                progression="-".join(_roman(mode, o, q) for o, q in loop),
                loop=loop,
                chord_rate=rate,
                swing=swing,
                drums=str(rng.choice(drum_pool)),
                bass=str(rng.choice(bass_pool)),
                bass_program=int(rng.choice(st.bass_programs)),
                chord_program=program,
                comping=pattern,
                voicing=str(rng.choice(st.voicings)),
                lead_program=int(rng.choice(st.lead_programs)),
                lead_db=round(float(rng.uniform(*st.lead_db)), 1),
                rhythm_db=round(float(rng.uniform(*st.rhythm_db)), 1),
                off_chord=round(float(rng.uniform(*st.off_chord)), 2),
                soundfont=str(rng.choice(st.soundfonts)),
                reverb=bool(rng.choice(st.reverb)),
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
    key: str
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
    rhythm: object  # pretty_midi.PrettyMIDI: drums + bass
    harmony: object
    lead: object
    ref: Reference
    audio_path: Path = field(default=Path())


def _midi_hz(m: float) -> float:
    return 440.0 * 2.0 ** ((m - 69.0) / 12.0)


def _voicings(pcs: list[int], kind: str, rng: np.random.Generator, prev: list[int] | None) -> list[int]:
    """MIDI notes of a triad (pitch classes root, third, fifth)."""
    root, third, fifth = pcs
    if kind in ("close", "inversion"):
        options = []
        for base in range(52, 66):
            if base % 12 in pcs:
                options.append(sorted({base + ((p - base) % 12) for p in pcs}))
        if kind == "close" and prev:
            return min(options, key=lambda v: sum(abs(a - c) for a, c in zip(v, prev, strict=True)))
        return options[int(rng.integers(len(options)))]
    i3, i5 = (third - root) % 12, (fifth - root) % 12
    low = 48 + (root - 48) % 12  # root in C3..B3
    if kind == "open":  # root, fifth, the third an octave up (a tenth)
        return [low, low + i5, low + 12 + i3]
    return [low - 12 * (low > 52), low + i5, low + 12, low + 12 + i3]  # spread, root doubled


def build_song(spec: SongSpec) -> Song:
    """The three stems' MIDI and the references of a spec."""
    import pretty_midi as pm

    rng = np.random.default_rng(spec.note_seed)
    m = spec.meter
    tonic = PITCH_CLASSES.index(spec.tonic)
    sw = spec.swing

    def time(beat: float) -> float:
        whole = np.floor(beat + 1e-9)
        frac = beat - whole
        frac = frac * 2 * sw if frac <= 0.5 else sw + (frac - 0.5) * 2 * (1 - sw)
        return spec.lead_in + (whole + frac) * spec.period

    def vel(base: float, spread: float = 6.0) -> int:
        return int(np.clip(round(base + rng.normal(0, spread)), 20, 127))

    def note(inst, p: int, start: float, length: float, v: int, jitter: float = 0.0) -> None:
        a, b = time(start), time(start + length)
        if jitter:
            a = max(0.0, a + rng.normal(0, jitter))
        inst.notes.append(pm.Note(velocity=v, pitch=int(p), start=a, end=max(b, a + 0.03)))

    # The chord sequence: (start beat, length in beats, offset, quality).
    beats_per_chord = m / spec.chord_rate
    total_beats = spec.n_bars * m
    seq = []
    pos, k = 0.0, 0
    while pos < total_beats - 1e-9:
        length = min(beats_per_chord, total_beats - pos)
        off, q = spec.loop[k % len(spec.loop)]
        seq.append([pos, length, off, q])
        pos += length
        k += 1
    # The last bar on the tonic, the chord before it a dominant most of the time.
    tonic_q = "maj" if spec.mode == "major" else "min"
    last_bar = total_beats - m
    seq = [c for c in seq if c[0] < last_bar - 1e-9]
    if seq and seq[-1][0] + seq[-1][1] > last_bar:
        seq[-1][1] = last_bar - seq[-1][0]
    if seq and rng.random() < 0.7:
        seq[-1][2:] = [7, "maj"]
    seq.append([last_bar, float(m), 0, tonic_q])
    # Merge equal neighbours (the reference is the harmony, not the loop).
    merged: list[list] = []
    for c in seq:
        if merged and merged[-1][2:] == c[2:]:
            merged[-1][1] += c[1]
        else:
            merged.append(list(c))
    seq = merged

    def new_midi():
        mid = pm.PrettyMIDI(resolution=960, initial_tempo=spec.bpm)
        mid.time_signature_changes.append(pm.TimeSignature(m, 4, 0.0))
        return mid

    rhythm, harmony, lead_mid = new_midi(), new_midi(), new_midi()
    drums = pm.Instrument(program=0, is_drum=True, name="drums")
    bass = pm.Instrument(program=spec.bass_program, name="bass")
    comp = pm.Instrument(program=spec.chord_program, name="chords")
    lead = pm.Instrument(program=spec.lead_program, name="lead")

    # Drums.
    hat = [(h / 2, HAT, 80 if h % 2 == 0 else 60) for h in range(2 * m)]
    if spec.swing > 0.5:  # shuffle: the hat on the swung eighths, ride on the beat
        hat = [(h / 2, RIDE if h % 2 == 0 else HAT, 75 if h % 2 == 0 else 55) for h in range(2 * m)]
    patterns = {
        "rock": [(0, KICK, 105), (2, KICK, 95), (2.5, KICK, 70), (1, SNARE, 100), (3, SNARE, 100)] + hat,
        "pop": [(0, KICK, 105), (1.5, KICK, 80), (2, KICK, 95), (1, SNARE, 100), (3, SNARE, 100)] + hat,
        "disco": [(q, KICK, 100) for q in range(4)]
        + [(1, SNARE, 95), (3, SNARE, 95)]
        + [(q + 0.5, OPEN_HAT, 75) for q in range(4)],
        "waltz": [(0, KICK, 105), (1, SNARE, 70), (2, SNARE, 70)] + hat,
        "ballad": [(0, KICK, 105), (2.5, KICK, 70), (2, SNARE, 95)]
        + [(h / 2, RIDE, 75 if h % 2 == 0 else 55) for h in range(6)],
        "sparse": [(0, KICK, 100), (m - 1, RIM, 80)] + [(q, RIDE, 70) for q in range(m)],
    }[spec.drums]
    for bar in range(spec.n_bars):
        base = bar * m
        fill = bar % 8 == 7 and bar < spec.n_bars - 1
        for p_, d, v in patterns:
            if fill and p_ >= m - 1 and d != KICK:
                continue
            note(drums, d, base + p_, 0.25, vel(v), jitter=0.004)
        if fill:
            for j in range(4):
                note(drums, SNARE, base + m - 1 + j / 4, 0.2, vel(70 + 8 * j), jitter=0.003)
        if bar % 4 == 0:
            note(drums, CRASH, base, 1.0, vel(95), jitter=0.003)

    # Harmony.
    prev = None
    for start, length, off, q in seq:
        root = (tonic + off) % 12
        pcs = [(root + iv) % 12 for iv in TRIADS[q]]
        voicing = _voicings(pcs, spec.voicing, rng, prev)
        prev = voicing if len(voicing) == 3 else prev
        final = start >= last_bar
        style = "sustain" if final else spec.comping
        hits: list[tuple[float, float, list[int], float]] = []  # (beat, length, notes, stagger s)
        n_beats = int(round(length))
        if style == "sustain":
            hits = [(0.0, length * 0.98, voicing, 0.0)]
        elif style == "quarters":
            hits = [(float(b), 0.9, voicing, 0.0) for b in range(n_beats)]
        elif style == "halves":
            hits = [(float(b), min(2.0, length - b) * 0.97, voicing, 0.0) for b in range(0, n_beats, 2)]
        elif style == "offbeat":
            hits = [(b + 0.5, 0.45, voicing, 0.0) for b in range(n_beats)]
        elif style == "stabs":
            hits = [(b, 0.4, voicing, 0.0) for b in (0.0, 1.5, 2.5, 3.5) if b < length]
        elif style == "strum":
            for b in range(n_beats):
                up = b % 2 == 1
                hits.append(
                    (float(b), 0.95, voicing[::-1] if up else voicing, float(rng.uniform(0.008, 0.025)))
                )
        elif style == "arpeggio":  # broken chord in eighths, each note ringing to the chord's end
            order = voicing + voicing[1:-1][::-1] if len(voicing) > 2 else voicing
            for e in range(2 * n_beats):
                p_ = order[e % len(order)]
                hits.append((e / 2, length - e / 2, [p_], 0.0))
        for b, ln, notes_, stagger in hits:
            v = vel(72 if b == 0 else 66, 5.0)
            for j, p_ in enumerate(notes_):
                t0 = start + b
                note(comp, p_, t0, max(0.1, ln), v)
                if stagger:
                    comp.notes[-1].start += j * stagger

    # Bass: root and fifth.
    for start, length, off, _q in seq:
        root = 36 + (tonic + off) % 12
        if root > 43:
            root -= 12 * (rng.random() < 0.5)
        fifth = root + 7
        n_beats = max(1, int(round(length)))
        style = "root" if start >= last_bar else spec.bass
        if style == "root":
            hits = [(0.0, root, length)]
        elif style == "root_fifth":
            hits = [(float(b), root if b % 2 == 0 else fifth, 1.0) for b in range(0, n_beats, 1)]
            if m == 4 and rng.random() < 0.5:
                hits = [(float(b), root if b % 4 == 0 else fifth, 2.0) for b in range(0, n_beats, 2)]
        elif style == "octave":
            hits = [(float(b), root + 12 * (b % 2), 1.0) for b in range(n_beats)]
        elif style == "waltz":
            hits = [(0.0, root, 1.0)] + [(float(b), fifth, 1.0) for b in range(1, n_beats)]
        else:  # walking: root, third-ish chord tones, an approach tone to the next root
            third = root + TRIADS[_q][1]
            line = [root, third, fifth, fifth + 2]
            hits = [(float(b), line[b % 4], 1.0) for b in range(n_beats)]
        for b, p_, ln in hits:
            if b < length:
                note(bass, p_, start + b, min(ln, length - b) * 0.92, vel(96 if b == 0 else 86))

    # Lead: a share of its notes non-chord scale tones, strong beats included.
    rhythms = {
        4: [
            [(0, 1), (1, 1), (2, 1), (3, 1)],
            [(0, 2), (2, 1), (3, 1)],
            [(0, 1), (1, 0.5), (1.5, 0.5), (2, 2)],
            [(0, 1.5), (1.5, 0.5), (2, 1), (3, 1)],
            [(0, 0.5), (0.5, 0.5), (1, 0.5), (1.5, 0.5), (2, 0.5), (2.5, 0.5), (3, 1)],
            [(0.5, 0.5), (1, 1), (2, 0.5), (2.5, 0.5), (3, 1)],
            [(0, 3), (3, 1)],
        ],
        3: [
            [(0, 1), (1, 1), (2, 1)],
            [(0, 2), (2, 1)],
            [(0, 0.5), (0.5, 0.5), (1, 0.5), (1.5, 0.5), (2, 1)],
            [(0, 1.5), (1.5, 0.5), (2, 1)],
            [(0, 3)],
        ],
    }[m]
    scale = [(tonic + d) % 12 for d in SCALES[spec.mode]]
    high_voice = spec.lead_program in (52, 53, 54, 66, 67)  # voices and low saxes sit lower
    centre = (55 if high_voice else 62) + (tonic - (55 if high_voice else 62)) % 12
    lo, hi = centre - 5, centre + 12
    scale_notes = [p for p in range(lo, hi + 1) if p % 12 in scale]
    prev_p = centre
    legato = float(rng.uniform(0.75, 0.97))

    def chord_at(beat: float):
        for c in seq:
            if c[0] <= beat + 1e-9 < c[0] + c[1]:
                return c
        return seq[-1]

    for bar in range(spec.n_bars):
        last = bar == spec.n_bars - 1
        rhythm_ = [(0, m * 0.9)] if last else rhythms[int(rng.integers(len(rhythms)))]
        for j, (p0, ln) in enumerate(rhythm_):
            if j > 0 and rng.random() < 0.06:
                continue
            beat = bar * m + p0
            _s, _l, off, q = chord_at(beat)
            root = (tonic + off) % 12
            chord_pcs = {(root + iv) % 12 for iv in TRIADS[q]}
            chord_notes = [p for p in scale_notes + [lo + (root - lo) % 12] if p % 12 in chord_pcs]
            off_notes = [p for p in scale_notes if p % 12 not in chord_pcs]
            if last:
                pool = [p for p in chord_notes if p % 12 == tonic] or chord_notes
            elif rng.random() < spec.off_chord:
                pool = sorted(off_notes, key=lambda x: abs(x - prev_p))[:2]
            else:
                pool = sorted(chord_notes, key=lambda x: abs(x - prev_p))[:3]
            p = pool[int(rng.integers(len(pool)))] if not last else min(pool, key=lambda x: abs(x - prev_p))
            prev_p = p
            note(lead, p, beat, ln * legato, vel(float(rng.uniform(85, 110)), 4.0), jitter=0.004)
    lead.notes.sort(key=lambda n_: n_.start)
    for a, c in zip(lead.notes[:-1], lead.notes[1:], strict=True):
        a.end = min(a.end, c.start - 0.01)

    for inst in (comp, lead, bass):
        inst.control_changes.append(pm.ControlChange(number=7, value=100, time=spec.duration))
    rhythm.instruments += [drums, bass]
    harmony.instruments.append(comp)
    lead_mid.instruments.append(lead)

    period, bar_s = spec.period, m * spec.period
    beat_times = spec.lead_in + period * np.arange(spec.n_bars * m)
    starts = [spec.lead_in + c[0] * period for c in seq]
    edges = np.array([0.0, *starts, spec.music_end, spec.duration])
    intervals = np.stack([edges[:-1], edges[1:]], axis=1)
    labels = ["N"] + [f"{PITCH_CLASSES[(tonic + c[2]) % 12]}:{c[3]}" for c in seq] + ["N"]
    times = np.arange(0.0, spec.duration, MELODY_HOP_S)
    hz = np.zeros_like(times)
    for n_ in lead.notes:
        hz[(times >= n_.start) & (times < n_.end)] = _midi_hz(n_.pitch)
    del bar_s
    ref = Reference(
        tempo=spec.bpm,
        meter=m,
        key=spec.key,
        beats=beat_times,
        downbeats=beat_times[::m],
        chord_intervals=intervals,
        chord_labels=labels,
        melody_times=times,
        melody_hz=hz,
        duration=spec.duration,
    )
    return Song(spec, rhythm, harmony, lead_mid, ref)


def _midi_bytes(mid) -> bytes:
    buf = io.BytesIO()
    mid.write(buf)
    return buf.getvalue()


def fluidsynth_version() -> str:
    out = subprocess.run(["fluidsynth", "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else "unknown"


def check_prerequisites(style: str) -> str | None:
    missing = [sf for sf in STYLES[style].soundfonts if not Path(sf).exists()]
    if shutil.which("fluidsynth") is None:
        missing.append("the fluidsynth command")
    if missing:
        return f"missing {', '.join(missing)}; install with:\n    {APT_HINT}"
    return None


def render_stems(song: Song, tmp: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rhythm, harmony and lead stems of a song, mono at RENDER_SR, each
    ``spec.duration`` long; ``tmp`` is a scratch folder for the MIDI and WAV.

    One FluidSynth run per song (loading a soundfont, an .sf3 above all,
    takes longer than rendering): the three stems one after another in one
    MIDI file, GAP_S apart so reverb tails do not leak, cut apart afterwards.
    """
    import pretty_midi as pm

    spec = song.spec
    combined = pm.PrettyMIDI(resolution=960, initial_tempo=spec.bpm)
    stride = spec.duration + GAP_S
    for k, part in enumerate((song.rhythm, song.harmony, song.lead)):
        for inst in part.instruments:
            copy = pm.Instrument(program=inst.program, is_drum=inst.is_drum, name=inst.name)
            copy.notes = [
                pm.Note(n.velocity, n.pitch, n.start + k * stride, n.end + k * stride) for n in inst.notes
            ]
            copy.control_changes = [pm.ControlChange(7, 100, 3 * stride)]
            combined.instruments.append(copy)
    mid, wav = tmp / "song.mid", tmp / "song.wav"
    combined.write(str(mid))
    cmd = ["fluidsynth", "-ni", "-q", "-r", str(RENDER_SR), "-O", "float", "-T", "wav"]
    if not spec.reverb:
        cmd += ["-R", "0", "-C", "0"]
    subprocess.run([*cmd, "-F", str(wav), str(spec.soundfont), str(mid)], check=True, capture_output=True)
    x, sr = soundfile.read(wav, dtype="float32", always_2d=True)
    assert sr == RENDER_SR
    x = x.mean(axis=1)
    step = int(round(stride * RENDER_SR))
    n = int(round(spec.duration * RENDER_SR))
    rhythm_y, harmony_y, lead_y = (
        np.pad(s, (0, max(0, n - len(s))))[:n] for s in (x[k * step : k * step + n] for k in range(3))
    )
    return rhythm_y, harmony_y, lead_y


def render_song(song: Song, fs_version: str, cache: Path | None = None) -> Path:
    """Render (or find in the cache) the song's mono 44.1 kHz mix; the stems
    are mixed at the spec's levels (lead and rhythm relative to the harmony)."""
    spec = song.spec
    cache = cache or ROOT / "bench" / ".cache" / f"songs-{spec.style}"
    parts = [_midi_bytes(x) for x in (song.rhythm, song.harmony, song.lead)]
    sf = Path(spec.soundfont)
    h = hashlib.sha256()
    for part in (
        json.dumps(asdict(spec), sort_keys=True).encode(),
        *parts,
        f"{RENDER_VERSION}|{fs_version}|{sf}|{sf.stat().st_size}|{RENDER_SR}".encode(),
    ):
        h.update(hashlib.sha256(part).digest())
    path = cache / f"song{spec.index:04d}-{h.hexdigest()[:16]}.flac"
    if path.exists():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".tmp-{os.getpid()}-{spec.index}"
    tmp.mkdir(exist_ok=True)
    try:
        rhythm_y, harmony_y, lead_y = render_stems(song, tmp)

        def rms(v: np.ndarray) -> float:
            return max(float(np.sqrt(np.mean(np.square(v, dtype=np.float64)))), 1e-12)

        ref = rms(harmony_y)
        mix = (
            harmony_y
            + rhythm_y * (10 ** (spec.rhythm_db / 20) * ref / rms(rhythm_y))
            + lead_y * (10 ** (spec.lead_db / 20) * ref / rms(lead_y))
        )
        mix *= 10 ** (-1 / 20) / float(np.max(np.abs(mix)))
        soundfile.write(path.with_suffix(".tmp.flac"), mix.astype(np.float32), RENDER_SR, subtype="PCM_24")
        os.replace(path.with_suffix(".tmp.flac"), path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path
