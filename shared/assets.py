"""Assets: uploaded audio, owned by one API key, deduplicated, expiring.

The upload path streams the body to S3 in parts while hashing it and
spooling a copy to a local temporary file (the prober needs a seekable
file, and decoding tools read files); the request is never held in memory.
Of an uncompressed WAV or AIFF the copy leaves the samples out (see
:class:`_Spool`).
Parts go to S3 while the next ones are received (``Storage.put_stream``), so
an upload runs at the speed of the slower of the client and the store.
Only after the bytes are stored *and* probed as audio is metadata written,
atomically with the dedup check (Lua), so a refused or interrupted upload
leaves nothing behind: its object is deleted on the spot, and if the process
dies first the reconcile task removes the orphan after a grace period.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import redis

from shared import audio, db, fingerprints, ids, jobs, metrics, offload
from shared.errors import ApiError
from shared.keys import ApiKey
from shared.settings import Settings
from shared.storage import Readable, Storage, asset_id_of, original_name

log = logging.getLogger(__name__)

NOT_FOUND = "Cannot find asset"


@dataclass(frozen=True)
class Asset:
    id: str
    owner: str
    sha256: str
    size_bytes: int
    content_type: str
    format: str
    duration_s: float
    sample_rate: int
    channels: int
    name: str
    created_at: float
    expires_at: float

    @classmethod
    def from_hash(cls, h: dict) -> Asset:
        return cls(
            id=h["id"],
            owner=h["owner"],
            sha256=h["sha256"],
            size_bytes=int(h["size_bytes"]),
            content_type=h["content_type"],
            format=h["format"],
            duration_s=float(h["duration_s"]),
            sample_rate=int(h["sample_rate"]),
            channels=int(h["channels"]),
            name=h.get("name", ""),
            created_at=float(h["created_at"]),
            expires_at=float(h["expires_at"]),
        )

    def to_hash(self) -> dict:
        return {
            "id": self.id,
            "owner": self.owner,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "content_type": self.content_type,
            "format": self.format,
            "duration_s": repr(self.duration_s),
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "name": self.name,
            "created_at": repr(self.created_at),
            "expires_at": repr(self.expires_at),
        }

    @property
    def object_name(self) -> str:
        return original_name(self.id)

    def to_v1(self) -> dict:
        return {
            "asset_id": self.id,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "content_type": self.content_type,
            "format": self.format,
            "duration_s": round(self.duration_s, 3),
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "name": self.name,
            "created_at": db.iso(self.created_at),
            "expires_at": db.iso(self.expires_at),
        }

    def presign(self, storage: Storage, now: float) -> str:
        """A link to the original, valid no longer than the asset itself."""
        return storage.presign(self.object_name, int(self.expires_at - now), self.content_type)


# --------------------------------------------------------------------------- upload


class _Spool:
    """The local copy of an upload that the prober reads, written in order,
    chunk by chunk, by :class:`_TeeReader`.

    Of an uncompressed WAV or AIFF (``audio.sample_span``, found in the first
    ``HEAD_BYTES``) the sample bytes are not written: the file gets every
    byte before and after them and the upload's size, the samples' place
    left as a hole. The prober reads headers, the file's size and a few
    frames, and does not depend on the values of PCM samples, so it answers
    exactly as for the whole file. Writing the samples was the largest cost
    of an upload in the API worker: about a third of its CPU time
    (``bench/upload.py``; docs/benchmarks.md, "Uploads"), plus their disk
    space for as long as the upload runs. Any other file is written whole.
    """

    HEAD_BYTES = 1024 * 1024

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._size = 0  # bytes seen
        self._head = b""  # while the samples' place is not known
        self._span: tuple[int, float] | None = None
        self._deciding = True

    def write(self, chunk: bytes | memoryview) -> None:
        at, n = self._size, len(chunk)
        self._size += n
        if self._span is None:
            self._f.write(chunk)
            if self._deciding:
                self._decide(chunk)
            return
        # Decided once the samples' start was written: only bytes after
        # their end remain to be written.
        end = self._span[1]
        if at + n > end:
            skip = max(0, int(end) - at)
            self._f.seek(at + skip)
            self._f.write(chunk[skip:])

    def _decide(self, chunk: bytes | memoryview) -> None:
        self._head += bytes(chunk[: self.HEAD_BYTES - len(self._head)])
        span = audio.sample_span(self._head)
        if span is not None and span[0] <= self._size:
            start, end = span
            self._span = (start, float("inf") if end is None else end)
        if self._span is not None or len(self._head) >= self.HEAD_BYTES:
            self._deciding = False
            self._head = b""

    def close(self) -> None:
        """Give the file the upload's size (the samples' hole included) and close it."""
        if self._span is not None:
            self._f.truncate(self._size)
        self._f.close()


class _TeeReader:
    """A byte source (``read``, and ``readinto`` where the source has it)
    that hashes, counts, spools to a file and refuses to go past
    ``max_bytes`` (413) — the limit is enforced while streaming, before the
    excess is ever held. Hashing and spooling run in a native thread
    (:mod:`shared.offload`), one chunk behind the reading: the next chunk is
    received while the last one is hashed and written, so neither the
    request's greenlet nor the rest of the process waits for them. The
    chunks given to that thread are never written to again (``readinto``
    fills each part's buffer once, front to back). Call :meth:`finish`
    before using ``sha`` or the spool."""

    def __init__(self, source: Readable, spool: _Spool, max_bytes: int) -> None:
        self._source = source
        self._spool = spool
        self.max_bytes = max_bytes
        self.size = 0
        self.sha = hashlib.sha256()
        self._absorbing = offload.Sequence()
        if hasattr(source, "readinto"):
            self.readinto = self._readinto

    def finish(self, *, quiet: bool = False) -> None:
        """Wait until every chunk read so far is hashed and spooled; with
        ``quiet``, on a path that is failing already, ignore their errors."""
        try:
            self._absorbing.wait()
        except Exception:
            if not quiet:
                raise

    def _absorb(self, chunk: bytes | memoryview) -> None:
        self.sha.update(chunk)
        self._spool.write(chunk)

    def _room(self, n: int | None) -> int:
        want = 1024 * 1024 if n is None or n < 0 else n
        # Ask for one byte past the limit at most, so an oversized body is
        # detected without reading further.
        want = min(want, self.max_bytes + 1 - self.size)
        if want <= 0:
            raise _too_large(self.max_bytes)
        return want

    def _took(self, chunk: bytes | memoryview) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise _too_large(self.max_bytes)
        if len(chunk) >= offload.MIN_BYTES:
            self._absorbing.add(self._absorb, chunk)
        else:
            self._absorbing.wait()
            self._absorb(chunk)

    def read(self, n: int = -1) -> bytes:
        chunk = self._source.read(self._room(n))
        if chunk:
            self._took(chunk)
        return chunk

    def _readinto(self, buf: memoryview) -> int:
        view = memoryview(buf)[: self._room(len(buf))]
        got = self._source.readinto(view)  # type: ignore[attr-defined]
        if got:
            self._took(view[:got])
        return got or 0


class IterReader:
    """Adapt an iterator of byte chunks to ``read(n)``."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""

    def read(self, n: int = -1) -> bytes:
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return b""
        if n is None or n < 0:
            n = len(self._buf)
        out, self._buf = self._buf[:n], self._buf[n:]
        return out


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(413, f"The upload is larger than your plan allows ({max_bytes // (1024 * 1024)} MB)")


def store_upload(
    r: redis.Redis,
    storage: Storage,
    settings: Settings,
    owner: ApiKey,
    source: Readable,
    *,
    name: str = "",
    now: float | None = None,
) -> tuple[Asset, bool]:
    """Stream an upload to S3, probe it, and register it (deduplicated per owner).

    Returns (asset, created): ``created`` is False when the owner already had
    these exact bytes, in which case that asset's expiry is extended to a full
    TTL and the new copy is discarded.
    """
    plan = settings.limits(owner)
    new_id = ids.asset_id()
    obj = original_name(new_id)
    fd, spool_path = tempfile.mkstemp(prefix="audioq-upload-")
    try:
        spool = _Spool(os.fdopen(fd, "wb"))
        try:
            reader = _TeeReader(source, spool, plan.max_upload_bytes)
            try:
                storage.put_stream(obj, reader, "application/octet-stream")
                reader.finish()
            except BaseException:
                reader.finish(quiet=True)  # before the spool closes
                # put_stream aborts a multipart upload itself; a single-part
                # PUT may have completed before the failure was seen.
                _discard(storage, obj)
                raise
        finally:
            spool.close()
        if reader.size == 0:
            _discard(storage, obj)
            raise ApiError(400, "The request body is empty; send the audio file's bytes", "empty_body")
        try:
            info = audio.probe(spool_path)
            if plan.max_duration_s is not None and info.duration_s > plan.max_duration_s:
                raise ApiError(
                    413,
                    f"Test keys take audio of at most {plan.max_duration_s:g} s; this file is "
                    f"{info.duration_s:.1f} s. Upload a shorter clip, or use a live key",
                    "audio_too_long",
                )
        except BaseException:
            _discard(storage, obj)
            raise
    finally:
        # Freeing a large file's pages takes the kernel tens of milliseconds.
        offload.run(os.unlink, spool_path)

    t = db.now() if now is None else now
    candidate = Asset(
        id=new_id,
        owner=owner.id,
        sha256=reader.sha.hexdigest(),
        size_bytes=reader.size,
        content_type=info.mime_type,
        format=info.format,
        duration_s=info.duration_s,
        sample_rate=info.sample_rate,
        channels=info.channels,
        name=name or f"{new_id}.{info.format}",
        created_at=t,
        expires_at=t + plan.asset_ttl_s,
    )
    asset_id, created = register(r, candidate, now=t)
    if created:
        metrics.bump_storage(r, assets=1, asset_bytes=candidate.size_bytes)
    else:
        _discard(storage, obj)
    asset = get(r, owner.id, asset_id, now=t)
    return asset, created


def _discard(storage: Storage, name: str) -> None:
    try:
        storage.delete(name)
    except ApiError:
        # Reconcile will remove it; the client's error matters more than this one.
        log.warning("could not delete discarded upload %s; reconcile will", name)


_REGISTER = """
-- KEYS: owner sha key, owner assets zset, expiry zset
-- ARGV: prefix, now, new id, created_at, expires_at, then field/value pairs
local prefix, now = ARGV[1], tonumber(ARGV[2])
local new_id, created_at, expires_at = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local existing = redis.call('GET', KEYS[1])
if existing then
  local akey = prefix .. 'asset:' .. existing
  local exp = tonumber(redis.call('HGET', akey, 'expires_at'))
  if exp and exp > now then
    if expires_at > exp then
      redis.call('HSET', akey, 'expires_at', ARGV[5])
      redis.call('ZADD', KEYS[3], expires_at, existing)
    end
    return {existing, 0}
  end
end
local akey = prefix .. 'asset:' .. new_id
local fields = {}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', akey, unpack(fields))
redis.call('SET', KEYS[1], new_id)
redis.call('ZADD', KEYS[2], created_at, new_id)
redis.call('ZADD', KEYS[3], expires_at, new_id)
return {new_id, 1}
"""


def register(r: redis.Redis, a: Asset, *, now: float) -> tuple[str, bool]:
    """Record an asset, or extend the owner's live asset with the same bytes."""
    flat: list[str] = []
    for k, v in a.to_hash().items():
        flat += [k, str(v)]
    asset_id, created = r.eval(
        _REGISTER,
        3,
        db.owner_sha_key(a.owner, a.sha256),
        db.owner_assets_key(a.owner),
        db.EXPIRY_INDEX,
        db.PREFIX,
        repr(now),
        a.id,
        repr(a.created_at),
        repr(a.expires_at),
        *flat,
    )
    return asset_id, bool(created)


# --------------------------------------------------------------------------- read


def mark_query(r: redis.Redis, asset_id: str) -> None:
    """This asset was uploaded as an identify query clip: it is not part of
    its owner's identify catalogue."""
    r.hset(db.asset_key(asset_id), "identify_query", "1")


def catalogue(r: redis.Redis, owner_id: str) -> list[str]:
    """The owner's live assets that identify matches against (all but query clips)."""
    ids_ = r.zrange(db.owner_assets_key(owner_id), 0, -1)
    with r.pipeline(transaction=False) as p:
        for a in ids_:
            p.hmget(db.asset_key(a), "expires_at", "identify_query")
        rows = p.execute()
    t = db.now()
    return [a for a, (exp, q) in zip(ids_, rows, strict=True) if exp and float(exp) > t and q != "1"]


def get(r: redis.Redis, owner_id: str, asset_id: str, *, now: float | None = None) -> Asset:
    """The caller's live asset, or 404 — another tenant's asset looks missing."""
    h = r.hgetall(db.asset_key(asset_id)) if asset_id else None
    if not h or h.get("owner") != owner_id:
        raise ApiError(404, NOT_FOUND, "asset_not_found")
    a = Asset.from_hash(h)
    if a.expires_at <= (db.now() if now is None else now):
        raise ApiError(404, NOT_FOUND, "asset_not_found")
    return a


def list_for_owner(
    r: redis.Redis, owner_id: str, *, limit: int, cursor: str | None, now: float | None = None
) -> tuple[list[Asset], str | None]:
    """Live assets, newest first; ``cursor`` is the last asset id of the
    previous page (exclusive). Returns (page, next_cursor)."""
    t = db.now() if now is None else now
    hashes, next_cursor = db.newest_first(
        r,
        db.owner_assets_key(owner_id),
        db.asset_key,
        limit=limit,
        cursor=cursor,
        keep=lambda h: float(h["expires_at"]) > t,
        what="asset_id",
    )
    return [Asset.from_hash(h) for h in hashes], next_cursor


# --------------------------------------------------------------------------- expiry


_EXPIRE = """
-- KEYS: asset hash, expiry zset; ARGV: prefix, asset id, now
local prefix, id, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local owner = redis.call('HGET', KEYS[1], 'owner')
if not owner then
  -- already removed by another sweeper (or its objects are reconcile's)
  redis.call('ZREM', KEYS[2], id)
  return 0
end
local exp = tonumber(redis.call('HGET', KEYS[1], 'expires_at'))
if exp > now then
  -- extended by a dedup upload since it was picked: keep it
  redis.call('ZADD', KEYS[2], exp, id)
  return 0
end
local sha = redis.call('HGET', KEYS[1], 'sha256')
local shakey = prefix .. 'owner:' .. owner .. ':sha:' .. sha
if redis.call('GET', shakey) == id then redis.call('DEL', shakey) end
redis.call('ZREM', prefix .. 'owner:' .. owner .. ':assets', id)
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], id)
return sha
"""


def expire_due(r: redis.Redis, storage: Storage, *, now: float | None = None, batch: int = 500) -> int:
    """Delete every asset whose ``expires_at`` has passed: metadata first
    (atomically, re-checking the expiry), then its objects and the cached
    results computed from its bytes. Safe to run
    concurrently and repeatedly: each asset is removed by whoever wins the Lua
    check, object deletion is idempotent, and what a crash leaves is swept by
    :func:`reconcile`. Returns the number of assets removed."""
    t = db.now() if now is None else now
    removed = 0
    metrics.bump_storage(r, expiry_sweeps=1)
    while True:
        due = r.zrangebyscore(db.EXPIRY_INDEX, "-inf", t, start=0, num=batch)
        if not due:
            return removed
        for asset_id in due:
            owner, size = r.hmget(db.asset_key(asset_id), "owner", "size_bytes")
            sha = r.eval(_EXPIRE, 2, db.asset_key(asset_id), db.EXPIRY_INDEX, db.PREFIX, asset_id, repr(t))
            if sha:
                objects = storage.delete_asset_objects(asset_id)
                jobs.drop_cache(r, sha)
                fingerprints.remove(r, owner, asset_id)
                metrics.bump_storage(r, assets=-1, asset_bytes=-int(size or 0), expired_objects=objects)
                removed += 1
        if len(due) < batch:
            return removed


def reconcile(r: redis.Redis, storage: Storage, settings: Settings, *, now: float | None = None) -> int:
    """Delete objects that no live asset owns, once older than the grace period
    (younger ones may be uploads whose metadata is not written yet).
    Returns the number of objects deleted."""
    t = db.now() if now is None else now
    doomed: list[str] = []
    live: dict[str, bool] = {}
    for obj in storage.list():
        if obj.last_modified is not None and t - obj.last_modified.timestamp() < settings.reconcile_grace_s:
            continue
        asset_id = asset_id_of(obj.name)
        if asset_id is None:
            continue  # not ours to judge
        if asset_id not in live:
            exp = r.hget(db.asset_key(asset_id), "expires_at")
            live[asset_id] = exp is not None and float(exp) > t
        if not live[asset_id]:
            doomed.append(obj.name)
    for i in range(0, len(doomed), 1000):
        storage.delete_many(doomed[i : i + 1000])
    metrics.bump_storage(r, reconcile_orphans=len(doomed))
    return len(doomed)
