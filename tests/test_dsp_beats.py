"""Beat and downbeat tracking on generated songs with known beats and bars.

Scored like mir_eval's beat F-measure: an estimate within ±70 ms of a true
beat is a hit, each true and each estimated beat counts at most once, and
F = 2PR / (P + R). No beats are skipped at the start (mir_eval's evaluate()
ignores the first 5 s; this is stricter). ``pytest -s`` prints the table.
"""

from __future__ import annotations

import numpy as np
import pytest
import synth

from workers.dsp import beatnet
from workers.dsp.beats import NO_BEATS, BeatGrid, _balanced_accent, _track, track_beats, warmup
from workers.dsp.features import ANALYSIS_SR
from workers.dsp.tempo import estimate_tempo, onset_bands

WINDOW_SECONDS = 0.07
SECONDS = 30.0

# song() keyword arguments. 60-180 BPM, non-integer tempi, 3/4 and 4/4,
# pickups of 1-3 beats (the first beat is not a downbeat), swing, silence
# before the music, the other 4/4 drum patterns and progressions.
CASES: list[dict] = [
    {"bpm": 60.0},
    {"bpm": 75.0, "meter": 3},
    {"bpm": 90.0, "key": "E", "mode": "minor"},
    {"bpm": 97.5},
    {"bpm": 97.5, "meter": 3, "pickup_beats": 1, "key": "D"},
    {"bpm": 110.0, "meter": 3, "pickup_beats": 2},
    {"bpm": 123.4, "pickup_beats": 1},
    {"bpm": 123.4, "meter": 3, "key": "A#"},
    {"bpm": 100.0, "pattern": "syncopated", "pickup_beats": 3},
    {"bpm": 128.0, "pattern": "four_on_floor", "progression": "i-VI-III-VII", "mode": "minor"},
    {"bpm": 140.0, "swing": 1.0},
    {"bpm": 132.0, "meter": 3, "swing": 0.6},
    {"bpm": 85.0, "lead_in": 1.3, "key": "F#", "mode": "minor"},
    {"bpm": 70.0, "meter": 3, "progression": "I-V-vi-IV"},
    {"bpm": 160.0, "meter": 3},
    {"bpm": 180.0, "pickup_beats": 2},
]


def f_measure(estimated: list[float], reference: list[float], window: float = WINDOW_SECONDS) -> float:
    """Beat F-measure with a ±``window`` s tolerance. Pairs are matched
    closest first; with beats further apart than twice the window this is
    the maximum matching mir_eval computes."""
    if not estimated or not reference:
        return 0.0
    est, ref = np.asarray(estimated), np.asarray(reference)
    d = np.abs(est[:, None] - ref[None, :])
    pairs = np.argwhere(d <= window)
    pairs = pairs[np.argsort(d[pairs[:, 0], pairs[:, 1]], kind="stable")]
    used_e, used_r, hits = set(), set(), 0
    for e, r in pairs:
        if e not in used_e and r not in used_r:
            used_e.add(e)
            used_r.add(r)
            hits += 1
    if hits == 0:
        return 0.0
    precision, recall = hits / len(est), hits / len(ref)
    return 2 * precision * recall / (precision + recall)


def _case_id(case: dict) -> str:
    return "-".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in case.items())


@pytest.fixture(scope="module")
def results() -> list[tuple[dict, np.ndarray, list[float], list[float], BeatGrid]]:
    warmup()
    out = []
    for seed, case in enumerate(CASES):
        y, beats, downbeats = synth.song(seconds=SECONDS, sr=ANALYSIS_SR, seed=seed, **case)
        out.append((case, y, beats, downbeats, track_beats(y, ANALYSIS_SR)))
    return out


@pytest.mark.parametrize("index", range(len(CASES)), ids=[_case_id(c) for c in CASES])
def test_beats_downbeats_and_meter(results, index):
    case, y, beats, downbeats, grid = results[index]
    assert f_measure(grid.beats, beats) >= 0.9, case
    assert f_measure(grid.downbeats, downbeats) >= 0.8, case
    assert grid.time_signature == f"{case.get('meter', 4)}/4"
    assert set(grid.downbeats) <= set(grid.beats)
    assert grid.beats == sorted(grid.beats)
    assert all(round(t, 3) == t for t in grid.beats)
    assert grid.tempo == estimate_tempo(y, ANALYSIS_SR).tempo


