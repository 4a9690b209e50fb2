"""Note transcription (workers/dsp/transcription.py) on generated tones with
known notes, scored with mir_eval as the benchmark does."""

from __future__ import annotations

import io
import json
from pathlib import Path

import mir_eval
import numpy as np
import pretty_midi
import pytest
from audiogen import struck_tone as tone

from shared import operations
from shared.settings import model_dir_from_env
from workers.dsp import transcription
from workers.dsp.errors import OptionOutOfRange, UnprocessableAudio
from workers.dsp.transcription import NoteModel, Transcription

SR = 22050
# The model `audioq models fetch` put in the model folder (set-up runs it).
MODEL = Path(model_dir_from_env()) / operations.NOTE_MODEL


def render(notes: list[tuple[float, float, int]], seconds: float, sr: int = SR) -> np.ndarray:
    y = np.zeros(int(seconds * sr))
    for start, end, midi in notes:
        x = 0.25 * tone(midi, end - start, sr)
        s = int(round(start * sr))
        y[s : s + len(x)] += x[: len(y) - s]
    return y.astype(np.float32)


def melody(seed: int, seconds: float, low: int = 48, high: int = 80) -> list[tuple[float, float, int]]:
    rng = np.random.default_rng(seed)
    notes, t = [], 0.3
    while t < seconds - 0.6:
        d = float(rng.uniform(0.15, 0.5))
        notes.append((t, t + d, int(rng.integers(low, high + 1))))
        t += d + float(rng.uniform(0.03, 0.15))
    return notes


def chords(seed: int, seconds: float) -> list[tuple[float, float, int]]:
    """Triads and seventh chords, root 48-64, a new one every 0.5-0.8 s."""
    rng = np.random.default_rng(seed)
    shapes = [(0, 4, 7), (0, 3, 7), (0, 4, 7, 11), (0, 3, 7, 10), (0, 4, 7, 12)]
    notes, t = [], 0.3
    while t < seconds - 0.9:
        d = float(rng.uniform(0.5, 0.8))
        root = int(rng.integers(48, 65))
        notes += [(t, t + d, root + i) for i in shapes[int(rng.integers(len(shapes)))]]
        t += d + 0.05
    return notes


def onset_scores(ref: list[tuple[float, float, int]], tr: Transcription) -> tuple[float, float, float]:
    hz = lambda m: 440.0 * 2.0 ** ((np.asarray(m, float) - 69) / 12)  # noqa: E731
    ri = np.array([[s, e] for s, e, _ in ref]).reshape(-1, 2)
    ei = np.array([[n.start, n.end] for n in tr.notes]).reshape(-1, 2)
    p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ri,
        hz([m for *_, m in ref]),
        ei,
        hz([n.midi for n in tr.notes]),
        onset_tolerance=0.05,
        offset_ratio=None,
    )
    return p, r, f


@pytest.fixture(scope="module")
def model() -> NoteModel:
    return NoteModel.load(MODEL)


@pytest.fixture(scope="module")
def song() -> tuple[list[tuple[float, float, int]], np.ndarray]:
    notes = melody(1, 8.0)
    return notes, render(notes, 8.0)


@pytest.fixture(scope="module")
def song_transcribed(model, song) -> Transcription:
    return model.transcribe(song[1], SR)


def test_load_is_once_per_process(model):
    assert NoteModel.load(MODEL) is model
    assert model.name == "basic-pitch-icassp2022"


def test_monophonic_melody(song, song_transcribed):
    notes, _ = song
    p, r, f = onset_scores(notes, song_transcribed)
    assert f >= 0.9, (p, r, f)
    assert all(1 <= n.velocity <= 127 and n.end > n.start for n in song_transcribed.notes)


def test_any_sample_rate(model):
    notes = melody(2, 6.0)
    y = render(notes, 6.0, sr=44100)
    p, r, f = onset_scores(notes, model.transcribe(y, 44100))
    assert f >= 0.9, (p, r, f)


def test_chords(model):
    notes = chords(3, 8.0)
    p, r, f = onset_scores(notes, model.transcribe(render(notes, 8.0), SR))
    # Every chord tone is found; the extra notes are mostly octaves of
    # chord tones (F 0.87-0.96 over seeds 3, 7, 11).
    assert r >= 0.95 and f >= 0.8, (p, r, f)


def test_notes_to_the_end_of_a_long_input(model):
    # basic-pitch's own unwrapping drops the last 0.66 % of the input and
    # its frame times drift within each window; 16 s takes 10 windows.
    notes = [(t, t + 0.3, 60 + i % 12) for i, t in enumerate(np.arange(0.5, 15.5, 0.75))]
    calls: list[float] = []
    tr = model.transcribe(render(notes, 16.0), SR, progress=calls.append)
    p, r, f = onset_scores(notes, tr)
    assert f >= 0.95, (p, r, f)
    assert abs(tr.notes[-1].start - notes[-1][0]) < 0.03
    errors = [abs(n.start - s) for n, (s, _, m) in zip(tr.notes, notes, strict=False) if n.midi == m]
    assert np.median(errors) < 0.02
    assert calls == sorted(calls) and calls[-1] == 1.0 and len(calls) == 2  # 10 windows, 8 per batch


