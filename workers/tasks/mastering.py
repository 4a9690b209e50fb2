"""Mastering jobs (queue ``heavy``): ``master``."""

from __future__ import annotations

from shared import audio as audio_io
from shared.errors import ApiError
from workers.dsp import loudness, mastering
from workers.runner import Audio, JobContext, job_task

# A lossy encoder can raise inter-sample peaks; an MP3 output is re-measured
# after encoding and re-encoded quieter until it is under the ceiling.
MP3_RETRIES = 3


@job_task("master")
def master_track(audio: Audio, options: dict, ctx: JobContext) -> dict:
    x, sr = audio.native
    ctx.progress(0.05)
    target, ceiling, fmt = options["target_lufs"], options["ceiling_dbtp"], options["format"]
    done = mastering.master(x, sr, target, ceiling, progress=lambda f: ctx.progress(0.05 + 0.8 * f))
    path = ctx.workdir / f"mastered.{fmt}"
    y, output = done.audio, done.output
    for _ in range(MP3_RETRIES + 1):
        mime = audio_io.encode(y, sr, fmt, path)
        if fmt != "mp3":
            break
        decoded, dsr = audio_io.decode(path, audio_io.probe(path))
        output = loudness.measure(decoded, dsr).to_dict()
        over = output["true_peak_dbtp"] - ceiling
        if over <= 0:
            break
        y = y * 10 ** (-(over + 0.1) / 20)
    else:
        raise ApiError(500, "The MP3 encoder kept the output above the ceiling; try wav or flac")
    ctx.progress(0.95)
    pick = ("integrated_lufs", "true_peak_dbtp")
    return {
        "output": ctx.store_file(path.name, path, mime),
        "format": fmt,
        "target_lufs": target,
        "ceiling_dbtp": ceiling,
        "gain_db": round(done.gain_db, 2),
        "input": {k: done.input[k] for k in pick},
        "mastered": {k: output[k] for k in pick},  # re-measured on what was stored
    }
