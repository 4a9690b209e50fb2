"""Analysis jobs (queue ``analysis``): thin wrappers over ``workers/dsp``."""

from __future__ import annotations

from workers.dsp import beats, chords, key, loudness, pitch, tempo
from workers.runner import Audio, JobContext, job_task


@job_task("bpm")
def analyze_tempo(audio: Audio, options: dict, ctx: JobContext) -> dict:
    return tempo.estimate_tempo(audio.mono(), audio.analysis_sr).to_dict()


@job_task("key")
def analyze_key(audio: Audio, options: dict, ctx: JobContext) -> dict:
    return key.estimate_key(audio.mono(), audio.analysis_sr).to_dict()


@job_task("lufs")
def measure_loudness(audio: Audio, options: dict, ctx: JobContext) -> dict:
    x, sr = audio.native
    return loudness.measure(x, sr).to_dict()


@job_task("key-bpm")
def analyze_key_tempo(audio: Audio, options: dict, ctx: JobContext) -> dict:
    """The union of key and bpm from one decode. Both have a ``confidence``:
    each is kept under its own name, and ``confidence`` is the lower of the
    two (how far the pair as a whole can be trusted)."""
    y = audio.mono()
    k, t = key.estimate_key(y, audio.analysis_sr), tempo.estimate_tempo(y, audio.analysis_sr)
    return {
        **k.to_dict(),
        **t.to_dict(),
        "key_confidence": k.confidence,
        "tempo_confidence": t.confidence,
        "confidence": min(k.confidence, t.confidence),
    }


@job_task("beatgrid")
def track_beat_grid(audio: Audio, options: dict, ctx: JobContext) -> dict:
    return beats.track_beats(audio.mono(), audio.analysis_sr).to_dict()


@job_task("chords")
def recognize_chords(audio: Audio, options: dict, ctx: JobContext) -> dict:
    y = audio.mono()
    # Beat-synchronous labels; the salience the downbeat step computed serves the chords too.
    grid, sal = beats.beat_analysis(y, audio.analysis_sr)
    return chords.estimate_chords(y, audio.analysis_sr, beats=grid.beats or None, salience=sal).to_dict()


@job_task("pitch")
def track_pitch(audio: Audio, options: dict, ctx: JobContext) -> dict:
    return pitch.track_pitch(
        audio.mono(), audio.analysis_sr, fmin=options["fmin"], fmax=options["fmax"]
    ).to_dict()


@job_task("analyze/upload")
def analyze_track(audio: Audio, options: dict, ctx: JobContext) -> dict:
    """Everything at once from one decode and one resample; each part is
    exactly what its own operation returns. The beat grid found once serves
    the chords too, and the pitch salience its downbeat step computed serves
    the key and the chords."""
    x, sr = audio.native
    ctx.progress(0.1)
    y = audio.mono()
    ctx.progress(0.2)
    grid, sal = beats.beat_analysis(y, audio.analysis_sr)
    ctx.progress(0.4)
    k, t = key.estimate_key(y, audio.analysis_sr, salience=sal), tempo.estimate_tempo(y, audio.analysis_sr)
    ctx.progress(0.6)
    chord_list = chords.estimate_chords(y, audio.analysis_sr, beats=grid.beats or None, salience=sal)
    ctx.progress(0.8)
    loud = loudness.measure(x, sr)
    return {
        "duration_s": round(x.shape[0] / sr, 3),
        "sample_rate": sr,
        "channels": int(x.shape[1]),
        "bpm": t.to_dict(),
        "key": k.to_dict(),
        "lufs": loud.to_dict(),
        "beatgrid": grid.to_dict(),
        **chord_list.to_dict(),
    }
