"""The catalogue of processing operations: one entry per operation.

Adding an operation means one entry here and one task function in
``workers/tasks/`` (decorated with ``workers.runner.job_task(op_name)``); the
routes, validation, credits, caching and job lifecycle are generic.

An entry says: the route name (``POST /v1/{name}``), the Celery task and
queue, whether the operation answers synchronously by default, its options
schema, its algorithm version (part of the result-cache key: bump it when
results change) and its time limits. Credit costs live in settings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

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
            raise ApiError(
                400, f"{where} must be a {self.type.__name__}", "invalid_option", option=name
            ) from None
        if self.choices is not None and value not in self.choices:
            raise ApiError(
                400, f"{where} must be one of {', '.join(self.choices)}", "invalid_option", option=name
            )
        if self.min is not None and value < self.min:  # type: ignore[operator]
            raise ApiError(400, f"{where} must be at least {self.min}", "invalid_option", option=name)
        if self.max is not None and value > self.max:  # type: ignore[operator]
            raise ApiError(400, f"{where} must be at most {self.max}", "invalid_option", option=name)
        return value


@dataclass(frozen=True)
class Operation:
    name: str  # route and job "op": POST /v1/{name}
    task: str  # Celery task name
    queue: str  # analysis | heavy
    sync: bool  # answer synchronously by default (fast operations)
    version: str  # algorithm version, part of the cache key
    soft_time_limit: int  # seconds; the job fails with a refund past it
    time_limit: int  # hard limit: the worker process is killed
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


def _fast(name: str, task: str, version: str, check=None, **options: Option) -> Operation:
    return Operation(name, task, "analysis", True, version, 120, 150, options, check)


def _check_pitch_range(opts: dict[str, object]) -> None:
    if not float(opts["fmin"]) < float(opts["fmax"]):  # type: ignore[arg-type]
        raise ApiError(400, "Option 'fmin' of pitch must be below 'fmax'", "invalid_option", option="fmin")


def _long(name: str, task: str, version: str, limit: int, check=None, **options: Option) -> Operation:
    """A long operation: 202 at once, progress reported, on the heavy queue."""
    return Operation(name, task, "heavy", False, version, limit, limit + 60, options, check, outputs=True)


def _check_midi_range(opts: dict[str, object]) -> None:
    if int(opts["min_midi"]) > int(opts["max_midi"]):  # type: ignore[call-overload]
        raise ApiError(
            400, "Option 'min_midi' must not be above 'max_midi'", "invalid_option", option="min_midi"
        )


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


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in [
        _fast("bpm", "audioq.analysis.analyze_tempo", "tempo-1"),
        _fast("key", "audioq.analysis.analyze_key", "key-1"),
        _fast("lufs", "audioq.analysis.measure_loudness", "loudness-2"),
        _fast("key-bpm", "audioq.analysis.analyze_key_tempo", "keytempo-1"),
        _fast("beatgrid", "audioq.analysis.track_beat_grid", "beats-1"),
        _fast("chords", "audioq.analysis.recognize_chords", "chords-1"),
        _fast(
            "pitch",
            "audioq.analysis.track_pitch",
            "pitch-1",
            check=_check_pitch_range,
            fmin=Option(float, 65.0, *PITCH_HZ, help="lowest f0 searched, Hz"),
            fmax=Option(float, 1000.0, *PITCH_HZ, help="highest f0 searched, Hz"),
        ),
        # Long: answers 202 by default, reports progress; on the analysis queue
        # because it is a few seconds of CPU, not minutes.
        Operation("analyze/upload", "audioq.analysis.analyze_track", "analysis", False, "bundle-2", 600, 660),
        dataclasses.replace(_fast("identify", "audioq.identify.identify_clip", "identify-1"), cache=False),
        _long(
            "master",
            "audioq.mastering.master_track",
            "master-1",
            900,
            target_lufs=Option(float, -14.0, -30.0, -6.0, help="integrated loudness of the output, LUFS"),
            ceiling_dbtp=Option(float, -1.0, -6.0, 0.0, help="true-peak ceiling of the output, dBTP"),
            format=_format,
        ),
        _long("separate/2stem", "audioq.separation.separate_2stem", "sep2-1", 1800, format=_format),
        _long("separate/4stem", "audioq.separation.separate_4stem", "sep4-1", 1800, format=_format),
        _long(
            "transcribe",
            "audioq.transcription.transcribe_notes",
            "notes-1",
            1200,
            check=_check_midi_range,
            **_transcription_options,
        ),
        _long(
            "segment-transcribe",
            "audioq.transcription.segment_transcribe",
            "segments-1",
            1200,
            check=_check_midi_range,
            **_transcription_options,
        ),
        # The tasks dialect's one separation run per task (POST /tasks):
        # ``targets`` is "model=fmt,fmt;model=fmt", built and checked by that front.
        dataclasses.replace(
            _long(
                "tasks/separate",
                "audioq.separation.separate_targets",
                "targets-1",
                1800,
                targets=Option(str, "", help="model=format,...;..."),
            ),
            public=False,
        ),
    ]
}


def get(name: str) -> Operation:
    try:
        return OPERATIONS[name]
    except KeyError:
        raise ApiError(404, f"Unknown operation {name!r}", "unknown_operation") from None


def longest_time_limit() -> int:
    return max(op.time_limit for op in OPERATIONS.values())
