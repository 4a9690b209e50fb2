"""Stem separation jobs (queue ``heavy``): v1 ``separate/2stem``,
``separate/4stem`` and the tasks dialect's ``tasks/separate``.

One separation run per job, in bounded memory: the source is read from disk
in blocks (decoded once to a raw file first if it is compressed), the stems
come out of ``separation.separate_stream`` segment by segment and go
straight into one incremental encoder per stem and format, and the files
are stored when the run ends. No whole-track array exists at any point.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np

from shared import operations
from workers import codec, context
from workers.dsp import separation
from workers.dsp.spleeter import SpleeterModel
from workers.runner import Audio, JobContext, job_task

# Progress: decoding ~5 %, separating and encoding up to 90 %, storing the rest.
SEPARATED = 0.9

Pick = Callable[[dict[str, np.ndarray]], np.ndarray]


@functools.cache
def _model(model_dir: str) -> SpleeterModel | None:
    """The pretrained model, loaded once per worker process; None when it is
    not installed (``audioq models fetch``): the DSP fallback runs instead."""
    return SpleeterModel.load(Path(model_dir))


def separate_to_files(
    source: codec.FileSource,
    n_stems: int,
    wanted: dict[str, tuple[Pick, list[str]]],
    workdir: Path,
    model: SpleeterModel | None,
    progress: Callable[[float], None],
) -> tuple[separation.StemStream, dict[str, dict[str, tuple[Path, str]]]]:
    """Separate ``source`` and encode ``{name: (pick, formats)}`` as the
    stems come (``pick`` takes a block's stems to the output's samples);
    returns the stream's description and ``{name: {format: (path, mime)}}``."""
    stream = separation.separate_stream(source, n_stems, model, progress=progress)
    encoders = {
        (name, fmt): codec.Encoder(workdir / f"{name}.{fmt}", stream.sample_rate, stream.channels, fmt)
        for name, (_, fmts) in wanted.items()
        for fmt in fmts
    }
    try:
        for block in stream.blocks:
            for (name, _), enc in encoders.items():
                enc.write(wanted[name][0](block))
    finally:
        for enc in encoders.values():
            enc.close()
    files: dict[str, dict[str, tuple[Path, str]]] = {}
    for (name, fmt), enc in encoders.items():
        files.setdefault(name, {})[fmt] = (workdir / f"{name}.{fmt}", enc.mime)
    return stream, files


def _run(
    audio: Audio, ctx: JobContext, n_stems: int, wanted: dict[str, tuple[Pick, list[str]]]
) -> tuple[separation.StemStream, dict[str, dict[str, dict]]]:
    source = codec.open_source(audio.path, audio.info, ctx.workdir)
    ctx.progress(0.05)
    model = _model(context.get().settings.model_dir)
    stream, files = separate_to_files(
        source, n_stems, wanted, ctx.workdir, model, lambda f: ctx.progress(0.05 + (SEPARATED - 0.05) * f)
    )
    todo = [(name, fmt, path, mime) for name, fmts in files.items() for fmt, (path, mime) in fmts.items()]
    out: dict[str, dict[str, dict]] = {}
    for i, (name, fmt, path, mime) in enumerate(todo):
        out.setdefault(name, {})[fmt] = ctx.store_file(path.name, path, mime)
        path.unlink()
        ctx.progress(SEPARATED + (1 - SEPARATED) * (i + 1) / len(todo))
    return stream, out


def _stem(name: str) -> Pick:
    return lambda block: block[name]


def _v1(audio: Audio, options: dict, ctx: JobContext, n_stems: int) -> dict:
    fmt = options["format"]
    names = separation.STEMS[n_stems]
    stream, files = _run(audio, ctx, n_stems, {name: (_stem(name), [fmt]) for name in names})
    return {
        "stems": {name: files[name][fmt] for name in names},
        "format": fmt,
        "model": stream.model,
        "sample_rate": stream.sample_rate,
    }


@job_task("separate/2stem")
def separate_2stem(audio: Audio, options: dict, ctx: JobContext) -> dict:
    return _v1(audio, options, ctx, 2)


@job_task("separate/4stem")
def separate_4stem(audio: Audio, options: dict, ctx: JobContext) -> dict:
    return _v1(audio, options, ctx, 4)


def _instrumental(block: dict[str, np.ndarray]) -> np.ndarray:
    """Everything but the vocals."""
    if "accompaniment" in block:
        return block["accompaniment"]
    return block["drums"] + block["bass"] + block["other"]


@job_task("tasks/separate")
def separate_targets(audio: Audio, options: dict, ctx: JobContext) -> dict:
    """The tasks dialect: ``instrumental`` is everything but the vocals."""
    targets = operations.parse_targets(options["targets"])
    n_stems = operations.stems_needed(targets)
    wanted = {m: (_instrumental if m == "instrumental" else _stem(m), fmts) for m, fmts in targets.items()}
    stream, files = _run(audio, ctx, n_stems, wanted)
    return {"targets": files, "model": stream.model, "sample_rate": stream.sample_rate}
