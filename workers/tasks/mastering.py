"""Mastering jobs (queue ``heavy``): ``master``.

In bounded memory: the source is read from disk in blocks (decoded once to
a raw file if it is compressed), ``mastering.master_stream`` decides the
chain in passes over it, and the master is rendered block by block into an
incremental encoder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from workers import codec
from workers.dsp import loudness, mastering
from workers.dsp.errors import UnprocessableAudio
from workers.runner import Audio, JobContext, job_task

MP3_RETRIES = 3


def master_to_file(
    source: codec.FileSource,
    target: float,
    ceiling: float,
    fmt: str,
    path: Path,
    progress: Callable[[float], None],
) -> tuple[dict, dict, str]:
    """Master ``source`` into ``path`` as ``fmt``; returns (the chain's
    summary, the output's measured levels, MIME type).

    For MP3 the encoded file is decoded and measured again: a lossy codec
    raises inter-sample peaks (by up to ~1 dB on loud masters), so while the
    file is over the ceiling the track is mastered again with the limiter's
    ceiling lowered by the overshoot. Loudness stays on target, and a target
    that cannot be reached that way is refused (422) like any other."""
    limit = ceiling
    for attempt in range(MP3_RETRIES + 1):
        start = 0.05 + 0.8 * attempt / (MP3_RETRIES + 1)

        def report(fraction: float, start: float = start) -> None:
            progress(start + 0.2 * fraction)

        done = mastering.master_stream(source, target, limit, report, scratch_dir=str(path.parent))
        summary = done.to_dict()  # levels rounded to 0.01 dB
        with codec.Encoder(path, source.sample_rate, source.channels, fmt) as enc:
            for block in done.blocks():
                enc.write(block)
        output = summary["output"]
        if fmt != "mp3":
            return summary, output, enc.mime
        sr, channels, blocks = codec.read_blocks(path)
        meter = loudness.LoudnessMeter(sr, channels)
        for block in blocks:
            meter.add(block)
        output = meter.result().to_dict()
        over = output["true_peak_dbtp"] - ceiling
        if over <= 0:
            return summary, output, enc.mime
        limit -= over + 0.05
    raise UnprocessableAudio(
        "The MP3 encoder keeps this master above the ceiling; choose wav or flac, or a lower ceiling"
    )


@job_task("master")
def master_track(audio: Audio, options: dict, ctx: JobContext) -> dict:
    target, ceiling, fmt = options["target_lufs"], options["ceiling_dbtp"], options["format"]
    source = codec.open_source(audio.path, audio.info, ctx.workdir)
    path = ctx.workdir / f"mastered.{fmt}"
    summary, output, mime = master_to_file(source, target, ceiling, fmt, path, ctx.progress)
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
