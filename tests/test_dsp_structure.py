"""Song sections on generated songs with a known form.

The songs are tests/synth.py material: each section is ``synth.song`` with
its own key, chord progression and drum pattern, 8 bars at 120 BPM (16 s),
concatenated on bar lines, so the true boundaries are every 16 s and the
true downbeats every 2 s. Scored with mir_eval's boundary hit rate
(``segment.detection``, trim=True: 0 and the end are not counted).

Asserted: A-B-A and A-B-A-B-C-B find every boundary within ±0.5 s and no
extra one, with the true downbeats and with the beats workers.dsp.beats
tracks; the A's share a letter different from the B's (primes folded);
sections cover [0, duration] contiguously with every inner boundary on a
downbeat; no downbeats (fixed windows) still finds the boundaries within
±3 s; a double-time grid is paired back into the real bars (and real short
bars are not); short, silent audio and one repeated section give one section;
empty and non-finite audio are refused with a 422.
"""

from __future__ import annotations

import mir_eval
import numpy as np
import pytest
import synth

from workers.dsp.beats import track_beats
from workers.dsp.errors import UnprocessableAudio
from workers.dsp.features import ANALYSIS_SR
from workers.dsp.structure import (
    Section,
    Structure,
    bar_edges,
    find_sections,
    frame_features,
    pair_short_bars,
)

SR = ANALYSIS_SR
BPM = 120.0
BAR = 240.0 / BPM
BARS = 8  # per section
# Each letter: a key, progression and drum pattern of its own.
PARTS = {
    "A": {"key": "C", "mode": "major", "progression": "I-IV-V-I", "pattern": "rock"},
    "B": {"key": "A", "mode": "minor", "progression": "i-VI-VII-i", "pattern": "four_on_floor"},
    "C": {"key": "F", "mode": "major", "progression": "I-V-vi-IV", "pattern": "syncopated"},
}


def build(form: str, seed: int = 0, bpm: float = BPM) -> tuple[np.ndarray, list[float], np.ndarray]:
    """Audio of ``form`` (one letter per section), its downbeats (s) and
    the true section intervals (s)."""
    parts, downbeats, t0 = [], [], 0.0
    bar = 240.0 / bpm
    for i, name in enumerate(form):
        y, _, db = synth.song(bpm, BARS * bar, seed=seed + i, **PARTS[name])
        parts.append(y)
        downbeats += [t0 + d for d in db]
        t0 += len(y) / SR
    edges = BARS * bar * np.arange(len(form) + 1)
    return np.concatenate(parts), downbeats, np.stack([edges[:-1], edges[1:]], axis=1)


@pytest.fixture(scope="module")
def songs() -> dict[str, tuple[np.ndarray, list[float], np.ndarray]]:
    return {form: build(form) for form in ("ABA", "ABABCB")}


def intervals(s: Structure) -> np.ndarray:
    return np.array([[x.start, x.end] for x in s.sections])


def hit_rate(ref: np.ndarray, s: Structure, window: float) -> tuple[float, float]:
    """(precision, recall) of the inner boundaries within ``window`` s."""
    p, r, _ = mir_eval.segment.detection(ref, intervals(s), window=window, trim=True)
    return p, r


def assert_well_formed(s: Structure, duration: float, downbeats: list[float] | None = None) -> None:
    assert s.sections and s.sections[0].start == 0.0
    assert s.sections[-1].end == pytest.approx(duration, abs=1e-3)
    for a, b in zip(s.sections[:-1], s.sections[1:], strict=True):
        assert a.end == b.start and a.end > a.start
    if downbeats:
        for x in s.sections[1:]:
            assert np.min(np.abs(np.asarray(downbeats) - x.start)) < 1e-3


def assert_grouping(s: Structure, form: str) -> None:
    """Sections match the form one to one and repeats share a letter
    (primes folded), different letters differ."""
    labels = [x.label.rstrip("'") for x in s.sections]
    assert len(labels) == len(form)
    for i in range(len(form)):
        for j in range(len(form)):
            assert (labels[i] == labels[j]) == (form[i] == form[j]), (labels, form)


@pytest.mark.parametrize("form", ["ABA", "ABABCB"])
def test_known_form_with_true_downbeats(songs, form):
    y, downbeats, ref = songs[form]
    s = find_sections(y, SR, [], downbeats)
    assert_well_formed(s, len(y) / SR, downbeats)
    assert hit_rate(ref, s, 0.5) == (1.0, 1.0)
    assert_grouping(s, form)
    assert s.sections[0].label == "A"  # letters in order of first appearance


