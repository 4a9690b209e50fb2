"""The per-owner fingerprint index behind ``identify``, in Redis.

Keys (also in the table of shared/db.py):

| key pattern               | type   | TTL                    | written by                            |
|---------------------------|--------|------------------------|---------------------------------------|
| aq:fp:{key_id}:{asset_id} | string | asset's remaining life | fingerprints.add (packed landmarks)   |
| aq:fpidx:{key_id}         | zset   | longest member's life  | fingerprints.add (asset by expires_at)|

Both carry the owner (the API key id), and a search reads only the keys of
the owner it is given, so one tenant's query can never see another's
tracks. Each blob expires with its asset and :func:`remove` deletes it at
once; the owner's zset is scored by expiry, so a member whose blob has
expired is ignored by score (and pruned on the next ``add``).

Layout, and why: one packed blob per asset, loaded whole by ``MGET`` and
matched in numpy (workers/dsp/fingerprint.score_matches), not an inverted
index (hash -> postings) in Redis. A blob is a 9-byte header, the landmark
hashes at 3 bytes each (they use 21 bits) and one byte per frame giving how
many landmarks the frame anchors (landmarks are stored in frame order, so
the counts restore their times; <= 192 per frame by construction: peaks in
one frame are > 7 bins apart, <= 32 of them, 6 landmarks each). Measured
with bench/identify.py (``MEMORY USAGE`` of every key, Redis 7.0, ~140
landmarks/s): 29.7 KB per track-minute, 17.5 MB for 800 tracks (605 min);
search at 800 tracks 181 ms p50 / 395 ms p99 (load ~80 ms + match), 57 ms
at 200, 16 ms at 50, on a busy 2-core machine. An inverted index in Redis
(one-off experiment, same 800 tracks: 256 hash-type keys per owner, field
= hash, value = 6-byte postings) took 109 KB per track-minute (3.7x) and
searched no faster (183 ms p50: the 36 query variants make ~40 k field
lookups), and removing or expiring one asset would mean
rewriting postings shared with other assets (Redis expires keys, not parts
of values). Per-asset blobs expire and delete with their asset for free.
Search cost is linear in the owner's catalogue; past a few thousand tracks
per owner, an inverted index (or a per-owner in-process cache of the
loaded arrays) would pay off.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable
from typing import Protocol

import numpy as np
import redis
from redis.client import NEVER_DECODE

from shared import db
from shared.db import PREFIX


class Landmarks(Protocol):
    """What is stored per asset (``workers.dsp.fingerprint.Prints``): landmark
    ``hashes`` and their anchor frames ``times``. Matching is the DSP
    module's business (``fingerprint.identify``); this module only keeps
    the landmarks."""

    hashes: np.ndarray
    times: np.ndarray


Stored = tuple[np.ndarray, np.ndarray]  # (hashes uint32, times int32), as unpacked

_VERSION = 1
_HEADER = struct.Struct("<BII")  # version, landmarks, frames
_MGET_CHUNK = 500


def blob_key(owner: str, asset_id: str) -> str:
    return f"{PREFIX}fp:{owner}:{asset_id}"


def index_key(owner: str) -> str:
    return f"{PREFIX}fpidx:{owner}"


def pack(p: Landmarks) -> bytes:
    """Landmarks -> bytes (see the module docstring for the layout)."""
    times = np.asarray(p.times, np.int64)
    if len(times) and (np.any(np.diff(times) < 0) or times[0] < 0):
        order = np.argsort(times, kind="stable")
        times, hashes = times[order], np.asarray(p.hashes)[order]
    else:
        hashes = np.asarray(p.hashes)
    n_frames = int(times[-1]) + 1 if len(times) else 0
    counts = np.bincount(times, minlength=n_frames)
    if len(counts) and counts.max() > 255:
        raise ValueError("more than 255 landmarks anchored in one frame")
    h3 = hashes.astype("<u4").view(np.uint8).reshape(-1, 4)[:, :3]
    return _HEADER.pack(_VERSION, len(hashes), n_frames) + h3.tobytes() + counts.astype(np.uint8).tobytes()


def unpack(blob: bytes) -> Stored:
    version, n, n_frames = _HEADER.unpack_from(blob)
    if version != _VERSION:
        raise ValueError(f"unknown fingerprint blob version {version}")
    o = _HEADER.size
    h3 = np.frombuffer(blob, np.uint8, 3 * n, o).reshape(n, 3).astype(np.uint32)
    hashes = h3[:, 0] | (h3[:, 1] << 8) | (h3[:, 2] << 16)
    counts = np.frombuffer(blob, np.uint8, n_frames, o + 3 * n)
    times = np.repeat(np.arange(n_frames, dtype=np.int32), counts)
    return hashes, times


# Only while the asset's metadata exists: an index task that finishes after
# the expiry sweep removed the asset must not leave prints behind.
_ADD = """
-- KEYS: asset hash, blob, owner index; ARGV: packed prints, ttl s, now, asset id
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[3])
redis.call('ZADD', KEYS[3], tonumber(ARGV[3]) + tonumber(ARGV[2]), ARGV[4])
-- NX covers a fresh key (no TTL yet), GT extends a live one.
redis.call('EXPIRE', KEYS[3], ARGV[2], 'NX')
redis.call('EXPIRE', KEYS[3], ARGV[2], 'GT')
return 1
"""


def add(
    r: redis.Redis, owner: str, asset_id: str, prints: Landmarks, ttl_s: int, *, now: float | None = None
) -> None:
    """Index an asset's prints for ``ttl_s`` seconds (its remaining life).

    Idempotent: adding again replaces the blob and resets the TTL, so a
    re-upload that extends the asset's life can simply call it again. Does
    nothing once the asset's metadata is gone (expired and swept)."""
    ttl_s = int(ttl_s)
    if ttl_s <= 0:
        remove(r, owner, asset_id)
        return
    t = time.time() if now is None else now
    r.eval(
        _ADD,
        3,
        db.asset_key(asset_id),
        blob_key(owner, asset_id),
        index_key(owner),
        pack(prints),
        ttl_s,
        repr(t),
        asset_id,
    )


def remove(r: redis.Redis, owner: str, asset_id: str) -> None:
    with r.pipeline(transaction=True) as p:
        p.delete(blob_key(owner, asset_id))
        p.zrem(index_key(owner), asset_id)
        p.execute()


def has(r: redis.Redis, owner: str, asset_id: str) -> bool:
    return bool(r.exists(blob_key(owner, asset_id)))


def indexed_assets(r: redis.Redis, owner: str, *, now: float | None = None) -> set[str]:
    t = time.time() if now is None else now
    return {_s(m) for m in r.zrangebyscore(index_key(owner), f"({t}", "+inf")}


def _s(v: str | bytes) -> str:
    return v.decode() if isinstance(v, bytes) else v


def load(
    r: redis.Redis, owner: str, *, now: float | None = None, exclude: Iterable[str] = ()
) -> tuple[list[str], list[Stored]]:
    """The owner's live assets and their prints (blobs that have expired
    meanwhile are skipped), but not those in ``exclude``."""
    ids = sorted(indexed_assets(r, owner, now=now) - set(exclude))
    out_ids, prints = [], []
    for i in range(0, len(ids), _MGET_CHUNK):
        chunk = ids[i : i + _MGET_CHUNK]
        blobs = r.execute_command("MGET", *[blob_key(owner, a) for a in chunk], **{NEVER_DECODE: []})
        for a, b in zip(chunk, blobs, strict=True):
            if b is not None:
                out_ids.append(a)
                prints.append(unpack(b))
    return out_ids, prints
