"""Synthetic music with a known tempo and key, for the DSP tests and benchmarks.

Everything is deterministic from ``seed`` and fast (a 30 s drum track takes
~25 ms): sounds are rendered once per call and added at
sample-exact positions, so a non-integer tempo such as 97.5 BPM does not
drift over the track.

* :func:`drum_pattern` — kick (pitch-swept decaying sine), snare (noise burst +
  tone), hi-hat (high-passed short noise) in a named pattern.
* :func:`chord_progression` — triads and a bass line built from additive
  partials that decay (not pure sines), optionally over drums.

All functions return float32 mono in [-1, 1].
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import signal

SR = 22050
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")

# Onset positions in beats within a 4-beat bar, with velocities. Hats on "8ths"
# are at every half beat; swing moves the off-beat 8th to the last triplet
# (2/3 of the beat), the usual jazz/shuffle ratio.
_EIGHTHS = [i / 2 for i in range(8)]
_SIXTEENTHS = [i / 4 for i in range(16)]
_SWUNG = [b + s for b in range(4) for s in (0.0, 2 / 3)]

PATTERNS: dict[str, dict[str, list[tuple[float, float]]]] = {
    # Backbeat: kick on 1 and 3 (plus the "and" of 3), snare on 2 and 4.
    "rock": {
        "kick": [(0, 1.0), (2, 1.0), (2.5, 0.7)],
        "snare": [(1, 1.0), (3, 1.0)],
        "hat": [(p, 0.8 if p % 1 == 0 else 0.55) for p in _EIGHTHS],
    },
    # House/techno: kick on every beat, clap on 2 and 4, open hat off-beat,
    # quiet closed hats on 16ths.
    "four_on_floor": {
        "kick": [(b, 1.0) for b in range(4)],
        "snare": [(1, 0.7), (3, 0.7)],
        "hat": [(b + 0.5, 0.8) for b in range(4)] + [(p, 0.25) for p in _SIXTEENTHS if p % 0.5 != 0],
        "open_hat": [(b + 0.5, 0.5) for b in range(4)],
    },
    # Swung 8ths on the hats (triplet feel), kick 1 and 3, snare 2 and 4 with a
    # ghost note on a swung off-beat.
    "swing": {
        "kick": [(0, 1.0), (2, 0.9)],
        "snare": [(1, 1.0), (3, 1.0), (2 + 2 / 3, 0.3)],
        "hat": [(p, 0.8 if p % 1 == 0 else 0.5) for p in _SWUNG],
    },
    # Funk-style: kick on the "a" of 1 and the "and" of 3, ghost snares on
    # 16ths, 16th hats accented on the 8ths.
    "syncopated": {
        "kick": [(0, 1.0), (0.75, 0.8), (2.5, 0.9)],
        "snare": [(1, 1.0), (3, 1.0), (1.75, 0.3), (3.25, 0.3)],
        "hat": [(p, 0.7 if p % 0.5 == 0 else 0.35) for p in _SIXTEENTHS],
    },
    # Half-time feel: snare on beat 3 only, so the kick/snare pulse is half
    # the notated tempo; 8th hats keep the notated tempo audible. Tempo-
    # ambiguous by design.
    "halftime": {
        "kick": [(0, 1.0), (2.75, 0.6)],
        "snare": [(2, 1.0)],
        "hat": [(p, 0.7 if p % 1 == 0 else 0.5) for p in _EIGHTHS],
    },
    # Hats on every 8th and one kick per bar: nothing marks the beat but the
    # 8th accents. Tempo-ambiguous by design (notated tempo or double).
    "eighths": {
        "kick": [(0, 1.0)],
        "hat": [(p, 0.8 if p % 1 == 0 else 0.6) for p in _EIGHTHS],
    },
}

# Patterns whose notated tempo a listener could equally hear at another
# metrical level; tests count octave errors on these separately.
AMBIGUOUS_PATTERNS = frozenset({"halftime", "eighths"})


def _fade_out(x: np.ndarray, sr: int, seconds: float = 0.01) -> np.ndarray:
    # A sound cut off abruptly ends with a click, which an onset detector
    # rightly hears as a second hit; real drums ring out.
    n = min(len(x), int(seconds * sr))
    x[len(x) - n :] *= np.cos(np.linspace(0, np.pi / 2, n)) ** 2
    return x


def _kick(sr: int) -> np.ndarray:
    # Pitch sweep 150 -> 48 Hz (time constant 30 ms), amplitude decay 150 ms:
    # the usual analogue "808-style" kick recipe.
    t = np.arange(int(0.6 * sr)) / sr
    f = 48 + (150 - 48) * np.exp(-t / 0.03)
    phase = 2 * np.pi * np.cumsum(f) / sr
    click = np.exp(-t / 0.002) * 0.3
    return _fade_out(np.sin(phase) * np.exp(-t / 0.15) + click, sr)


def _snare(sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.25 * sr)) / sr
    noise = signal.lfilter(*signal.butter(2, 1500, "highpass", fs=sr), rng.standard_normal(len(t)))
    tone = np.sin(2 * np.pi * 185 * t) * np.exp(-t / 0.06)
    return _fade_out(0.6 * noise * np.exp(-t / 0.07) + 0.5 * tone, sr)


def _hat(sr: int, rng: np.random.Generator, decay: float) -> np.ndarray:
    t = np.arange(int(min(0.4, 6 * decay) * sr)) / sr
    noise = signal.lfilter(*signal.butter(4, 7000, "highpass", fs=sr), rng.standard_normal(len(t)))
    return _fade_out(0.5 * noise * np.exp(-t / decay), sr)


def _place(out: np.ndarray, sound: np.ndarray, starts: np.ndarray, gains: np.ndarray) -> None:
    for s, g in zip(starts, gains, strict=True):
        if s >= len(out):
            continue
        n = min(len(sound), len(out) - s)
        out[s : s + n] += g * sound[:n]


def _normalize(x: np.ndarray, peak: float = 0.9) -> np.ndarray:
    m = float(np.max(np.abs(x))) if len(x) else 0.0
    return (x * (peak / m) if m > 0 else x).astype(np.float32)


def drum_pattern(
    bpm: float,
    seconds: float,
    sr: int = SR,
    pattern: str = "rock",
    seed: int = 0,
    jitter_ms: float = 2.0,
) -> np.ndarray:
    """A drum loop at ``bpm`` beats per minute, ``seconds`` long, 4/4.

    ``pattern`` is one of :data:`PATTERNS`. Each hit gets a seeded velocity
    variation (±10 %) and timing jitter (uniform ±``jitter_ms``, no drift: the
    grid itself is exact), like a tight human or a humanized sequencer.
    """
    if pattern not in PATTERNS:
        raise ValueError(f"unknown pattern {pattern!r}; choose from {sorted(PATTERNS)}")
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    out = np.zeros(n, np.float64)
    beat = 60.0 / bpm
    bars = int(np.ceil(seconds / (4 * beat))) + 1
    sounds = {
        "kick": _kick(sr),
        "snare": _snare(sr, rng),
        "hat": _hat(sr, rng, 0.03),
        "open_hat": _hat(sr, rng, 0.12),
    }
    for name, hits in PATTERNS[pattern].items():
        pos = np.array([p for p, _ in hits])
        vel = np.array([v for _, v in hits])
        times = (np.arange(bars)[:, None] * 4 + pos[None, :]).ravel() * beat
        gains = np.tile(vel, bars) * rng.uniform(0.9, 1.1, len(times))
        times = times + rng.uniform(-jitter_ms, jitter_ms, len(times)) / 1000
        starts = np.round(np.maximum(times, 0) * sr).astype(np.int64)
        _place(out, sounds[name], starts, gains)
    return _normalize(out)


# Scale degrees (semitones above the tonic) of the chord roots, and chord
# qualities, for each named progression.
PROGRESSIONS: dict[str, list[tuple[int, str]]] = {
    "I-IV-V-I": [(0, "maj"), (5, "maj"), (7, "maj"), (0, "maj")],
    # Harmonic minor: the V is major (raised leading tone), as in common practice.
    "i-iv-V-i": [(0, "min"), (5, "min"), (7, "maj"), (0, "min")],
    # Pop "axis" progression, starting on the tonic.
    "I-V-vi-IV": [(0, "maj"), (7, "maj"), (9, "min"), (5, "maj")],
    # Natural-minor rock/pop loop (no leading tone), tonic twice per cycle.
    "i-VI-VII-i": [(0, "min"), (8, "maj"), (10, "maj"), (0, "min")],
    # Aeolian loop with equal chord lengths: exactly the relative major's
    # vi-IV-I-V (its pitch-class content favours the relative major's tonic),
    # so a global key estimate may call it the relative major. Ambiguous by
    # construction; benchmarks count these confusions, tests don't assert them.
    "i-VI-III-VII": [(0, "min"), (8, "maj"), (3, "maj"), (10, "maj")],
}
_TRIAD = {"maj": (0, 4, 7), "min": (0, 3, 7)}


@lru_cache(maxsize=128)  # ≤ ~45 MB: float32 notes of at most a 4 s bar
def _note(freq: float, seconds: float, sr: int, partials: int, seed: int) -> np.ndarray:
    """A plucked/struck tone: ``partials`` harmonics, amplitude 1/k, higher
    ones decaying faster, slightly stretched (inharmonicity) like a piano.
    Cached (read-only) because progressions reuse the same few notes."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = np.zeros_like(t)
    b = 1e-4  # piano-like stiffness: f_k = k f0 sqrt(1 + b k^2)
    for k in range(1, partials + 1):
        fk = k * freq * np.sqrt(1 + b * k * k)
        if fk >= sr / 2 * 0.95:
            break
        decay = 1.5 / (1 + 0.4 * (k - 1))
        x += (1.0 / k) * np.exp(-t / decay) * np.sin(2 * np.pi * fk * t + rng.uniform(0, 2 * np.pi))
    attack = np.minimum(1.0, t / 0.005)
    release = np.minimum(1.0, (t[-1] - t) / 0.05) if len(t) else t
    out = (x * attack * release).astype(np.float32)
    out.flags.writeable = False
    return out


