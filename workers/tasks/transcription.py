"""Note transcription jobs (queue ``heavy``): ``transcribe`` and
``segment-transcribe``."""

from __future__ import annotations

from pathlib import Path

from shared import operations, outputs
from shared.errors import ApiError
from workers import context
from workers.dsp import beats, structure
from workers.dsp.transcription import NoteModel, Transcription
from workers.runner import Audio, JobContext, job_task


def _model() -> NoteModel:
    """Loaded once per worker process (NoteModel.load caches by path)."""
    path = Path(context.get().settings.model_dir) / operations.NOTE_MODEL
    if not path.is_file():
        raise ApiError(
            503,
            "The note model is not installed on this worker (`audioq models fetch`); "
            "the job was not charged. Try again later",
            "model_missing",
        )
    return NoteModel.load(path)


def _notes(audio: Audio, options: dict, ctx: JobContext, start: float, end: float) -> Transcription:
    return _model().transcribe(
        audio.mono(),
        audio.analysis_sr,
        onset_threshold=options["onset_threshold"],
        frame_threshold=options["frame_threshold"],
        min_midi=options["min_midi"],
        max_midi=options["max_midi"],
        progress=lambda f: ctx.progress(start + (end - start) * f),
    )


@job_task("transcribe")
def transcribe_notes(audio: Audio, options: dict, ctx: JobContext) -> dict:
    notes = _notes(audio, options, ctx, 0.05, 0.9)
    path = ctx.workdir / "notes.mid"
    path.write_bytes(notes.to_midi())
    return {**notes.to_dict(), "midi": ctx.store_file(path.name, path, outputs.MIDI_TYPE)}


@job_task("segment-transcribe")
def segment_transcribe(audio: Audio, options: dict, ctx: JobContext) -> dict:
    """Sections on the downbeat grid, each with the notes that start in it."""
    y, sr = audio.mono(), audio.analysis_sr
    grid = beats.track_beats(y, sr)
    ctx.progress(0.15)
    form = structure.find_sections(y, sr, grid.beats, grid.downbeats)
    ctx.progress(0.25)
    notes = _notes(audio, options, ctx, 0.25, 1.0).to_dict()["notes"]
    sections = form.to_dict()["sections"]
    segments = []
    for i, s in enumerate(sections):
        last = i == len(sections) - 1
        inside = [n for n in notes if s["start"] <= n["start"] and (n["start"] < s["end"] or last)]
        segments.append({**s, "notes": inside})
    return {"segments": segments, "tempo": grid.tempo, "time_signature": grid.time_signature}