def test_known_form_with_tracked_beats(songs):
    y, _, ref = songs["ABABCB"]
    grid = track_beats(y, SR)
    s = find_sections(y, SR, grid.beats, grid.downbeats)
    assert_well_formed(s, len(y) / SR, grid.downbeats)
    assert hit_rate(ref, s, 0.5) == (1.0, 1.0)
    assert_grouping(s, "ABABCB")


def test_without_beats_falls_back_to_fixed_windows(songs):
    y, _, ref = songs["ABA"]
    s = find_sections(y, SR, [], [])
    assert_well_formed(s, len(y) / SR)
    assert hit_rate(ref, s, 3.0) == (1.0, 1.0)
    assert_grouping(s, "ABA")


def test_beats_without_downbeats_use_every_fourth_beat(songs):
    y, downbeats, ref = songs["ABA"]
    beats = list(np.arange(0.0, len(y) / SR - 0.05, BAR / 4))
    s = find_sections(y, SR, beats, [])
    assert_well_formed(s, len(y) / SR, beats[::4])
    assert hit_rate(ref, s, 0.5) == (1.0, 1.0)


@pytest.mark.parametrize("bpm", [BPM, 90.0])
def test_double_time_grid_still_finds_the_bar_lines(songs, bpm):
    # A beat tracker at twice the tempo reports bars of half the length
    # (1 s at 120 BPM: too short to be bars; 1.33 s at 90 BPM: plausible,
    # but the chords change on every other line only); they are paired
    # back into real bars.
    y, downbeats, ref = songs["ABA"] if bpm == BPM else build("ABA", bpm=bpm)
    halves = sorted(downbeats + [d + 120.0 / bpm for d in downbeats])
    s = find_sections(y, SR, [], halves)
    assert hit_rate(ref, s, 0.5) == (1.0, 1.0)
    assert_grouping(s, "ABA")
    paired = pair_short_bars(bar_edges([], halves, len(y) / SR), frame_features(y, SR))
    np.testing.assert_allclose(paired[1:-1], downbeats[1:], atol=1e-9)


def test_real_bars_with_a_chord_each_are_not_paired():
    # 3/4 at 140 BPM: 1.29 s bars, one chord per bar.
    y, _, downbeats = synth.song(140.0, 30.0, meter=3, progression="I-V-vi-IV")
    edges = bar_edges([], downbeats, len(y) / SR)
    np.testing.assert_array_equal(pair_short_bars(edges, frame_features(y, SR)), edges)


def test_one_repeated_section_is_one_section():
    y, downbeats, _ = build("AAA")
    s = find_sections(y, SR, [], downbeats)
    assert [x.label for x in s.sections] == ["A"]
    assert_well_formed(s, len(y) / SR)


def test_partial_bars_at_the_ends_join_the_first_and_last_sections(songs):
    y, downbeats, ref = songs["ABA"]
    lead = np.zeros(int(0.7 * SR), np.float32)  # under half a bar of silence first
    y2 = np.concatenate([lead, y, np.zeros(int(1.5 * SR), np.float32)])  # over half a bar after
    shifted = [d + 0.7 for d in downbeats]
    s = find_sections(y2, SR, [], shifted)
    assert_well_formed(s, len(y2) / SR, shifted)
    assert hit_rate(ref + 0.7, s, 0.5) == (1.0, 1.0)


@pytest.mark.parametrize("seconds", [0.5, 5.0, 12.0])
def test_short_audio_is_one_section(seconds):
    y, _, downbeats = synth.song(BPM, seconds)
    s = find_sections(y, SR, [], downbeats)
    assert s.to_dict() == {"sections": [{"start": 0.0, "end": round(len(y) / SR, 3), "label": "A"}]}


def test_silence_is_one_section():
    y = np.zeros(60 * SR, np.float32)
    assert find_sections(y, SR, [], []).sections == [Section(0.0, 60.0, "A")]


def test_to_dict_is_plain_json(songs):
    y, downbeats, _ = songs["ABA"]
    d = find_sections(y, SR, [], downbeats).to_dict()
    assert list(d) == ["sections"]
    for x in d["sections"]:
        assert set(x) == {"start", "end", "label"}
        assert type(x["start"]) is float and type(x["end"]) is float and type(x["label"]) is str
        assert round(x["start"], 3) == x["start"]


@pytest.mark.parametrize(
    "y", [np.zeros(0, np.float32), np.array([0.0, np.nan, 0.1] * 1000, np.float32)], ids=["empty", "nan"]
)
def test_unprocessable_audio_is_refused(y):
    with pytest.raises(UnprocessableAudio):
        find_sections(y, SR, [], [])
