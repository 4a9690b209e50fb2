"""Pitch-class names: conventional spelling of keys and chord roots, and
the Camelot wheel.

Keys are spelled as musicians write them — the spelling with the fewer
accidentals in its signature, and the usual choice where both have six
(F# major, Eb minor): C, Db, D, Eb, E, F, F#, G, Ab, A, Bb, B major; C, C#,
D, Eb, E, F, F#, G, G#, A, Bb, B minor. Chord roots follow the key they are
heard in: a black-key root is spelled with a flat in a key whose signature
has flats (F major, Bb major, ..., D minor, G minor, ...) and with a sharp
in a key with sharps; in C major / A minor, or with no key, by the usual
choice of pop and jazz lead sheets (C#, Eb, F#, Ab, Bb).
"""

from __future__ import annotations

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")  # sharps: indexes
SHARPS = PITCH_CLASSES
FLATS = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
MAJOR_TONICS = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MINOR_TONICS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")
NEUTRAL_ROOTS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_NAMES = {name: i for names in (SHARPS, FLATS) for i, name in enumerate(names)}


def pc_of(name: str) -> int:
    """Pitch class (C = 0) of a name with sharps or flats ("A#", "Bb")."""
    return _NAMES[name]


def key_tonic(pc: int, mode: str) -> str:
    """Conventional name of the tonic of a key (module docstring)."""
    return (MAJOR_TONICS if mode == "major" else MINOR_TONICS)[pc % 12]


def signature(pc: int, mode: str) -> int:
    """Accidentals in the key signature: > 0 sharps, < 0 flats, as spelled
    by :func:`key_tonic` (C major 0, F major -1, F# major +6, Eb minor -6)."""
    major_pc = pc if mode == "major" else (pc + 3) % 12
    fifths = (7 * major_pc) % 12  # steps clockwise from C on the circle of fifths
    tonic = key_tonic(pc, mode)
    if fifths > 6 or (fifths == 6 and "b" in tonic):
        return fifths - 12
    return fifths


def chord_root(pc: int, key_pc: int | None = None, mode: str = "major") -> str:
    """Name of a chord root heard in the given key (module docstring)."""
    if key_pc is None:
        return NEUTRAL_ROOTS[pc % 12]
    sig = signature(key_pc, mode)
    if sig < 0:
        return FLATS[pc % 12]
    if sig > 0:
        return SHARPS[pc % 12]
    return NEUTRAL_ROOTS[pc % 12]


def camelot(pc: int, mode: str) -> str:
    """Camelot wheel code: C major = 8B, A minor = 8A; one step clockwise is
    a fifth up (G major = 9B). Relative keys share the number."""
    major_pc = pc if mode == "major" else (pc + 3) % 12
    number = (7 * major_pc + 8) % 12 or 12
    return f"{number}{'B' if mode == 'major' else 'A'}"
