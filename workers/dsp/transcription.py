"""Polyphonic note transcription with Spotify's Basic Pitch model (ONNX).

Model: Basic Pitch (Bittner, Bosch, Rubinstein, Meseguer-Brocal & Ewert,
"A lightweight instrument-agnostic model for polyphonic note transcription
and multipitch estimation", ICASSP 2022), the ``icassp_2022`` checkpoint
``nmp.onnx`` (230 kB) of the ``basic-pitch`` wheel (Apache-2.0), copied into
the model folder by ``audioq models fetch``, run by
onnxruntime on the CPU. The two small helpers of basic-pitch's inference
code we need are ported below (:func:`_windows`, :func:`_inferred_onsets`).
Its input is 22.05 kHz mono in windows of 43 844 samples (2 s less one
hop); for every 256-sample hop (11.6 ms, 86.13 frames/s) it outputs,
for the 88 piano keys (MIDI 21–108), a note ("frame") activation and an onset activation in [0, 1] (and a
3-bins-per-semitone contour, unused here: we report no pitch bends).

Windowing, as ``basic_pitch.inference.run_inference`` does it: the signal is
preceded by 15 hops of silence and cut into windows every 36 164 samples
(window length less 30 hops), the last one zero-padded
(``basic_pitch.inference.window_audio_file``); of each window's 172 output
frames the first and last 15 are dropped, overlap the model sees only on one
side. Frame ``j`` of the kept 142 of window ``w`` is then centred on input
sample ``w · 36164 + j · 256``. We give each frame that exact time instead of
basic-pitch's ``unwrap_output`` + ``model_frames_to_time``: those assume a
uniform frame rate and correct the 0.73 frame per window that the windows
overlap beyond their 142 frames with a step every 172 frames (and a
0.0018 s "magic" offset), so their onsets wander by up to ±5 ms within each
2 s; they also cut the output at ``floor(n · 86 / 22050)`` frames, which
drops the last 0.66 % of the audio (0.4 s of a minute, 4 s of ten).
The ~1 duplicated frame per window does not matter to the decoding below
(one frame of 11.6 ms), but its time stays right.

Decoding to notes is basic-pitch's own
(``basic_pitch.note_creation.output_to_notes_polyphonic``, the decoder of
``predict``): onsets are the local maxima in time of the onset activation
(taken together with large rises of the note activation, ``infer_onsets``)
above ``onset_threshold``; each extends while the note activation at its
key stays above ``frame_threshold`` (gaps shorter than 11 frames bridged);
then the "Melodia trick" adds notes that have no onset from the strongest
remaining note activation. :func:`decode_notes` gives the same notes as
basic-pitch's function (the tests compare them) in linear time: basic-pitch
takes an argmax over the whole activation matrix for every Melodia note,
which is quadratic in the length (7.5 s for 5 minutes of dense organ
chords, ~30 s for ten; ours 0.03 s per 20 s, ~1.6 s for eleven minutes on
a busy 2-core box). Keys outside ``[min_midi, max_midi]`` are zeroed
before decoding, so no note there is reported at all. Notes shorter than
``min_note_s`` are dropped. ``velocity`` is round(127 × mean note
activation over the note), at least 1.

One addition: the model normalises the level of each window, so it finds
"notes" in a noise floor 80 dB down (white noise at -80 dBFS: 13 notes in
2 s). Notes over whose span the input's RMS (re 1.0) is below
``SILENCE_DBFS`` (-60 dB) are dropped; digital silence skips the model.

Units: ``start``/``end`` in seconds from the start of the input, ``midi``
the MIDI key number (60 = C4), ``velocity`` 1–127.

Option ranges (what :meth:`NoteModel.transcribe` accepts; an API should
enforce the same bounds, constants below):

* ``onset_threshold`` in (0, 1), default 0.5 (basic-pitch's). Lower finds
  more soft or fast repeated notes and more false ones; 0.3–0.7 is the
  useful range.
* ``frame_threshold`` in (0, 1), default 0.3 (basic-pitch's). Lower makes
  notes longer and adds faint notes; 0.1–0.5 is useful.
* ``min_midi``/``max_midi`` in [21, 108] (A0–C8, the model's range),
  ``min_midi <= max_midi``.
* ``min_note_s`` in [0, 2] s, default 0.058 s (5 frames; basic-pitch's
  command line defaults to 0.128 s). 0.03–0.2 s is useful; longer drops
  fast passages.

Cost: the model is ~25 ms per 1.64 s window on an idle box; measured by
bench/transcription.py on a busy 2-core box, 1.6 s of CPU (2.0 s wall) per
minute of audio, about 10 % of it decoding. A 9.3-minute input took 14–18 s
wall on a busy 2-core box (14 s of CPU).

Memory grows with the length: the activations are kept for the whole input
and basic-pitch's ``get_infered_onsets`` makes several float64 copies of
them; the measured peak (tracemalloc) is ~37 MB per minute of audio beyond
the input itself (346 MB for 9.3 minutes), in the decoding step.
"""

