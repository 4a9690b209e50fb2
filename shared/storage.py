"""Object storage behind a small interface, spoken through the ``minio`` SDK.

Callers never see ``minio`` types: S3 failures become ``StorageError`` (503)
and missing objects ``ObjectNotFound``. Object names are laid out as

    originals/{asset_id}            the uploaded bytes
    derived/{asset_id}/...          outputs computed from that asset

so that everything belonging to an asset can be found from its id, and an
object's owner asset can be read off its name (used by the reconcile task).
"""

from __future__ import annotations

import builtins
import datetime as dt
import io
import logging
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_parts
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio.datatypes import Part
from minio.deleteobjects import DeleteObject
from minio.error import MinioException, S3Error
from minio.helpers import md5sum_hash, sha256_hash

from shared import offload
from shared.errors import ObjectNotFound, StorageError
from shared.settings import Settings

log = logging.getLogger(__name__)

# What the SDK raises when S3 refuses, fails (5xx after retries) or cannot be reached.
_FAILURES = (MinioException, urllib3.exceptions.HTTPError)

_NOT_FOUND = {"NoSuchKey", "NoSuchObject", "ResourceNotFound"}


def original_name(asset_id: str) -> str:
    return f"originals/{asset_id}"


def derived_prefix(asset_id: str) -> str:
    return f"derived/{asset_id}/"


def asset_id_of(object_name: str) -> str | None:
    """The asset an object belongs to, from its name; None for foreign names."""
    parts = object_name.split("/")
    if len(parts) >= 2 and parts[0] in ("originals", "derived") and parts[1]:
        return parts[1]
    return None


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class ReadableInto(Readable, Protocol):
    def readinto(self, buf: memoryview, /) -> int: ...


class _Client(Minio):
    """The SDK client, with the payload hash of a large request body (an
    upload part: SHA-256 for signing over HTTP, or Content-MD5 over HTTPS)
    computed by :func:`shared.offload.run`, off the event loop.

    ``_build_headers`` is the SDK's internal hook for these headers (minio
    7.2, pinned in constraints.txt); the override asks it for every other
    header and fills in the two hashes itself, exactly as it would.
    """

    def _build_headers(self, host, headers=None, body=None, creds=None):  # type: ignore[no-untyped-def]
        if body is None or len(body) < offload.MIN_BYTES:
            return super()._build_headers(host, headers, body, creds)
        wants_md5 = not (headers or {}).get("Content-MD5")
        headers, date = super()._build_headers(host, headers, None, creds)
        headers["Content-Length"] = str(len(body))
        if creds and not self._base_url.is_https:
            headers["x-amz-content-sha256"] = offload.run(sha256_hash, body)
        elif wants_md5:
            headers["Content-MD5"] = offload.run(md5sum_hash, body)
        return headers, date


@dataclass(frozen=True)
class StoredObject:
    name: str
    size: int
    last_modified: dt.datetime | None


