"""What each operation's result looks like, as JSON Schema (2020-12, the
dialect of OpenAPI 3.1): the registry entry of an operation names its
result schema (``Operation.result``) and ``web/openapi.py`` publishes it.

Pure data, no I/O. The fields are those the task functions in
``workers/tasks/`` return (the ``to_dict`` of the ``workers/dsp``
dataclasses); links are presigned URLs, swapped in when a result is shown.
Objects stay open (no ``additionalProperties: false``) so a field added
later is not a breaking change for clients validating against them.
"""

from __future__ import annotations

from collections.abc import Mapping

Schema = dict[str, object]

NUMBER: Schema = {"type": "number"}
SECONDS: Schema = {"type": "number", "minimum": 0, "description": "seconds"}
UNIT: Schema = {"type": "number", "minimum": 0, "maximum": 1}
INTEGER: Schema = {"type": "integer"}
STRING: Schema = {"type": "string"}
LINK: Schema = {
    "type": "string",
    "format": "uri",
    "description": "presigned GET URL, valid until the source asset expires",
}


def nullable(schema: Schema, why: str = "") -> Schema:
    """``schema`` or null (OpenAPI 3.1: a type list)."""
    out = dict(schema)
    out["type"] = [schema["type"], "null"]
    if why:
        out["description"] = why
    return out


def obj(
    properties: Mapping[str, Mapping[str, object]], *, optional: tuple[str, ...] = (), **extra: object
) -> Schema:
    """An object whose properties are all required except ``optional``."""
    return {
        "type": "object",
        "required": [k for k in properties if k not in optional],
        "properties": dict(properties),
        **extra,
    }


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def links(names: tuple[str, ...]) -> Schema:
    """``{name: link}`` for each name (stems of a separation)."""
    return obj({n: LINK for n in names})


FORMAT: Schema = {"type": "string", "enum": ["wav", "flac", "mp3"]}
DB = NUMBER  # LUFS, LU, dBTP, dBFS: rounded to 0.01

TEMPO = obj(
    {
        "tempo": {"type": "number", "minimum": 0, "description": "BPM, 2 decimals; 0 when none"},
        "confidence": UNIT,
        "alternatives": array(obj({"tempo": NUMBER, "confidence": UNIT})),
    },
    optional=("alternatives",),
    examples=[{"tempo": 120.0, "confidence": 0.82, "alternatives": [{"tempo": 60.0, "confidence": 0.31}]}],
)

KEY = obj(
    {
        "key": {"type": "string", "examples": ["A minor", "Bb major", "F# major"]},
        "tonic": STRING,
        "mode": {"type": "string", "enum": ["major", "minor"]},
        "camelot": {"type": "string", "pattern": "^(1[0-2]|[1-9])[AB]$", "examples": ["8A"]},
        "confidence": UNIT,
    },
    examples=[{"key": "A minor", "tonic": "A", "mode": "minor", "camelot": "8A", "confidence": 0.71}],
)

_LEVEL = nullable(DB, "null where undefined (silence, too short)")
LOUDNESS = obj(
    {
        "integrated_lufs": _LEVEL,
        "loudness_range_lu": _LEVEL,
        "true_peak_dbtp": _LEVEL,
        "sample_peak_dbfs": _LEVEL,
        "momentary_max_lufs": _LEVEL,
        "short_term_max_lufs": _LEVEL,
        "short_term_lufs": obj(
            {
                "start_s": SECONDS,
                "hop_s": SECONDS,
                "values": array(nullable(DB, "LUFS of the 3 s window ending at start_s + k * hop_s")),
            },
        ),
    },
    examples=[
        {
            "integrated_lufs": -9.8,
            "loudness_range_lu": 4.2,
            "true_peak_dbtp": -0.4,
            "sample_peak_dbfs": -0.6,
            "momentary_max_lufs": -7.1,
            "short_term_max_lufs": -8.3,
            "short_term_lufs": {"start_s": 3.0, "hop_s": 0.1, "values": [-10.2, -10.1, None]},
        }
    ],
)

KEY_TEMPO = obj(
    {
        **KEY["properties"],  # type: ignore[dict-item]
        **TEMPO["properties"],  # type: ignore[dict-item]
        "key_confidence": UNIT,
        "tempo_confidence": UNIT,
        "confidence": {**UNIT, "description": "the lower of key_confidence and tempo_confidence"},
    },
    optional=("alternatives",),
)