from __future__ import annotations

import io
import itertools
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
import soxr
from scipy import signal

from workers.dsp.errors import OptionOutOfRange, UnprocessableAudio

MODEL_SR = 22050  # basic_pitch.constants.AUDIO_SAMPLE_RATE
HOP = 256  # basic_pitch.constants.FFT_HOP
FRAME_RATE = MODEL_SR / HOP  # 86.13 frames/s
WINDOW = 2 * MODEL_SR - HOP  # 43 844 samples: basic_pitch.constants.AUDIO_N_SAMPLES
WINDOW_FRAMES = 172  # model output frames per window
OVERLAP_FRAMES = 30  # as basic_pitch.inference.run_inference
WINDOW_STEP = WINDOW - OVERLAP_FRAMES * HOP  # 36 164 samples between windows
KEPT_FRAMES = WINDOW_FRAMES - OVERLAP_FRAMES  # 142 frames kept per window
MIDI_OFFSET = 21  # output bin 0 is A0
N_KEYS = 88
ENERGY_TOL = 11  # frames below frame_threshold that end a note (basic-pitch's energy_tol)
BATCH_WINDOWS = 8  # windows per onnxruntime call (13 s of audio); progress is reported per batch

SILENCE_DBFS = -60.0  # notes over which the input RMS (re 1.0) is lower are dropped
MIN_SECONDS = 0.1  # shorter input is refused: fewer than 9 frames, not enough for an onset and a note
THRESHOLD_BOUNDS = (0.0, 1.0)  # open interval, for onset_threshold and frame_threshold
MIDI_BOUNDS = (21, 108)  # closed interval, for min_midi and max_midi (min_midi <= max_midi)
MIN_NOTE_BOUNDS = (0.0, 2.0)  # closed interval, seconds, for min_note_s

_ONNX_INPUT = "serving_default_input_2:0"
_ONNX_NOTE = "StatefulPartitionedCall:1"  # names as basic_pitch.inference.Model.predict maps them
_ONNX_ONSET = "StatefulPartitionedCall:2"


@dataclass
class Note:
    """One note: ``start``/``end`` in seconds, ``midi`` key number, ``velocity`` 1–127."""

    start: float
    end: float
    midi: int
    velocity: int


@dataclass
class Transcription:
    """Notes sorted by start time, then pitch."""

    notes: list[Note]

    def to_dict(self) -> dict:
        return {
            "notes": [
                {"start": round(n.start, 3), "end": round(n.end, 3), "midi": n.midi, "velocity": n.velocity}
                for n in self.notes
            ]
        }

    def to_midi(self) -> bytes:
        """A Standard MIDI File (format 1): one Acoustic Grand Piano track at
        120 BPM. 1000 ticks per quarter note make a tick exactly 0.5 ms, so
        the millisecond times of :meth:`to_dict` are stored exactly."""
        import pretty_midi

        pm = pretty_midi.PrettyMIDI(resolution=1000, initial_tempo=120.0)
        piano = pretty_midi.Instrument(program=0, name="Piano")
        for n in self.to_dict()["notes"]:
            piano.notes.append(pretty_midi.Note(n["velocity"], n["midi"], n["start"], n["end"]))
        pm.instruments.append(piano)
        buf = io.BytesIO()
        pm.write(buf)
        return buf.getvalue()


def _windows(padded: np.ndarray) -> Iterator[np.ndarray]:
    """Windows of ``WINDOW`` samples every ``WINDOW_STEP``, the last one
    zero-padded, shaped (WINDOW, 1) for the network. A port of
    ``basic_pitch.inference.window_audio_file`` (Apache-2.0, Spotify AB)."""
    for i in range(0, len(padded), WINDOW_STEP):
        window = padded[i : i + WINDOW]
        if len(window) < WINDOW:
            window = np.pad(window, (0, WINDOW - len(window)))
        yield window[:, None]