def chord_progression(
    key: str,
    mode: str,
    seconds: float,
    sr: int = SR,
    bpm: float = 100.0,
    seed: int = 0,
    with_drums: bool = False,
    progression: str | None = None,
    tuning_cents: float = 0.0,
) -> np.ndarray:
    """Chords (one per bar) with a bass line, in ``key`` ``mode``.

    ``key`` is a tonic pitch class ("C", "F#", ...), ``mode`` "major" or
    "minor". The default progression is I–IV–V–I (major) or i–iv–V–i (minor);
    see :data:`PROGRESSIONS`. Triads are voiced in MIDI 55–66 (G3–F#4),
    the bass plays the root in MIDI 36–47 (65–123 Hz) on beats 1 and 3.
    ``tuning_cents`` shifts everything off A4 = 440 Hz. With ``with_drums``
    a rock pattern at ``bpm`` is mixed in at about the level of the music.
    """
    tonic = PITCH_CLASSES.index(key)
    if progression is None:
        progression = "I-IV-V-I" if mode == "major" else "i-iv-V-i"
    chords = PROGRESSIONS[progression]
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    out = np.zeros(n + sr, np.float64)
    beat = 60.0 / bpm
    bar = 4 * beat

    def freq(midi: float) -> float:
        return 440.0 * 2 ** ((midi - 69 + tuning_cents / 100) / 12)

    def note(midi: int, dur: float, partials: int) -> np.ndarray:
        # Partial phases are fixed per note (so renders are cached across
        # calls); the seed varies the velocities.
        return _note(freq(midi), dur, sr, partials, midi)

    i = 0
    while i * bar < seconds:
        degree, quality = chords[i % len(chords)]
        root_pc = (tonic + degree) % 12
        start = int(round(i * bar * sr))
        # Each chord tone in the octave MIDI 55..66, so consecutive chords
        # stay close (simple voice leading) instead of all in root position.
        for interval in _TRIAD[quality]:
            midi = 55 + (root_pc + interval - 55) % 12
            _place(out, note(midi, bar, 10), np.array([start]), 0.3 * rng.uniform(0.85, 1.0, 1))
        bass = 36 + root_pc
        for b in (0, 2):
            s = start + int(round(b * beat * sr))
            _place(out, note(bass, 2 * beat, 6), np.array([s]), 0.5 * rng.uniform(0.85, 1.0, 1))
        i += 1
    out = out[:n]
    if with_drums:
        drums = drum_pattern(bpm, seconds, sr, "rock", seed=seed).astype(np.float64)
        rms_m = np.sqrt(np.mean(out**2)) + 1e-12
        rms_d = np.sqrt(np.mean(drums**2)) + 1e-12
        out = out + drums * (rms_m / rms_d)
    return _normalize(out)


