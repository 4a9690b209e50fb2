"""First-call costs of the DSP (numba JIT compilation, FFT plans, model
loading), paid once per worker process before its first job rather than in it.
Each algorithm module warms itself with its own ``warmup()``."""

from __future__ import annotations

from workers.dsp import beats, chords, key, loudness, mastering, pitch, tempo


def warm_up() -> None:
    for module in (tempo, key, loudness, beats, chords, pitch, mastering):
        warm = getattr(module, "warmup", None)
        if warm is not None:
            warm()
