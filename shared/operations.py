"""The catalogue of processing operations: one entry per operation.

An entry is everything generic code knows of an operation: its route
(``POST /v1/{name}``), its Celery task and queue, its default credit cost
(``AUDIOQ_COST_<OP>`` overrides it), whether it answers synchronously by
default, its options schema, its algorithm version (part of the result-cache
key: bump it when results change), its time limits, and flags for the few
ways operations differ (writes files, cacheable, routed, query input...).

Adding an operation touches two places: an entry here, and one function in a
module of ``workers/tasks/`` decorated with ``@job_task("<name>")``. Routes,
validation, credits, caching, the OpenAPI document and the job lifecycle are
generic; the worker discovers every module of ``workers/tasks/`` by itself,
and a test checks that each entry's task is registered.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from shared import results
from shared.errors import ApiError


@dataclass(frozen=True)
class Option:
    type: type  # float, int, str or bool
    default: object
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    help: str = ""

    def parse(self, op: str, name: str, raw: object) -> object:
        """Validate one value (from JSON, or a string from the query string)."""
        where = f"Option {name!r} of {op}"
        value: object
        try:
            if self.type is bool:
                if isinstance(raw, bool):
                    value = raw
                elif isinstance(raw, str) and raw.lower() in ("true", "false", "1", "0"):
                    value = raw.lower() in ("true", "1")
                else:
                    raise ValueError
            elif self.type in (int, float):
                if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
                    raise ValueError
                value = self.type(raw)
                if isinstance(value, float) and not math.isfinite(value):
                    raise ValueError
                if self.type is int and isinstance(raw, float) and not raw.is_integer():
                    raise ValueError
            else:
                if not isinstance(raw, str):
                    raise ValueError
                value = raw
        except (ValueError, TypeError):
            raise _invalid(name, f"{where} must be a {self.type.__name__}") from None
        if self.choices is not None and value not in self.choices:
            raise _invalid(name, f"{where} must be one of {', '.join(self.choices)}")
        if self.min is not None and value < self.min:  # type: ignore[operator]
            raise _invalid(name, f"{where} must be at least {self.min}")
        if self.max is not None and value > self.max:  # type: ignore[operator]
            raise _invalid(name, f"{where} must be at most {self.max}")
        return value


def _invalid(option: str, message: str) -> ApiError:
    return ApiError(400, message, "invalid_option", option=option)


@dataclass(frozen=True, kw_only=True)
class Operation:
    name: str  # route and job "op": POST /v1/{name}
    task: str  # Celery task name (the worker registers it with @job_task(name))
    queue: str  # analysis (seconds of CPU) | heavy (minutes, lots of memory)
    cost: int  # default credits per job; AUDIOQ_COST_<OP> overrides it
    version: str  # algorithm version, part of the cache key
    soft_time_limit: int  # seconds; the job fails with a refund past it
    time_limit: int  # hard limit: the worker process is killed
    sync: bool = False  # answer synchronously by default (fast operations)
    options: Mapping[str, Option] = field(default_factory=dict)
    # Checks across options (e.g. fmin < fmax); raises ApiError(400).
    check: Callable[[dict[str, object]], None] | None = None
    # Writes files (stems, audio, MIDI) as derived objects of the source asset:
    # its cached result belongs to that asset, not to every copy of the bytes.
    outputs: bool = False
    # Results are cached by the source bytes. Not for an answer that depends
    # on more than the bytes (identify: the caller's catalogue, which changes).
    cache: bool = True
    # Has a v1 route (POST /v1/{name}); internal operations are submitted by
    # another front (the tasks dialect).
    public: bool = True
    # Raw audio sent to it is a query clip, not part of the caller's identify
    # catalogue (it is not fingerprinted into the index).
    query_input: bool = False
    # Which document describes its jobs (API reads and callbacks): the v1 job
    # document, or the tasks dialect's task document.
    document: str = "job"
    # Billed as another operation, chosen from the options (the tasks
    # dialect's separation costs what the v1 route with as many stems costs).
    bills_as: Callable[[Mapping[str, object]], str] | None = None
    # Model files (in AUDIOQ_MODEL_DIR, from `audioq models fetch`) a worker
    # of this operation's queue needs: it says so at start and in readiness.
    models: tuple[str, ...] = ()
    # JSON Schema of the job's result (shared/results.py): the OpenAPI
    # document publishes it, and tests hold real results to it.
    result: Mapping[str, object] = field(default_factory=dict)
    # Seconds a client should wait between polls of a job (Retry-After on a
    # 202): about a tenth of a typical run, at least 1.
    poll_s: int = 1

    def parse_options(self, raw: Mapping[str, object]) -> dict[str, object]:
        unknown = sorted(set(raw) - set(self.options))
        if unknown:
            allowed = ", ".join(sorted(self.options)) or "none"
            raise ApiError(
                400,
                f"Unknown option {unknown[0]!r} for {self.name}; allowed: {allowed}",
                "unknown_option",
                option=unknown[0],
            )
        out = {name: opt.default for name, opt in self.options.items()}
        for name, value in raw.items():
            out[name] = self.options[name].parse(self.name, name, value)
        if self.check is not None:
            self.check(out)
        return out

    def cache_key(self, sha256: str, options: Mapping[str, object], asset_id: str) -> str:
        """Results are cached by (sha256, operation, options, algorithm version);
        an operation with ``outputs`` also by the asset its files belong to."""
        canon = json.dumps(options, sort_keys=True, separators=(",", ":"))
        scope = f"|{asset_id}" if self.outputs else ""
        digest = hashlib.sha256(f"{self.name}|{self.version}|{canon}{scope}".encode()).hexdigest()[:32]
        return f"{sha256}:{digest}"

    def output_digest(self, options: Mapping[str, object]) -> str:
        """Names one run's files: the same request writes the same objects, so a
        redelivered task overwrites rather than leaves orphans."""
        canon = json.dumps(options, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(f"{self.name}|{self.version}|{canon}".encode()).hexdigest()[:16]


def _fast(name: str, task: str, version: str, cost: int, **kw) -> Operation:
    """A fast analysis: answers synchronously by default, seconds of CPU."""
    kw.setdefault("soft_time_limit", 120)
    kw.setdefault("time_limit", 150)
    return Operation(name=name, task=task, queue="analysis", sync=True, version=version, cost=cost, **kw)


def _long(name: str, task: str, version: str, cost: int, limit: int, **kw) -> Operation:
    """A long operation: 202 at once, progress reported, on the heavy queue,
    writing files as derived objects of its source asset."""
    return Operation(
        name=name,
        task=task,
        queue="heavy",
        version=version,
        cost=cost,
        soft_time_limit=limit,
        time_limit=limit + 60,
        outputs=True,
        **{"poll_s": 5, **kw},
    )


def _check_pitch_range(opts: dict[str, object]) -> None:
    if not float(opts["fmin"]) < float(opts["fmax"]):  # type: ignore[arg-type]
        raise _invalid("fmin", "Option 'fmin' of pitch must be below 'fmax'")


def _check_midi_range(opts: dict[str, object]) -> None:
    if int(opts["min_midi"]) > int(opts["max_midi"]):  # type: ignore[call-overload]
        raise _invalid("min_midi", "Option 'min_midi' must not be above 'max_midi'")


FORMATS = ("wav", "flac", "mp3")
_format = Option(str, "wav", choices=FORMATS, help="audio format of the outputs")

# Note transcription: basic-pitch's thresholds on its onset and frame
# posteriors, and the MIDI range of notes kept (a piano's, by default).
_transcription_options = {
    "onset_threshold": Option(float, 0.5, 0.05, 0.95, help="onset posterior needed to start a note"),
    "frame_threshold": Option(float, 0.3, 0.05, 0.95, help="frame posterior needed to sustain a note"),
    "min_midi": Option(int, 21, 21, 108, help="lowest MIDI note kept"),
    "max_midi": Option(int, 108, 21, 108, help="highest MIDI note kept"),
}

# Pitch search range in Hz: from below a bass voice's lowest note to a
# soprano's whistle register; beyond it f0 tracking is not meaningful.
PITCH_HZ = (30.0, 2000.0)

# Pretrained model files (ops/models.py writes them; workers load them).
NOTE_MODEL = "basic-pitch-nmp.onnx"
SEPARATION_MODEL = "spleeter-2stems.onnx"

# The stems of the v1 separations (workers/dsp/separation.py produces them).
STEMS: dict[int, tuple[str, ...]] = {
    2: ("vocals", "accompaniment"),
    4: ("vocals", "drums", "bass", "other"),
}

# The tasks dialect's models, and those only the 4-stem separation gives.
TASK_MODELS = ("vocals", "instrumental", "drums", "bass", "other")
FOUR_STEM_MODELS = frozenset({"drums", "bass", "other"})


def parse_targets(spec: str) -> dict[str, list[str]]:
    """``"vocals=wav,mp3;drums=flac"`` -> ``{"vocals": ["wav", "mp3"], "drums": ["flac"]}``."""
    out: dict[str, list[str]] = {}
    for part in filter(None, spec.split(";")):
        model, _, fmts = part.partition("=")
        out[model] = fmts.split(",")
    return out


def format_targets(targets: Mapping[str, list[str]]) -> str:
    return ";".join(f"{m}={','.join(f)}" for m, f in targets.items())


def stems_needed(models: object) -> int:
    """2 when only vocals/instrumental are asked for, else 4."""
    return 4 if FOUR_STEM_MODELS & set(models) else 2  # type: ignore[call-overload]


def _targets_bill_as(options: Mapping[str, object]) -> str:
    return f"separate/{stems_needed(parse_targets(str(options.get('targets', ''))))}stem"


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in [
        _fast("bpm", "audioq.analysis.analyze_tempo", "tempo-4", cost=1, result=results.TEMPO),
        _fast("key", "audioq.analysis.analyze_key", "key-2", cost=1, result=results.KEY),
        _fast("lufs", "audioq.analysis.measure_loudness", "loudness-2", cost=1, result=results.LOUDNESS),
        _fast("key-bpm", "audioq.analysis.analyze_key_tempo", "keytempo-4", cost=2, result=results.KEY_TEMPO),
        _fast("beatgrid", "audioq.analysis.track_beat_grid", "beats-3", cost=2, result=results.BEATGRID),
        _fast("chords", "audioq.analysis.recognize_chords", "chords-3", cost=3, result=results.CHORDS),
        _fast(
            "pitch",
            "audioq.analysis.track_pitch",
            "pitch-2",
            cost=3,
            check=_check_pitch_range,
            result=results.PITCH,
            options={
                "fmin": Option(float, 65.0, *PITCH_HZ, help="lowest f0 searched, Hz"),
                "fmax": Option(float, 1000.0, *PITCH_HZ, help="highest f0 searched, Hz"),
            },
        ),
        # Answers 202 by default and reports progress, but on the analysis
        # queue: a few seconds of CPU, not minutes.
        Operation(
            name="analyze/upload",
            task="audioq.analysis.analyze_track",
            queue="analysis",
            cost=6,
            version="bundle-5",
            soft_time_limit=600,
            time_limit=660,
            result=results.ANALYSIS,
            poll_s=2,
        ),
        _fast(
            "identify",
            "audioq.identify.identify_clip",
            "identify-1",
            cost=2,
            cache=False,
            query_input=True,
            result=results.IDENTIFY,
        ),
        _long(
            "master",
            "audioq.mastering.master_track",
            "master-1",
            cost=10,
            limit=900,
            options={
                "target_lufs": Option(
                    float, -14.0, -30.0, -6.0, help="integrated loudness of the output, LUFS"
                ),
                "ceiling_dbtp": Option(float, -1.0, -6.0, 0.0, help="true-peak ceiling of the output, dBTP"),
                "format": _format,
            },
            result=results.MASTER,
        ),
        _long(
            "separate/2stem",
            "audioq.separation.separate_2stem",
            "sep2-1",
            cost=20,
            limit=1800,
            options={"format": _format},
            models=(SEPARATION_MODEL,),
            result=results.stems(STEMS[2]),
        ),
        _long(
            "separate/4stem",
            "audioq.separation.separate_4stem",
            "sep4-1",
            cost=30,
            limit=1800,
            options={"format": _format},
            models=(SEPARATION_MODEL,),
            result=results.stems(STEMS[4]),
        ),
        _long(
            "transcribe",
            "audioq.transcription.transcribe_notes",
            "notes-1",
            cost=10,
            limit=1200,
            check=_check_midi_range,
            options=_transcription_options,
            models=(NOTE_MODEL,),
            result=results.TRANSCRIPTION,
        ),
        _long(
            "segment-transcribe",
            "audioq.transcription.segment_transcribe",
            "segments-2",
            cost=12,
            limit=1200,
            check=_check_midi_range,
            options=_transcription_options,
            models=(NOTE_MODEL,),
            result=results.SEGMENTS,
        ),
        # The tasks dialect's one separation run per task (POST /tasks):
        # ``targets`` is "model=fmt,fmt;model=fmt", built and checked by that front.
        _long(
            "tasks/separate",
            "audioq.separation.separate_targets",
            "targets-1",
            cost=30,
            limit=1800,
            options={"targets": Option(str, "", help="model=format,...;...")},
            public=False,
            document="task",
            bills_as=_targets_bill_as,
            models=(SEPARATION_MODEL,),
            result=results.TARGETS,
        ),
    ]
}


def get(name: str) -> Operation:
    try:
        return OPERATIONS[name]
    except KeyError:
        raise ApiError(404, f"Unknown operation {name!r}", "unknown_operation") from None


def cost(op: Operation, options: Mapping[str, object], overrides: Mapping[str, int]) -> int:
    """Credits a job of ``op`` with ``options`` costs: the registry's default,
    unless the operator set ``AUDIOQ_COST_<OP>`` (``overrides``, by op name)."""
    name = op.bills_as(options) if op.bills_as else op.name
    return overrides.get(name, OPERATIONS[name].cost)


def cost_env_name(op_name: str) -> str:
    """``AUDIOQ_COST_KEY_BPM`` for ``key-bpm``, ``AUDIOQ_COST_SEPARATE_2STEM`` ..."""
    return "AUDIOQ_COST_" + op_name.upper().replace("-", "_").replace("/", "_")


def longest_time_limit() -> int:
    return max(op.time_limit for op in OPERATIONS.values())
