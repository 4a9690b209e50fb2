"""Stem separation jobs (queue ``heavy``): v1 ``separate/2stem``,
``separate/4stem`` and the tasks dialect's ``tasks/separate``.

One separation run per job; each stem is encoded in each asked-for format
and kept as a derived object of the source asset.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from shared import operations
from workers import codec, context
from workers.dsp import separation
from workers.dsp.spleeter import SpleeterModel
from workers.runner import Audio, JobContext, job_task

# Progress: decoding ~5 %, separating up to 85 %, encoding and storing the rest.
SEPARATED = 0.85


@functools.cache
def _model(model_dir: str) -> SpleeterModel | None:
    """The pretrained model, loaded once per worker process; None when it is
    not installed (``audioq models fetch``): the DSP fallback runs instead."""
    return SpleeterModel.load(Path(model_dir))


def _separate(audio: Audio, ctx: JobContext, n_stems: int) -> separation.Separation:
    x, sr = audio.native
    ctx.progress(0.05)
    model = _model(context.get().settings.model_dir)
    return separation.separate(
        x, sr, n_stems, model, progress=lambda f: ctx.progress(0.05 + (SEPARATED - 0.05) * f)
    )


def _store(
    ctx: JobContext, sep: separation.Separation, wanted: dict[str, tuple[np.ndarray, list[str]]]
) -> dict:
    """Encode and keep ``{name: (samples, formats)}``; returns ``{name: {format: ref}}``."""
    todo = [(name, y, fmt) for name, (y, fmts) in wanted.items() for fmt in fmts]
    out: dict[str, dict[str, dict]] = {}
    for i, (name, y, fmt) in enumerate(todo):
        path = ctx.workdir / f"{name}.{fmt}"
        mime = codec.encode(y, sep.sample_rate, fmt, path)
        out.setdefault(name, {})[fmt] = ctx.store_file(path.name, path, mime)
        path.unlink()
        ctx.progress(SEPARATED + (1 - SEPARATED) * (i + 1) / len(todo))
    return out


def _v1(audio: Audio, options: dict, ctx: JobContext, n_stems: int) -> dict:
    sep = _separate(audio, ctx, n_stems)
    fmt = options["format"]
    files = _store(ctx, sep, {name: (y, [fmt]) for name, y in sep.stems.items()})
    return {
        "stems": {name: files[name][fmt] for name in sep.stems},
        "format": fmt,
        "model": sep.model,
        "sample_rate": sep.sample_rate,
    }


@job_task("separate/2stem")
def separate_2stem(audio: Audio, options: dict, ctx: JobContext) -> dict:
    return _v1(audio, options, ctx, 2)


@job_task("separate/4stem")
def separate_4stem(audio: Audio, options: dict, ctx: JobContext) -> dict:
    return _v1(audio, options, ctx, 4)


@job_task("tasks/separate")
def separate_targets(audio: Audio, options: dict, ctx: JobContext) -> dict:
    """The tasks dialect: ``instrumental`` is everything but the vocals."""
    targets = operations.parse_targets(options["targets"])
    sep = _separate(audio, ctx, operations.stems_needed(targets))
    stems = dict(sep.stems)
    accompaniment = stems.get("accompaniment")
    stems["instrumental"] = (
        accompaniment if accompaniment is not None else stems["drums"] + stems["bass"] + stems["other"]
    )
    files = _store(ctx, sep, {m: (stems[m], fmts) for m, fmts in targets.items()})
    return {"targets": files, "model": sep.model, "sample_rate": sep.sample_rate}