# Waltz (3/4): kick on 1, snare on 2 and 3 ("oom-pah-pah"), 8th hats.
_WALTZ: dict[str, list[tuple[float, float]]] = {
    "kick": [(0, 1.0)],
    "snare": [(1, 0.6), (2, 0.6)],
    "hat": [(i / 2, 0.7 if i % 2 == 0 else 0.45) for i in range(6)],
}


def song(
    bpm: float,
    seconds: float,
    key: str = "C",
    mode: str = "major",
    meter: int = 4,
    pickup_beats: int = 0,
    sr: int = SR,
    seed: int = 0,
    swing: float = 0.0,
    pattern: str = "rock",
    progression: str | None = None,
    lead_in: float = 0.0,
    drift: float = 0.0,
) -> tuple[np.ndarray, list[float], list[float]]:
    """Drums, a chord per bar and a bass line, with the true beat and
    downbeat times (seconds) of everything that sounds.

    ``meter`` 4 uses the 4/4 drum ``pattern`` (see :data:`PATTERNS`); meter 3
    a waltz (kick on 1, snare on 2 and 3). Chords change on every downbeat
    (``progression`` as in :func:`chord_progression`, so I–IV–V–I keeps the
    tonic across one bar line in four), voiced as there; the bass plays the
    root on 1 (and 3 in 4/4). ``pickup_beats`` beats of drums alone (the end
    of a bar) come before the first downbeat, after ``lead_in`` seconds of
    silence. ``swing`` in [0, 1] delays every off-beat 8th from half a beat
    to two thirds of it (1 = triplet swing). ``drift`` bends the tempo: the
    beat period changes linearly over the track, from ``drift``/2 longer to
    ``drift``/2 shorter than 60/``bpm`` (0.04: ~2 % slower to ~2 % faster).
    Hits get the same seeded ±10 % velocity and ±2 ms timing variation as
    :func:`drum_pattern`; the grid itself is exact, so the returned times
    are the truth to the sample. Beats in the last 50 ms are not returned
    (a hit there is barely in the signal).
    """
    if meter not in (3, 4):
        raise ValueError(f"meter must be 3 or 4, not {meter}")
    if not 0 <= pickup_beats < meter:
        raise ValueError(f"pickup_beats must be in 0..{meter - 1}")
    hits = _WALTZ if meter == 3 else PATTERNS[pattern]
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    beat = 60.0 / bpm
    total = max(1.0, (seconds - lead_in) / beat)  # beats in the track, about

    def when(x: np.ndarray) -> np.ndarray:
        # Time of beat position x (beats since the first played beat) for a
        # period p(u) = beat * (1 - drift * (u / total - 1/2)): its integral.
        x = np.asarray(x, np.float64)
        return lead_in + beat * (x - drift * (x * x / (2 * total) - x / 2))

    def swung(p: float) -> float:
        return p + swing / 6 if p % 1 == 0.5 else p

    bars = int(np.ceil(total * 1.05 / meter)) + 2
    # Bar b starts at beat position pickup_beats + b * meter; bar -1 holds
    # the pickup.
    bar_start = pickup_beats + np.arange(-1, bars) * meter
    drums = np.zeros(n, np.float64)
    sounds = {
        "kick": _kick(sr),
        "snare": _snare(sr, rng),
        "hat": _hat(sr, rng, 0.03),
        "open_hat": _hat(sr, rng, 0.12),
    }
    for name, events in hits.items():
        pos = np.array([swung(p) for p, _ in events])
        vel = np.array([v for _, v in events])
        x = (bar_start[:, None] + pos[None, :]).ravel()
        gains = np.tile(vel, len(bar_start)) * rng.uniform(0.9, 1.1, len(x))
        times = when(x) + rng.uniform(-2.0, 2.0, len(x)) / 1000
        keep = x >= 0  # nothing before the pickup
        starts = np.round(np.maximum(times[keep], 0) * sr).astype(np.int64)
        _place(drums, sounds[name], starts, gains[keep])

    tonic = PITCH_CLASSES.index(key)
    if progression is None:
        progression = "I-IV-V-I" if mode == "major" else "i-iv-V-i"
    chords = PROGRESSIONS[progression]
    music = np.zeros(n, np.float64)
    bar = meter * beat
    bass_beats = (0,) if meter == 3 else (0, 2)
    for i, x0 in enumerate(bar_start[1:]):
        degree, quality = chords[i % len(chords)]
        root_pc = (tonic + degree) % 12
        start = int(round(float(when(x0)) * sr))
        if start >= n:
            break
        for interval in _TRIAD[quality]:
            midi = 55 + (root_pc + interval - 55) % 12
            tone = _note(440.0 * 2 ** ((midi - 69) / 12), bar, sr, 10, midi)
            _place(music, tone, np.array([start]), 0.3 * rng.uniform(0.85, 1.0, 1))
        bass = 36 + root_pc
        for b in bass_beats:
            s = int(round(float(when(x0 + b)) * sr))
            tone = _note(440.0 * 2 ** ((bass - 69) / 12), bar / len(bass_beats), sr, 6, bass)
            _place(music, tone, np.array([s]), 0.5 * rng.uniform(0.85, 1.0, 1))

    rms_m = np.sqrt(np.mean(music**2)) + 1e-12
    rms_d = np.sqrt(np.mean(drums**2)) + 1e-12
    y = _normalize(music + drums * (rms_m / rms_d))
    k = np.arange(int(np.ceil(total * 1.05)) + 2)
    t = when(k)
    keep = t <= seconds - 0.05
    on_bar_line = (k >= pickup_beats) & ((k - pickup_beats) % meter == 0)
    return y, [float(v) for v in t[keep]], [float(v) for v in t[keep & on_bar_line]]