class Storage:
    def __init__(self, settings: Settings) -> None:
        self.bucket = settings.s3_bucket
        self.part_size = settings.upload_part_bytes
        self.parts_in_flight = settings.upload_parts_in_flight
        # Short timeouts and few retries: a dead S3 must turn into a 503 quickly,
        # not hang a request for minutes.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5, read=120),
            maxsize=16,
            retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[502, 503, 504]),
        )
        self._client = _Client(
            settings.s3_endpoint,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            secure=settings.s3_secure,
            region=settings.s3_region,
            http_client=http,
        )
        # Presigning is local computation (no request is made once the region
        # is known), so links can be signed for the host clients will use.
        self._signer: Minio = self._client
        if settings.s3_public_url:
            u = urlsplit(settings.s3_public_url)
            self._signer = Minio(
                u.netloc,
                access_key=settings.s3_access_key,
                secret_key=settings.s3_secret_key,
                secure=u.scheme == "https",
                region=settings.s3_region,
            )

    def ensure_bucket(self) -> None:
        try:
            if not self._client.bucket_exists(self.bucket):
                self._client.make_bucket(self.bucket)
        except S3Error as e:
            if e.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise _wrap(e) from e
        except Exception as e:  # connection refused, DNS, timeouts
            raise _wrap(e) from e

    def ping(self) -> None:
        """Raise StorageError unless the bucket is reachable with our credentials."""
        try:
            if not self._client.bucket_exists(self.bucket):
                raise StorageError(f"Bucket {self.bucket} does not exist")
        except StorageError:
            raise
        except Exception as e:
            raise _wrap(e) from e

    def put_stream(self, name: str, stream: Readable, content_type: str) -> None:
        """Upload from a file-like object of unknown length.

        A body shorter than one part is one PUT. A longer one is a multipart
        upload whose parts are sent while the next ones are read: up to
        ``parts_in_flight`` parts travel at once (threads; greenlets under
        gevent), so the time taken is that of the slower of the source and
        the store, not their sum. Memory is bounded by (``parts_in_flight`` +
        1) parts. On any failure, including an exception raised by
        ``stream.read`` (size limit, slow or vanished client), the parts in
        flight are waited for and the multipart upload is aborted, so no
        object and no stray parts remain; that exception propagates unchanged.
        """
        first = _read_part(stream, self.part_size)
        try:
            if len(first) < self.part_size:
                self._client.put_object(
                    self.bucket, name, io.BytesIO(first), len(first), content_type=content_type
                )
                return
            upload_id = self._client._create_multipart_upload(
                self.bucket, name, {"Content-Type": content_type}
            )
        except _FAILURES as e:
            raise _wrap(e) from e
        try:
            self._send_parts(name, upload_id, first, stream)
        except BaseException:
            try:
                self._client._abort_multipart_upload(self.bucket, name, upload_id)
            except Exception as e:  # the failure that got us here matters more to the caller
                log.warning(
                    "could not abort the multipart upload of %s (%s); an S3 lifecycle rule "
                    "for incomplete uploads removes its parts",
                    name,
                    e,
                )
            raise

    def _send_parts(self, name: str, upload_id: str, data: bytes | bytearray, stream: Readable) -> None:
        def send(number: int, body: bytes | bytearray) -> Part:
            try:
                etag = self._client._upload_part(self.bucket, name, body, None, upload_id, number)  # type: ignore[arg-type]
            except _FAILURES as e:
                raise _wrap(e) from e
            return Part(number, etag)

        parts: list[Part] = []
        pending: set[Future[Part]] = set()
        with ThreadPoolExecutor(self.parts_in_flight, thread_name_prefix="s3-part") as pool:
            try:
                number = 1
                while data:
                    if len(pending) >= self.parts_in_flight:
                        # Whichever part finishes first frees a place (not
                        # the oldest: parts may finish out of order).
                        done, pending = wait_parts(pending, return_when=FIRST_COMPLETED)
                        parts.extend(f.result() for f in done)
                    pending.add(pool.submit(send, number, data))
                    if len(data) < self.part_size:
                        break
                    number += 1
                    data = _read_part(stream, self.part_size)
                parts.extend(f.result() for f in wait_parts(pending).done)
            except BaseException:
                for f in pending:
                    f.cancel()
                wait_parts(pending)  # no part may land after the abort
                raise
        parts.sort(key=lambda part: part.part_number)
        try:
            self._client._complete_multipart_upload(self.bucket, name, upload_id, parts)
        except _FAILURES as e:
            raise _wrap(e) from e

    def open(self, name: str) -> Iterator[bytes]:
        """Yield the object's bytes in chunks."""
        try:
            resp = self._client.get_object(self.bucket, name)
        except Exception as e:
            raise _wrap(e, name) from e
        try:
            yield from resp.stream(1024 * 1024)
        finally:
            resp.close()
            resp.release_conn()

    def download(self, name: str, path: str) -> None:
        try:
            self._client.fget_object(self.bucket, name, path)
        except Exception as e:
            raise _wrap(e, name) from e

    def presign(self, name: str, expires_s: int, content_type: str | None = None) -> str:
        """A GET URL valid for ``expires_s`` seconds (clamped to S3's 1 s..7 days),
        served with ``content_type`` when given."""
        seconds = max(1, min(int(expires_s), 7 * 24 * 3600))
        headers: dict[str, str | list[str] | tuple[str]] | None = (
            {"response-content-type": content_type} if content_type else None
        )
        try:
            return self._signer.presigned_get_object(
                self.bucket, name, expires=dt.timedelta(seconds=seconds), response_headers=headers
            )
        except Exception as e:
            raise _wrap(e, name) from e

    def exists(self, name: str) -> bool:
        try:
            self._client.stat_object(self.bucket, name)
            return True
        except S3Error as e:
            if e.code in _NOT_FOUND:
                return False
            raise _wrap(e) from e
        except Exception as e:
            raise _wrap(e) from e

    def delete(self, name: str) -> None:
        """Delete one object; deleting a missing object is not an error."""
        try:
            self._client.remove_object(self.bucket, name)
        except S3Error as e:
            if e.code not in _NOT_FOUND:
                raise _wrap(e) from e
        except Exception as e:
            raise _wrap(e) from e

    def delete_many(self, names: list[str]) -> None:
        if not names:
            return
        try:
            errors = list(self._client.remove_objects(self.bucket, (DeleteObject(n) for n in names)))
        except Exception as e:
            raise _wrap(e) from e
        failed = [e for e in errors if e.code not in _NOT_FOUND]
        if failed:
            raise StorageError(f"Could not delete {len(failed)} objects: {failed[0].message}")

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        try:
            for o in self._client.list_objects(self.bucket, prefix=prefix, recursive=True):
                if o.object_name and not o.is_dir:
                    yield StoredObject(o.object_name, o.size or 0, o.last_modified)
        except Exception as e:
            raise _wrap(e) from e

    def unfinished_uploads(self, prefix: str = "") -> builtins.list[str]:
        """Names of multipart uploads begun and neither completed nor aborted
        (their parts take space but are no object: reconcile cannot see them)."""
        try:
            res = self._client._list_multipart_uploads(self.bucket, prefix=prefix, max_uploads=1000)
        except Exception as e:
            raise _wrap(e) from e
        return [u.object_name for u in res.uploads if u.object_name]

    def delete_asset_objects(self, asset_id: str) -> int:
        """Delete the original and every derived object of an asset; how many."""
        names = [original_name(asset_id)]
        names += [o.name for o in self.list(derived_prefix(asset_id))]
        self.delete_many(names)
        return len(names)