def _inferred_onsets(onset: np.ndarray, note: np.ndarray, n_diff: int = 2) -> np.ndarray:
    """Onsets where the note activation rises sharply, rescaled to the onset
    activation's maximum, combined (max) with the onset activation. A port of
    ``basic_pitch.note_creation.get_infered_onsets`` (Apache-2.0, Spotify AB)."""
    diffs = []
    for n in range(1, n_diff + 1):
        shifted = np.concatenate([np.zeros((n, note.shape[1])), note])
        diffs.append(shifted[n:, :] - shifted[:-n, :])
    rise = np.min(diffs, axis=0)
    rise[rise < 0] = 0
    rise[:n_diff, :] = 0
    rise = np.max(onset) * rise / np.max(rise)
    return np.max([onset, rise], axis=0)


def frame_times(n_frames: int) -> np.ndarray:
    """Centre time (s) of each unwrapped output frame: frame ``j`` of the
    142 kept from window ``w`` sits at input sample ``w · 36164 + j · 256``
    (module docstring)."""
    k = np.arange(n_frames)
    return ((k // KEPT_FRAMES) * WINDOW_STEP + (k % KEPT_FRAMES) * HOP) / MODEL_SR


def _check_options(
    onset_threshold: float, frame_threshold: float, min_midi: int, max_midi: int, min_note_s: float
) -> None:
    lo, hi = THRESHOLD_BOUNDS
    for name, value in (("onset_threshold", onset_threshold), ("frame_threshold", frame_threshold)):
        if not lo < value < hi:
            raise OptionOutOfRange(name, f"{name} must be between {lo} and {hi} (exclusive), got {value}")
    lo_m, hi_m = MIDI_BOUNDS
    if not lo_m <= min_midi <= max_midi <= hi_m:
        raise OptionOutOfRange(
            "min_midi",
            f"need {lo_m} <= min_midi <= max_midi <= {hi_m}, got min_midi={min_midi}, max_midi={max_midi}",
        )
    lo_s, hi_s = MIN_NOTE_BOUNDS
    if not lo_s <= min_note_s <= hi_s:
        raise OptionOutOfRange(
            "min_note_s", f"min_note_s must be between {lo_s} and {hi_s} s, got {min_note_s}"
        )


class NoteModel:
    """The Basic Pitch network in one onnxruntime session (thread-safe)."""

    name = "basic-pitch-icassp2022"

    def __init__(self, path: str | Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    @classmethod
    def load(cls, path: str | Path) -> NoteModel:
        """The model at ``path`` (``MODEL_FILE`` in the model folder); one
        instance per path and process, so the session is built once."""
        key = str(path)
        with _load_lock:
            if key not in _loaded:
                _loaded[key] = cls(path)
            return _loaded[key]

    def activations(
        self, y: np.ndarray, progress: Callable[[float], None] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Note and onset activations, each (n_frames, 88) float32 in [0, 1],
        of 22.05 kHz mono ``y``; frame times from :func:`frame_times`. Frames
        centred beyond the end of ``y`` are dropped."""
        padded = np.concatenate([np.zeros(OVERLAP_FRAMES * HOP // 2, np.float32), y.astype(np.float32)])
        n_windows = math.ceil(len(padded) / WINDOW_STEP)
        windows = _windows(padded)
        note, onset = [], []
        half = OVERLAP_FRAMES // 2
        done = 0
        while done < n_windows:
            batch = np.stack(list(itertools.islice(windows, BATCH_WINDOWS)))
            n_out, o_out = self._session.run([_ONNX_NOTE, _ONNX_ONSET], {_ONNX_INPUT: batch})
            note.append(n_out[:, half:-half].reshape(-1, N_KEYS))
            onset.append(o_out[:, half:-half].reshape(-1, N_KEYS))
            done += len(batch)
            if progress is not None:
                progress(done / n_windows)
        n_frames = int(np.searchsorted(frame_times(n_windows * KEPT_FRAMES), len(y) / MODEL_SR))
        return np.concatenate(note)[:n_frames], np.concatenate(onset)[:n_frames]

    def transcribe(
        self,
        y: np.ndarray,
        sr: int,
        *,
        onset_threshold: float = 0.5,
        frame_threshold: float = 0.3,
        min_midi: int = 21,
        max_midi: int = 108,
        min_note_s: float = 0.058,
        progress: Callable[[float], None] | None = None,
    ) -> Transcription:
        """Notes of mono float samples ``y`` at ``sr`` Hz (any rate; resampled
        to 22.05 kHz with soxr HQ). Options and their ranges: module
        docstring. ``progress`` gets the fraction of the model's windows done
        (0–1] after each batch of 8 windows (13 s of audio); decoding takes a
        few percent of the time after the last call.

        Silence gives no notes. Raises UnprocessableAudio for input shorter than
        0.1 s or non-finite samples, OptionOutOfRange for options out of range; ValueError for
        anything but a 1-D float array.
        """
        y = np.asarray(y)
        if y.ndim != 1:
            raise ValueError(f"expected mono samples of shape (n,), got {y.shape}")
        if not np.issubdtype(y.dtype, np.floating):
            raise ValueError(f"expected float samples in [-1, 1], got {y.dtype}; scale integer PCM first")
        _check_options(onset_threshold, frame_threshold, min_midi, max_midi, min_note_s)
        if len(y) < MIN_SECONDS * sr:
            raise UnprocessableAudio(
                f"audio is too short to transcribe ({len(y) / sr:.3f} s; at least {MIN_SECONDS} s)"
            )
        if not np.all(np.isfinite(y)):
            raise UnprocessableAudio("audio contains non-finite samples (NaN or infinity)")
        if sr != MODEL_SR:
            y = soxr.resample(y.astype(np.float32), sr, MODEL_SR, quality="HQ")
        y = y.astype(np.float32, copy=False)
        if not np.any(y):
            if progress is not None:
                progress(1.0)
            return Transcription([])

        note, onset = self.activations(y, progress)
        # Keys outside the range never sound: zeroed before decoding (as
        # basic-pitch's min_freq/max_freq, whose upper bound is exclusive).
        keys = np.arange(N_KEYS) + MIDI_OFFSET
        outside = (keys < min_midi) | (keys > max_midi)
        note = note.astype(np.float64)  # the decoder's arithmetic, as basic-pitch's
        onset = onset.astype(np.float64)
        note[:, outside] = 0.0
        onset[:, outside] = 0.0
        if note.max(initial=0.0) < frame_threshold and onset.max(initial=0.0) < onset_threshold:
            return Transcription([])  # nothing can become a note (and infer_onsets would divide by 0)

        # Notes shorter than min_note_s are dropped: the decoder keeps a
        # note when it spans more than min_note_len frames.
        min_frames = max(0, math.ceil(min_note_s * FRAME_RATE - 1e-9) - 1)
        events = decode_notes(note, onset, onset_threshold, frame_threshold, min_frames)
        times = frame_times(len(note) + 1)
        # The model normalises each window's spectrum, so it hears notes in
        # a noise floor 80 dB down as well as at full scale: drop notes over
        # which the input is quieter than SILENCE_DBFS.
        # Energy per 256-sample hop (no full-length float64 copy of y); note
        # edges are rounded to hops, plenty for a -60 dB gate.
        hops = np.pad(y, (0, -len(y) % HOP)).reshape(-1, HOP)
        energy = np.concatenate([[0.0], np.cumsum(np.einsum("ij,ij->i", hops, hops), dtype=np.float64)])
        n_hops = len(hops)
        s_idx = np.round(times[events[0]] * FRAME_RATE).astype(np.int64).clip(0, n_hops - 1)
        e_idx = np.maximum(
            np.round(times[events[1]] * FRAME_RATE).astype(np.int64).clip(0, n_hops), s_idx + 1
        )
        mean_power = (energy[e_idx] - energy[s_idx]) / ((e_idx - s_idx) * HOP)
        audible = mean_power >= 10 ** (SILENCE_DBFS / 10)
        events = tuple(a[audible] for a in events)
        notes = [
            Note(
                start=float(times[s]),
                end=float(times[e]),
                midi=int(key) + MIDI_OFFSET,
                velocity=int(np.clip(round(127 * float(amp)), 1, 127)),
            )
            for s, e, key, amp in zip(*events, strict=True)
        ]
        notes.sort(key=lambda n: (n.start, n.midi))
        return Transcription(notes)


_load_lock = threading.Lock()
_loaded: dict[str, NoteModel] = {}


def decode_notes(
    note: np.ndarray,
    onset: np.ndarray,
    onset_threshold: float,
    frame_threshold: float,
    min_note_len: int,
    energy_tol: int = ENERGY_TOL,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Basic Pitch's note decoding, in linear time.

    ``note``/``onset``: (n_frames, 88) activations. Returns start frames,
    end frames (exclusive), key indices (0 = MIDI 21) and mean note
    activations, in the order basic-pitch finds them. The same notes as
    ``basic_pitch.note_creation.output_to_notes_polyphonic(note, onset,
    onset_threshold, frame_threshold, min_note_len, infer_onsets=True,
    max_freq=None, min_freq=None, melodia_trick=True)`` (the tests compare
    them), which looks for the strongest remaining activation with an
    argmax over the whole matrix once per Melodia note: quadratic in the
    length, 7.5 s for 5 minutes of dense music, 30 s for ten. Activations
    only ever drop to zero there, so the strongest remaining one is the next
    of a single descending sort that has not been zeroed yet.
    """
    note = np.ascontiguousarray(note, dtype=np.float64)
    onset = np.asarray(onset, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        onsets = _inferred_onsets(onset, note)
    if not np.all(np.isfinite(onsets)):
        # infer_onsets rescales the rises of the note activation by their
        # maximum; with no rise at all (silence, a constant) basic-pitch
        # divides by zero and loses every onset. No rise adds no onset.
        onsets = onset
    peaks = np.zeros_like(onsets)
    idx = signal.argrelmax(onsets, axis=0)
    peaks[idx] = onsets[idx]
    on_t, on_k = np.nonzero(peaks >= onset_threshold)  # row-major: by time, then key
    flat = note.ravel()
    cand = np.flatnonzero(flat > frame_threshold)
    cand = cand[np.argsort(-flat[cand], kind="stable")]  # ties in row-major order, as np.argmax
    return _decode(
        note,
        on_t[::-1].astype(np.int64),
        on_k[::-1].astype(np.int64),
        cand.astype(np.int64),
        float(frame_threshold),
        int(min_note_len),
        int(energy_tol),
    )


@numba.njit(cache=True)
def _trace(remaining, i_mid, f, step, frame_thresh, energy_tol):
    """Follow key ``f`` from frame ``i_mid`` in direction ``step`` (+1/-1)
    until ``energy_tol`` frames in a row are under ``frame_thresh``, zeroing
    it and its neighbour keys on the way (basic-pitch's frame-only note
    search). Returns where the note ends on that side, without the quiet run
    (+1: its end frame, exclusive as the caller uses it; -1: its first frame)."""
    n_frames, n_keys = remaining.shape
    i = i_mid + step
    k = 0
    while 0 < i < n_frames - 1 and k < energy_tol:
        if remaining[i, f] < frame_thresh:
            k += 1
        else:
            k = 0
        remaining[i, f] = 0.0
        if f < n_keys - 1:
            remaining[i, f + 1] = 0.0
        if f > 0:
            remaining[i, f - 1] = 0.0
        i += step
    return i - step * (1 + k)


@numba.njit(cache=True)
def _decode(frames, on_t, on_k, cand, frame_thresh, min_note_len, energy_tol):  # pragma: no cover - numba
    # A line-by-line port of output_to_notes_polyphonic's two loops
    # (basic-pitch 0.4.0, Apache-2.0); only the Melodia argmax changed.
    n_frames, n_keys = frames.shape
    remaining = frames.copy()
    cap = len(on_t) + len(cand)
    starts = np.empty(cap, np.int64)
    ends = np.empty(cap, np.int64)
    keys = np.empty(cap, np.int64)
    amps = np.empty(cap, np.float64)
    count = 0
    for n in range(len(on_t)):  # onsets, latest first
        start, f = on_t[n], on_k[n]
        if start >= n_frames - 1:
            continue
        i = start + 1
        k = 0
        while i < n_frames - 1 and k < energy_tol:
            if remaining[i, f] < frame_thresh:
                k += 1
            else:
                k = 0
            i += 1
        i -= k
        if i - start <= min_note_len:
            continue
        for j in range(start, i):
            remaining[j, f] = 0.0
            if f < n_keys - 1:
                remaining[j, f + 1] = 0.0
            if f > 0:
                remaining[j, f - 1] = 0.0
        starts[count], ends[count], keys[count] = start, i, f
        amps[count] = frames[start:i, f].mean()
        count += 1
    for c in range(len(cand)):  # the Melodia trick: strongest remaining activation first
        i_mid, f = cand[c] // n_keys, cand[c] % n_keys
        if remaining[i_mid, f] <= frame_thresh:
            continue  # zeroed by an earlier note
        remaining[i_mid, f] = 0.0
        i_end = _trace(remaining, i_mid, f, 1, frame_thresh, energy_tol)
        i_start = _trace(remaining, i_mid, f, -1, frame_thresh, energy_tol)
        if i_end - i_start <= min_note_len:
            continue
        starts[count], ends[count], keys[count] = i_start, i_end, f
        amps[count] = frames[i_start:i_end, f].mean()
        count += 1
    return starts[:count], ends[:count], keys[:count], amps[:count]