def offbeat_comping(
    bpm: float,
    seconds: float,
    sr: int = SR,
    seed: int = 0,
    swing: float = 0.0,
    comp_db: float = 3.0,
) -> tuple[np.ndarray, list[float]]:
    """Chords struck on every off-beat over a sparse rhythm section, and the
    true beat times (s): the pattern that pulls a tracker following the
    loudest periodic onsets half a beat (or a swung eighth) off the beat.

    A 4/4 "sparse" kit (kick on 1, a soft snare on 4, a ride-like cymbal on
    every beat), a bass note on 1 and 3 (I-IV-V-I, one chord per bar), and
    the chord's triad an octave up, short, on the "and" of every beat —
    delayed to two thirds of the beat with ``swing`` = 1 — mixed ``comp_db``
    dB (RMS) over the drums and bass. Seeded ±3 ms timing jitter; the beat
    grid starts 0.5 s in and is exact.
    """
    rng = np.random.default_rng(seed)
    beat = 60.0 / bpm
    n = int(round(seconds * sr))
    beats = np.arange(0.5, seconds - 0.5, beat)
    rhythm, comp = np.zeros(n), np.zeros(n)

    def at(times: np.ndarray) -> np.ndarray:
        return np.round((times + rng.uniform(-0.003, 0.003, len(times))) * sr).astype(np.int64)

    index = np.arange(len(beats))
    kick = beats[index % 4 == 0]
    snare = beats[index % 4 == 3]
    _place(rhythm, _kick(sr), at(kick), np.full(len(kick), 0.9))
    _place(rhythm, _snare(sr, rng), at(snare), np.full(len(snare), 0.25))
    _place(rhythm, _hat(sr, rng, 0.15), at(beats), rng.uniform(0.27, 0.33, len(beats)))
    roots = (48, 53, 55, 48)  # C F G C
    offset = (0.5 + swing / 6) * beat
    for i, t in enumerate(beats):
        root = roots[(i // 4) % len(roots)]
        if i % 2 == 0:
            tone = _note(440.0 * 2 ** ((root - 12 - 69) / 12), 2 * beat, sr, 6, root)
            _place(rhythm, tone, at(np.array([t])), np.array([0.8]))
        for midi in (root + 12, root + 16, root + 19):
            tone = _note(440.0 * 2 ** ((midi - 69) / 12), 0.4 * beat, sr, 8, midi)
            _place(comp, tone, at(np.array([t + offset])), np.array([0.5]))
    rms_r = np.sqrt(np.mean(rhythm**2)) + 1e-12
    rms_c = np.sqrt(np.mean(comp**2)) + 1e-12
    y = _normalize(rhythm + comp * (rms_r / rms_c) * 10 ** (comp_db / 20))
    return y, [float(t) for t in beats]


# Vowel formants (centre Hz, bandwidth Hz, gain) of an adult voice: /a/, /e/,
# /i/, /o/, /u/ (after Peterson & Barney's averages, rounded).
_VOWELS = (
    ((730, 90, 1.0), (1090, 110, 0.5), (2440, 170, 0.25)),
    ((530, 70, 1.0), (1840, 100, 0.45), (2480, 150, 0.3)),
    ((270, 60, 1.0), (2290, 100, 0.35), (3010, 170, 0.3)),
    ((570, 80, 1.0), (840, 90, 0.6), (2410, 160, 0.15)),
    ((300, 60, 1.0), (870, 90, 0.4), (2240, 150, 0.1)),
)


def _formant_gain(freqs: np.ndarray, vowel: int) -> np.ndarray:
    """Spectral envelope of a vowel at ``freqs`` (Hz): a sum of resonances
    over a −6 dB/octave glottal tilt."""
    g = np.zeros_like(freqs)
    for fc, bw, a in _VOWELS[vowel]:
        g += a / (1.0 + ((freqs - fc) / (bw / 2)) ** 2)
    return (g + 0.02) * np.minimum(1.0, 150.0 / np.maximum(freqs, 1.0))


def vocal_like(
    seconds: float,
    sr: int = SR,
    seed: int = 0,
    lo_midi: int = 55,
    hi_midi: int = 74,
    bpm: float = 100.0,
) -> tuple[np.ndarray, np.ndarray]:
    """A sung-like melody and its per-sample f0 (Hz, 0 in rests).

    Notes of 1/2–2 beats from a pentatonic scale in ``lo_midi``..``hi_midi``,
    phrases of 2 bars with a rest after each; every note has a vowel
    (formant envelope moved smoothly from the previous one), a 60 ms glide
    from the previous pitch when legato, vibrato of ±30–50 cents at 5–6.5 Hz
    fading in after 150 ms, a little jitter, 20 ms attack and 60 ms release,
    and breath noise 30 dB down. Deterministic from ``seed``; float32 mono,
    peak 0.9.
    """
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    beat = 60.0 / bpm
    scale = [m for m in range(lo_midi, hi_midi + 1) if m % 12 in (0, 2, 4, 7, 9)]
    notes: list[tuple[float, float, int, int]] = []  # start s, length s, midi, vowel
    t = float(rng.uniform(0.0, 2 * beat))
    i = len(scale) // 2
    while t < seconds - 0.3:
        phrase_end = t + 8 * beat
        while t < min(phrase_end, seconds - 0.3):
            length = float(rng.choice([0.5, 1.0, 1.0, 1.5, 2.0])) * beat
            i = int(np.clip(i + rng.choice([-2, -1, -1, 1, 1, 2, 0]), 0, len(scale) - 1))
            notes.append((t, min(length, seconds - t), scale[i], int(rng.integers(len(_VOWELS)))))
            t += length
        t += float(rng.uniform(1.0, 2.0)) * beat  # breath between phrases
    f0 = np.zeros(n)
    env = np.zeros(n)
    vowel_of = np.zeros(n, np.int64)
    prev_hz = None
    prev_end = -1.0
    for start, length, midi, vowel in notes:
        a, b = int(start * sr), min(n, int((start + length) * sr))
        if b <= a:
            continue
        tt = np.arange(b - a) / sr
        hz = 440.0 * 2 ** ((midi - 69) / 12)
        depth = rng.uniform(30, 50) * np.clip((tt - 0.15) / 0.2, 0, 1)
        cents = depth * np.sin(2 * np.pi * rng.uniform(5.0, 6.5) * tt + rng.uniform(0, 2 * np.pi))
        cents += rng.uniform(-10, 10)
        track = hz * 2 ** (cents / 1200)
        if prev_hz is not None and start - prev_end < 0.05:  # legato: glide in
            glide = np.clip(tt / 0.06, 0, 1)
            track *= (prev_hz / hz) ** (1 - glide)
        f0[a:b] = track
        env[a:b] = np.minimum(1, tt / 0.02) * np.minimum(1, (tt[-1] - tt) / 0.06) * rng.uniform(0.6, 1.0)
        vowel_of[a:b] = vowel
        prev_hz, prev_end = hz, start + length
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = np.zeros(n)
    # The formant envelope is applied per block of 10 ms with the block's f0
    # and vowel (smoothed across 40 ms), so it follows glides and vowel changes.
    block = int(0.01 * sr)
    n_blocks = -(-n // block)
    smooth = np.ones(4) / 4
    for k in range(1, 40):
        gains = np.zeros(n_blocks)
        for v in range(len(_VOWELS)):
            f_k = k * f0[::block][:n_blocks]
            w = vowel_of[::block][:n_blocks] == v
            gains[w] = _formant_gain(f_k[w], v)
        gains = np.convolve(gains, smooth, mode="same")
        g = np.repeat(gains, block)[:n]
        x += g * (k * f0 < 0.45 * sr) * np.sin(k * phase + 0.3 * k)
    x *= env
    noise = signal.lfilter(*signal.butter(2, [500, 6000], "bandpass", fs=sr), rng.standard_normal(n))
    voiced = env > 0
    if voiced.any():
        noise *= np.sqrt(np.mean(x[voiced] ** 2) / np.mean(noise**2)) * 10 ** (-30 / 20)
        x += noise * np.maximum(env, 0.05)
    return _normalize(x), f0


STEMS4 = ("vocals", "drums", "bass", "other")


def separation_mix(
    seconds: float,
    sr: int = SR,
    seed: int = 0,
    channels: int = 2,
    bpm: float = 100.0,
    vocal_db: float = 0.0,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A mixture and its four true stems, as a separation model sees music.

    * drums: :func:`drum_pattern` (rock), panned slightly apart per seed;
    * bass: the chord roots in MIDI 36–47, 6 decaying partials, on beats 1
      and 3, centred;
    * other: triads (one per bar, MIDI 55–66, 10 partials), panned off
      centre (left or right by seed);
    * vocals: :func:`vocal_like`, centred, ``vocal_db`` dB (RMS) over the
      sum of the other three.

    Drums, bass and other are set to equal RMS. Returns
    ``(mixture, {"vocals", "drums", "bass", "other"})``, every array
    float32 of shape (frames, ``channels``) (1 or 2); the stems sum to the
    mixture (to float32 rounding), which peaks at 0.9.
    """
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    beat = 60.0 / bpm
    bar = 4 * beat
    tonic = int(rng.integers(12))
    chords = PROGRESSIONS[str(rng.choice(list(PROGRESSIONS)))]
    bass = np.zeros(n + sr, np.float64)
    other = np.zeros(n + sr, np.float64)

    def hz(midi: int) -> float:
        return 440.0 * 2 ** ((midi - 69) / 12)

    i = 0
    while i * bar < seconds:
        degree, quality = chords[i % len(chords)]
        root_pc = (tonic + degree) % 12
        start = int(round(i * bar * sr))
        for interval in _TRIAD[quality]:
            midi = 55 + (root_pc + interval - 55) % 12
            _place(other, _note(hz(midi), bar, sr, 10, midi), np.array([start]), rng.uniform(0.8, 1.0, 1))
        for b in (0, 2):
            s = start + int(round(b * beat * sr))
            tone = _note(hz(36 + root_pc), 2 * beat, sr, 6, 36 + root_pc)
            _place(bass, tone, np.array([s]), rng.uniform(0.85, 1.0, 1))
        i += 1
    drums = drum_pattern(bpm, seconds, sr, "rock", seed=seed).astype(np.float64)
    voice = vocal_like(seconds, sr, seed=seed, bpm=bpm)[0].astype(np.float64)

    def rms(v: np.ndarray) -> float:
        return float(np.sqrt(np.mean(v**2))) + 1e-12

    mono = {"drums": drums, "bass": bass[:n], "other": other[:n]}
    mono = {k: v / rms(v) for k, v in mono.items()}
    band = sum(mono.values())
    mono["vocals"] = voice * (rms(band) / rms(voice)) * 10 ** (vocal_db / 20)
    # Constant-power pan positions in [-1, 1] (left..right).
    side = 1.0 if rng.random() < 0.5 else -1.0
    pans = {"vocals": 0.0, "bass": 0.0, "drums": 0.15 * side, "other": -0.6 * side}
    stems = {}
    for name in STEMS4:
        v = mono[name]
        if channels == 1:
            stems[name] = v[:, None]
        else:
            theta = (pans[name] + 1) * np.pi / 4
            stems[name] = np.stack([v * np.cos(theta), v * np.sin(theta)], axis=1) * np.sqrt(2)
    mix = sum(stems.values())
    scale = 0.9 / float(np.max(np.abs(mix)))
    stems = {k: (v * scale).astype(np.float32) for k, v in stems.items()}
    mix32 = sum(stems[k].astype(np.float64) for k in STEMS4).astype(np.float32)
    return mix32, stems


def _pluck(freq: float, seconds: float, sr: int, seed: int) -> np.ndarray:
    """A plucked string (Karplus–Strong): a noise burst in a delay line of
    one period, averaged each round trip, so the partials decay from the top
    down, as a nylon or steel guitar's do."""
    rng = np.random.default_rng(seed)
    n, period = int(seconds * sr), max(2, int(round(sr / freq)))
    line = rng.uniform(-1, 1, period)
    out = np.empty(n)
    for i in range(n):
        j = i % period
        out[i] = line[j]
        line[j] = 0.996 * 0.5 * (line[j] + line[(j + 1) % period])
    return (out * np.minimum(1.0, (n - 1 - np.arange(n)) / (0.02 * sr))).astype(np.float32)


def _lead_note(freq: float, seconds: float, sr: int) -> np.ndarray:
    """A sustained reed-like lead tone: odd and even harmonics at 1/k, a 5 Hz
    vibrato of ±20 cents, 30 ms attack, 40 ms release."""
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(freq * 2 ** (0.2 / 12 * np.sin(2 * np.pi * 5.0 * t))) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 9) if k * freq < sr / 2 * 0.9)
    env = np.minimum(1.0, t / 0.03) * np.minimum(1.0, (t[-1] - t) / 0.04)
    return (x * env).astype(np.float32)


def band(
    key: str,
    mode: str,
    seconds: float,
    sr: int = SR,
    bpm: float = 100.0,
    seed: int = 0,
    progression: str | None = None,
    comping: str = "sustain",
    voicing: str = "close",
    lead_db: float | None = None,
    off_chord: float = 0.4,
) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """A band arrangement of a progression (one chord per 4-beat bar from
    t = 0) and its chord timeline ``[(start, end, "C#:maj"), ...]``.

    ``comping``: "sustain" (struck tones held through the bar), "arpeggio"
    (plucked strings, a broken chord in eighths, each string ringing on),
    "strum" (plucked strings, the chord on every beat, 15 ms between
    strings). ``voicing``: "close" (MIDI 55–66 as :func:`chord_progression`),
    "inversion" (a random inversion per bar between MIDI 52 and 76), "open"
    (root, fifth and the third an octave up, a tenth over the root). The
    bass alternates root and fifth on the beats (MIDI 36–54). With
    ``lead_db`` a lead line sounds ``lead_db`` dB (RMS) over the harmony:
    one note per beat or two per beat in MIDI 67–84, a share ``off_chord`` of
    them scale tones outside the bar's chord, strong beats included.
    """
    tonic = PITCH_CLASSES.index(key)
    if progression is None:
        progression = "I-IV-V-I" if mode == "major" else "i-iv-V-i"
    chords = PROGRESSIONS[progression]
    scale = (0, 2, 4, 5, 7, 9, 11) if mode == "major" else (0, 2, 3, 5, 7, 8, 10)
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    harmony = np.zeros(n + 4 * sr)
    bass_line = np.zeros(n + 4 * sr)
    lead = np.zeros(n + 4 * sr)
    beat = 60.0 / bpm
    bar = 4 * beat
    timeline = []

    def hz(midi: float) -> float:
        return 440.0 * 2 ** ((midi - 69) / 12)

    i = 0
    while i * bar < seconds:
        degree, quality = chords[i % len(chords)]
        root = (tonic + degree) % 12
        pcs = [(root + iv) % 12 for iv in _TRIAD[quality]]
        timeline.append((i * bar, min((i + 1) * bar, seconds), f"{PITCH_CLASSES[root]}:{quality}"))
        if voicing == "close":
            notes = [55 + (p - 55) % 12 for p in pcs]
        elif voicing == "inversion":
            low = 52 + int(rng.integers(12))
            notes = sorted(low + (p - low) % 12 for p in pcs)
        else:
            r = 48 + (root - 48) % 12
            notes = [r, r + _TRIAD[quality][2], r + 12 + _TRIAD[quality][1]]
        start = i * bar
        if comping == "sustain":
            for m in notes:
                _place(harmony, _note(hz(m), bar, sr, 10, m), np.array([int(start * sr)]), np.array([0.3]))
        elif comping == "arpeggio":
            order = [*notes, notes[1]]
            for e in range(8):
                m = order[e % len(order)]
                s = start + e * beat / 2
                tone = _pluck(hz(m), bar - e * beat / 2, sr, m + e)
                _place(harmony, tone, np.array([int(s * sr)]), np.array([0.35]))
        else:  # strum
            for b in range(4):
                for j, m in enumerate(notes if b % 2 == 0 else notes[::-1]):
                    s = start + b * beat + 0.015 * j
                    _place(harmony, _pluck(hz(m), beat, sr, m + b), np.array([int(s * sr)]), np.array([0.3]))
        for b in range(4):
            m = 36 + (root - 36) % 12 + (7 if b % 2 else 0)
            s = int((start + b * beat) * sr)
            _place(bass_line, _note(hz(m), beat, sr, 6, m), np.array([s]), np.array([0.45]))
        if lead_db is not None:
            pool = [m for m in range(67, 85) if (m - tonic) % 12 in scale]
            prev = pool[len(pool) // 2]
            b = 0.0
            while b < 4:
                length = 1.0 if rng.random() < 0.6 else 0.5
                inside = [m for m in pool if m % 12 in pcs]
                outside = [m for m in pool if m % 12 not in pcs]
                choice = outside if rng.random() < off_chord else inside
                m = min(choice, key=lambda x: abs(x - prev) + rng.uniform(0, 3))
                prev = m
                s = int((start + b * beat) * sr)
                _place(lead, _lead_note(hz(m), length * beat * 0.95, sr), np.array([s]), np.array([1.0]))
                b += length
        i += 1
    harmony, bass_line, lead = harmony[:n], bass_line[:n], lead[:n]
    out = harmony + bass_line
    if lead_db is not None:
        rms = lambda v: np.sqrt(np.mean(v**2)) + 1e-12  # noqa: E731
        out = out + lead * (10 ** (lead_db / 20) * rms(harmony) / rms(lead))
    return _normalize(out), timeline