def test_pitch_range_limits(model, song, song_transcribed):
    notes, y = song
    tr = model.transcribe(y, SR, min_midi=60, max_midi=70)
    assert tr.notes
    assert all(60 <= n.midi <= 70 for n in tr.notes)
    inside = [n for n in notes if 60 <= n[2] <= 70]
    _, r, _ = onset_scores(inside, tr)
    assert r >= 0.9
    assert any(not 60 <= n.midi <= 70 for n in song_transcribed.notes)  # they were there before


def test_min_note_length(model, song, song_transcribed):
    _, y = song
    assert min(n.end - n.start for n in song_transcribed.notes) < 0.3
    tr = model.transcribe(y, SR, min_note_s=0.3)
    assert tr.notes
    assert all(n.end - n.start >= 0.3 - 1e-9 for n in tr.notes)


def test_thresholds_change_the_notes(model, song, song_transcribed):
    _, y = song
    strict = model.transcribe(y, SR, onset_threshold=0.95, frame_threshold=0.9)
    loose = model.transcribe(y, SR, onset_threshold=0.2, frame_threshold=0.1)
    assert len(strict.notes) < len(song_transcribed.notes) <= len(loose.notes)
    mean_len = lambda tr: np.mean([n.end - n.start for n in tr.notes])  # noqa: E731
    assert mean_len(loose) > mean_len(song_transcribed)


def test_silence_gives_no_notes(model):
    assert model.transcribe(np.zeros(SR, np.float32), SR).notes == []
    noise = (1e-4 * np.random.default_rng(0).standard_normal(2 * SR)).astype(np.float32)
    assert model.transcribe(noise, SR).notes == []


@pytest.mark.parametrize(
    "options",
    [
        {"onset_threshold": 0.0},
        {"onset_threshold": 1.0},
        {"frame_threshold": -0.1},
        {"frame_threshold": 1.5},
        {"min_midi": 20},
        {"max_midi": 109},
        {"min_midi": 70, "max_midi": 60},
        {"min_note_s": -0.01},
        {"min_note_s": 2.5},
    ],
)
def test_options_out_of_range(model, options):
    with pytest.raises(OptionOutOfRange):
        model.transcribe(np.zeros(SR, np.float32), SR, **options)


def test_unusable_audio(model):
    with pytest.raises(UnprocessableAudio) as e:
        model.transcribe(np.zeros(int(0.05 * SR), np.float32), SR)
    assert "too short" in e.value.message
    y = np.zeros(SR, np.float32)
    y[100] = np.nan
    with pytest.raises(UnprocessableAudio) as e:
        model.transcribe(y, SR)
    with pytest.raises(ValueError):
        model.transcribe(np.zeros((SR, 2), np.float32), SR)


def test_to_dict_and_midi_round_trip(song_transcribed):
    d = song_transcribed.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert len(d["notes"]) == len(song_transcribed.notes)
    for n in d["notes"]:
        assert set(n) == {"start", "end", "midi", "velocity"}
        assert n["start"] == round(n["start"], 3) and n["end"] == round(n["end"], 3)

    pm = pretty_midi.PrettyMIDI(io.BytesIO(song_transcribed.to_midi()))
    assert len(pm.instruments) == 1 and pm.instruments[0].program == 0 and not pm.instruments[0].is_drum
    times, tempi = pm.get_tempo_changes()
    assert list(tempi) == pytest.approx([120.0])
    back = sorted((round(n.start, 3), round(n.end, 3), n.pitch, n.velocity) for n in pm.instruments[0].notes)
    want = sorted((n["start"], n["end"], n["midi"], n["velocity"]) for n in d["notes"])
    assert back == want


def test_decoder_matches_basic_pitch(model, song):
    # The linear-time decoder gives basic-pitch's own notes, on real activations.
    from basic_pitch.note_creation import output_to_notes_polyphonic

    y = np.concatenate([song[1], render(chords(4, 6.0), 6.0)])
    note, onset = model.activations(y)
    for onset_t, frame_t, min_len in ((0.5, 0.3, 4), (0.3, 0.15, 0), (0.7, 0.5, 11)):
        want = output_to_notes_polyphonic(
            note.astype(np.float64),
            onset.astype(np.float64),
            onset_t,
            frame_t,
            min_len,
            True,
            None,
            None,
            True,
        )
        got = transcription.decode_notes(note, onset, onset_t, frame_t, min_len)
        assert len(want) > 10
        assert [(int(s), int(e), int(k) + 21) for s, e, k, _ in zip(*got, strict=True)] == [
            w[:3] for w in want
        ]
        assert np.allclose(got[3], [w[3] for w in want])