def _read_part(stream: Readable, size: int) -> bytes | bytearray:
    """Up to ``size`` bytes: fewer only at the end of the stream.

    The part is filled in place, a buffer of the part's size allocated once
    (straight from the socket when the stream has ``readinto``), rather than
    grown chunk by chunk, which would copy it several times and briefly hold
    it twice. A short last part is returned as a copy of what was read.
    """
    buf = bytearray(size)
    view = memoryview(buf)
    readinto = getattr(stream, "readinto", None)
    filled = 0
    while filled < size:
        if readinto is not None:
            n = readinto(view[filled:])
        else:
            chunk = stream.read(size - filled)
            n = len(chunk)
            view[filled : filled + n] = chunk
        if not n:
            break
        filled += n
    # Slices of the buffer may still be in use (the upload's hashing, one
    # chunk behind): copy a short last part rather than resize it.
    return buf if filled == size else bytes(view[:filled])


def _wrap(e: Exception, name: str | None = None) -> StorageError | ObjectNotFound:
    if isinstance(e, (StorageError, ObjectNotFound)):
        return e
    if isinstance(e, S3Error):
        if name and e.code in _NOT_FOUND:
            return ObjectNotFound(name)
        return StorageError(f"Object storage refused the request ({e.code})")
    return StorageError(f"Object storage is unreachable ({type(e).__name__})")