def test_summary(results):
    rows, fb, fd, meters = [], [], [], []
    for case, _, beats, downbeats, grid in results:
        fb.append(f_measure(grid.beats, beats))
        fd.append(f_measure(grid.downbeats, downbeats))
        meters.append(grid.time_signature == f"{case.get('meter', 4)}/4")
        rows.append(
            f"  {_case_id(case):66s} {grid.tempo:7.2f} {grid.time_signature} {fb[-1]:6.3f} {fd[-1]:6.3f}"
        )
    print("\nbeats: case, tempo, meter, beat F, downbeat F")
    print("\n".join(rows))
    print(f"mean beat F {np.mean(fb):.3f}, mean downbeat F {np.mean(fd):.3f}")
    print(f"time signature right: {sum(meters)}/{len(meters)}")
    assert np.mean(fb) >= 0.95
    assert np.mean(fd) >= 0.9


def test_slow_tempo_drift_is_followed():
    # The period shrinks by 8 % over the minute (~96 to ~104 BPM): a grid at
    # the one global tempo would be a quarter beat off at both ends.
    y, beats, downbeats = synth.song(100.0, 60.0, sr=ANALYSIS_SR, seed=21, drift=0.08)
    grid = track_beats(y, ANALYSIS_SR)
    assert f_measure(grid.beats, beats) >= 0.95
    assert f_measure(grid.downbeats, downbeats) >= 0.9


def test_pickup_moves_the_downbeats_not_the_grid():
    # Same song with and without a one-beat pickup: the downbeats follow the
    # bar lines, so they are not simply every 4th beat from the first.
    y0, _, down0 = synth.song(110.0, 20.0, sr=ANALYSIS_SR, seed=22, lead_in=0.5)
    y1, beats1, down1 = synth.song(110.0, 20.0, sr=ANALYSIS_SR, seed=22, lead_in=0.5, pickup_beats=1)
    g0, g1 = track_beats(y0, ANALYSIS_SR), track_beats(y1, ANALYSIS_SR)
    assert f_measure(g0.downbeats, down0) >= 0.9
    assert f_measure(g1.downbeats, down1) >= 0.9
    assert abs(g1.beats[0] - beats1[0]) < WINDOW_SECONDS
    assert g1.downbeats[0] == g1.beats[1]


def test_no_beats_in_silence_before_or_after_the_music():
    y, beats, downbeats = synth.song(97.5, 20.0, sr=ANALYSIS_SR, seed=24, lead_in=2.0)
    y = np.concatenate([y, np.zeros(10 * ANALYSIS_SR, np.float32)])
    grid = track_beats(y, ANALYSIS_SR)
    assert beats[0] - WINDOW_SECONDS <= grid.beats[0]
    assert grid.beats[-1] <= 20.0 + WINDOW_SECONDS
    assert f_measure(grid.beats, beats) >= 0.95
    assert f_measure(grid.downbeats, downbeats) >= 0.9


def test_silence_and_short_input_give_an_empty_grid():
    rng = np.random.default_rng(0)
    assert track_beats(np.zeros(10 * ANALYSIS_SR, np.float32), ANALYSIS_SR) == NO_BEATS
    assert track_beats(np.zeros(0, np.float32), ANALYSIS_SR) == NO_BEATS
    noise = (0.1 * rng.standard_normal(ANALYSIS_SR)).astype(np.float32)
    assert track_beats(noise, ANALYSIS_SR) == NO_BEATS
    y, _, _ = synth.song(120.0, 2.0, sr=ANALYSIS_SR)
    assert track_beats(y, ANALYSIS_SR) == NO_BEATS