BEATGRID = obj(
    {
        "tempo": {"type": "number", "minimum": 0},
        "time_signature": {"type": "string", "enum": ["4/4", "3/4"]},
        "beats": array(SECONDS),
        "downbeats": array(SECONDS),
    },
    examples=[
        {"tempo": 120.0, "time_signature": "4/4", "beats": [0.52, 1.02, 1.52, 2.02], "downbeats": [0.52]}
    ],
)

_CHORD_LIST = array(
    obj({"start": SECONDS, "end": SECONDS, "label": {"type": "string", "examples": ["A:min", "F:maj", "N"]}})
)
CHORDS = obj(
    {"chords": _CHORD_LIST},
    examples=[
        {
            "chords": [
                {"start": 0.0, "end": 2.0, "label": "A:min"},
                {"start": 2.0, "end": 4.0, "label": "F:maj"},
            ]
        }
    ],
)

PITCH = obj(
    {
        "hop_s": SECONDS,
        "f0_hz": array(nullable(NUMBER, "Hz; null where unvoiced")),
        "voiced_prob": array(UNIT),
        "notes": array(obj({"start": SECONDS, "end": SECONDS, "midi": INTEGER, "hz": NUMBER})),
    },
    examples=[
        {
            "hop_s": 0.0116,
            "f0_hz": [None, 219.8, 220.1],
            "voiced_prob": [0.02, 0.97, 0.98],
            "notes": [{"start": 0.012, "end": 0.5, "midi": 57, "hz": 220.0}],
        }
    ],
)

ANALYSIS = obj(
    {
        "duration_s": SECONDS,
        "sample_rate": INTEGER,
        "channels": INTEGER,
        "bpm": TEMPO,
        "key": KEY,
        "lufs": LOUDNESS,
        "beatgrid": BEATGRID,
        "chords": _CHORD_LIST,
    }
)

_CANDIDATE = obj({"asset_id": STRING, "offset_s": NUMBER, "score": NUMBER})
IDENTIFY = obj(
    {
        "match": {"anyOf": [_CANDIDATE, {"type": "null"}], "description": "null when nothing matches"},
        "candidates": array(_CANDIDATE),
    },
    examples=[
        {
            "match": {"asset_id": "afa_8Yt3kqLw0cVb2mZr4TnA", "offset_s": 42.5, "score": 0.41},
            "candidates": [{"asset_id": "afa_8Yt3kqLw0cVb2mZr4TnA", "offset_s": 42.5, "score": 0.41}],
        }
    ],
)

_LEVELS = obj({"integrated_lufs": nullable(DB), "true_peak_dbtp": nullable(DB)})
MASTER = obj(
    {
        "output": LINK,
        "format": FORMAT,
        "target_lufs": NUMBER,
        "ceiling_dbtp": NUMBER,
        "gain_db": NUMBER,
        "input": _LEVELS,
        "mastered": _LEVELS,
    },
    examples=[
        {
            "output": "https://s3.example.com/audioq/derived/afa_8Yt3kqLw0cVb2mZr4TnA/master/mastered.wav?X-Amz-Signature=...",
            "format": "wav",
            "target_lufs": -14.0,
            "ceiling_dbtp": -1.0,
            "gain_db": 4.2,
            "input": {"integrated_lufs": -18.2, "true_peak_dbtp": -3.1},
            "mastered": {"integrated_lufs": -14.0, "true_peak_dbtp": -1.02},
        }
    ],
)


def stems(names: tuple[str, ...]) -> Schema:
    return obj({"stems": links(names), "format": FORMAT, "model": STRING, "sample_rate": INTEGER})


_NOTES = array(
    obj({"start": SECONDS, "end": SECONDS, "midi": INTEGER, "velocity": {"type": "integer", "minimum": 0}})
)
TRANSCRIPTION = obj(
    {"notes": _NOTES, "midi": LINK},
    examples=[
        {
            "notes": [{"start": 0.5, "end": 0.98, "midi": 60, "velocity": 84}],
            "midi": "https://s3.example.com/audioq/derived/afa_8Yt3kqLw0cVb2mZr4TnA/transcribe/notes.mid?X-Amz-Signature=...",
        }
    ],
)

SEGMENTS = obj(
    {
        "segments": array(
            obj(
                {
                    "start": SECONDS,
                    "end": SECONDS,
                    "label": {"type": "string", "examples": ["A", "B", "A'"]},
                    "notes": _NOTES,
                }
            )
        ),
        "tempo": NUMBER,
        "time_signature": STRING,
    }
)

TARGETS = obj(
    {
        "targets": {
            "type": "object",
            "description": "{model: {format: link}}",
            "additionalProperties": {"type": "object", "additionalProperties": LINK},
        },
        "model": STRING,
        "sample_rate": INTEGER,
    }
)
