"""Analysis jobs (queue ``analysis``): thin wrappers over ``workers/dsp``."""

from __future__ import annotations

from workers.dsp import features, key, loudness, tempo
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
    k, t = features.analyze_key_tempo(audio.mono(), audio.analysis_sr)
    return {
        **k.to_dict(),
        **t.to_dict(),
        "key_confidence": k.confidence,
        "tempo_confidence": t.confidence,
        "confidence": min(k.confidence, t.confidence),
    }


def warmup() -> None:
    """First-call costs (JIT, FFT plans) paid at worker start."""
    for module in (tempo, key, loudness):
        fn = getattr(module, "warmup", None)
        if fn is not None:
            fn()