def test_twenty_minute_input():
    # 64 s = 32 bars at 120 BPM = exactly 2 822 400 samples, so tiling keeps
    # the grid exact and the I-IV-V-I cycle whole.
    y, _, _ = synth.song(120.0, 64.0, sr=ANALYSIS_SR, seed=23)
    y = np.tile(y, 19)[: 20 * 60 * ANALYSIS_SR]
    beats = list(np.arange(0.0, 20 * 60 - 0.05, 0.5))
    grid = track_beats(y, ANALYSIS_SR)
    assert grid.tempo == pytest.approx(120.0, abs=0.05)
    assert grid.time_signature == "4/4"
    assert f_measure(grid.beats, beats) >= 0.99
    assert f_measure(grid.downbeats, beats[::4]) >= 0.99


def test_to_dict():
    grid = BeatGrid(120.0, "3/4", [0.5, 1.0, 1.5, 2.0], [0.5, 2.0])
    assert grid.to_dict() == {
        "tempo": 120.0,
        "time_signature": "3/4",
        "beats": [0.5, 1.0, 1.5, 2.0],
        "downbeats": [0.5, 2.0],
    }
    assert NO_BEATS.to_dict() == {"tempo": 0.0, "time_signature": "4/4", "beats": [], "downbeats": []}


def test_song_truth_is_consistent_and_deterministic():
    y, beats, downbeats = synth.song(97.5, 10.0, meter=3, pickup_beats=2, seed=5, lead_in=0.5)
    again, _, _ = synth.song(97.5, 10.0, meter=3, pickup_beats=2, seed=5, lead_in=0.5)
    assert y.dtype == np.float32 and len(y) == 10 * synth.SR and np.max(np.abs(y)) <= 1.0
    assert np.array_equal(y, again)
    assert beats[0] == 0.5 and np.allclose(np.diff(beats), 60 / 97.5)
    assert downbeats == beats[2::3]
    assert np.max(np.abs(y[: int(0.49 * synth.SR)])) == 0.0  # silent lead-in


def test_f_measure():
    ref = [1.0, 2.0, 3.0, 4.0]
    assert f_measure(ref, ref) == 1.0
    assert f_measure([1.06, 2.0, 3.08], ref) == pytest.approx(2 * (2 / 3) * (2 / 4) / (2 / 3 + 2 / 4))
    assert f_measure([], ref) == 0.0
    # One estimate cannot hit two references.
    assert f_measure([1.5], [1.45, 1.55]) == pytest.approx(2 * 1 * 0.5 / 1.5)


@pytest.mark.parametrize("bpm", [80.0, 95.0])
def test_swung_off_beat_comping_does_not_pull_the_beats_off(bpm):
    """Chords on every swung off-beat, louder than a sparse kit and a bass
    on 1 and 3 (synth.offbeat_comping): the loudest periodic onsets are a
    swung eighth after the beat. Following the band-balanced onset accent
    alone (the tracker before the beat-activation network), at the same
    tempo, puts every beat on the comping; the tracker must stay on the
    beat."""
    y, truth = synth.offbeat_comping(bpm, SECONDS, ANALYSIS_SR, seed=int(bpm), swing=1.0)
    grid = track_beats(y, ANALYSIS_SR)
    assert f_measure(grid.beats, truth) >= 0.9, grid.tempo

    # The material is what the test says it is: a naive tracker fails on it.
    bands, fps = onset_bands(y, ANALYSIS_SR)
    naive = _track(_balanced_accent(bands), 60.0 * fps / grid.tempo) / fps
    assert f_measure(list(naive), truth) < 0.2


def test_beat_activation_peaks_on_the_beats_not_the_comping():
    """The network's probability is higher on the beats than on the
    off-beat chord hits, though these are the louder onsets."""
    y, truth = synth.offbeat_comping(110.0, SECONDS, ANALYSIS_SR, seed=3, swing=0.0, comp_db=6.0)
    bands, fps = onset_bands(y, ANALYSIS_SR)
    act = beatnet.activation(bands)
    assert act.shape == (bands.shape[1],) and np.all((act >= 0) & (act <= 1))
    beat = 60.0 / 110.0

    def peak(times: np.ndarray) -> float:
        return float(np.median([act[max(0, int(t * fps) - 3) : int(t * fps) + 4].max() for t in times]))

    on = np.array(truth[2:-2])
    assert peak(on) > 2 * peak(on + beat / 2)
