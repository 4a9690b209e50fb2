"""Files that jobs write (stems, mastered audio, MIDI) and the links to them.

They are derived objects of the source asset, named
``derived/{asset_id}/{op}/{digest}/{file}`` where ``digest`` names the
request (operation, version, options): running the same job twice writes the
same objects, and expiring the asset deletes them with the original.

A job's stored result holds a *reference* where a link goes,
``{"$object": name, "type": mime}``; :func:`render` swaps each reference for
a presigned GET link when the result is shown. Links are therefore fresh on
every read and valid until the asset expires (at most 7 days, S3's limit for
presigned URLs), even when a result comes from the cache or the asset's life
was extended by a re-upload.
"""

from __future__ import annotations

import os
from typing import Any

from shared.storage import Storage, derived_prefix

MIDI_TYPE = "audio/midi"


def object_name(asset_id: str, op: str, digest: str, filename: str) -> str:
    return f"{derived_prefix(asset_id)}{op.replace('/', '-')}/{digest}/{filename}"


def put_file(storage: Storage, name: str, path: str | os.PathLike, content_type: str) -> dict:
    """Upload a local file as ``name``; returns its reference."""
    with open(path, "rb") as f:
        storage.put_stream(name, f, content_type)
    return {"$object": name, "type": content_type}


def render(value: Any, storage: Storage, expires_s: int) -> Any:
    """``value`` with every reference replaced by a link valid ``expires_s``."""
    if isinstance(value, dict):
        if "$object" in value:
            return storage.presign(value["$object"], expires_s, value.get("type"))
        return {k: render(v, storage, expires_s) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, storage, expires_s) for v in value]
    return value
