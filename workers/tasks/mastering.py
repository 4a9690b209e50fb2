"""Mastering jobs (queue ``heavy``): ``master``."""

from __future__ import annotations

from shared import audio as audio_io
from workers import codec
from workers.dsp import loudness, mastering
from workers.dsp.errors import UnprocessableAudio
from workers.runner import Audio, JobContext, job_task

MP3_RETRIES = 3


@job_task("master")
def master_track(audio: Audio, options: dict, ctx: JobContext) -> dict:
    """For MP3 the encoded file is decoded and measured again: a lossy codec
    raises inter-sample peaks (by up to ~1 dB on loud masters), so while the
    file is over the ceiling the track is mastered again with the limiter's
    ceiling lowered by the overshoot. Loudness stays on target, and a target
    that cannot be reached that way is refused (422) like any other."""
    x, sr = audio.native
    target, ceiling, fmt = options["target_lufs"], options["ceiling_dbtp"], options["format"]
    path = ctx.workdir / f"mastered.{fmt}"
    limit = ceiling
    for attempt in range(MP3_RETRIES + 1):
        start = 0.05 + 0.8 * attempt / (MP3_RETRIES + 1)

        def report(fraction: float, start: float = start) -> None:
            ctx.progress(start + 0.2 * fraction)

        done = mastering.master(x, sr, target, limit, progress=report)
        summary = done.to_dict()  # levels rounded to 0.01 dB
        mime = codec.encode(done.audio, sr, fmt, path)
        output = summary["output"]
        if fmt != "mp3":
            break
        decoded, dsr = codec.decode(path, audio_io.probe(path))
        output = loudness.measure(decoded, dsr).to_dict()
        over = output["true_peak_dbtp"] - ceiling
        if over <= 0:
            break
        limit -= over + 0.05
    else:
        raise UnprocessableAudio(
            "The MP3 encoder keeps this master above the ceiling; choose wav or flac, or a lower ceiling"
        )
    ctx.progress(0.95)
    pick = ("integrated_lufs", "true_peak_dbtp")
    return {
        "output": ctx.store_file(path.name, path, mime),
        "format": fmt,
        "target_lufs": target,
        "ceiling_dbtp": ceiling,
        "gain_db": summary["gain_db"],
        "input": {k: summary["input"][k] for k in pick},
        # our meter on the mastered audio; for MP3, on the decoded MP3 file
        "mastered": {k: output[k] for k in pick},
    }
