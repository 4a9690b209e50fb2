"""Object storage behind a small interface, spoken through the ``minio`` SDK.

Callers never see ``minio`` types: S3 failures become ``StorageError`` (503)
and missing objects ``ObjectNotFound``. Object names are laid out as

    originals/{asset_id}            the uploaded bytes
    derived/{asset_id}/...          outputs computed from that asset

so that everything belonging to an asset can be found from its id, and an
object's owner asset can be read off its name (used by the reconcile task).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error

from shared.errors import ObjectNotFound, StorageError
from shared.settings import Settings

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


@dataclass(frozen=True)
class StoredObject:
    name: str
    size: int
    last_modified: dt.datetime | None


class Storage:
    def __init__(self, settings: Settings) -> None:
        self.bucket = settings.s3_bucket
        self.part_size = settings.upload_part_bytes
        # Short timeouts and few retries: a dead S3 must turn into a 503 quickly,
        # not hang a request for minutes.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5, read=120),
            maxsize=16,
            retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[502, 503, 504]),
        )
        self._client = Minio(
            settings.s3_endpoint,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            secure=settings.s3_secure,
            region=settings.s3_region,
            http_client=http,
        )
        # Presigning is local computation (no request is made once the region
        # is known), so links can be signed for the host clients will use.
        self._signer = self._client
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
        """Upload from a file-like object of unknown length, one part at a time.

        Memory is bounded by the part size; a failed upload is aborted by the
        SDK, so no half-written object remains. Exceptions raised by
        ``stream.read`` (size limit, client gone) propagate unchanged.
        """
        try:
            self._client.put_object(
                self.bucket,
                name,
                stream,  # type: ignore[arg-type]  # minio only calls read()
                length=-1,
                part_size=self.part_size,
                content_type=content_type,
                num_parallel_uploads=1,
            )
        except (S3Error, urllib3.exceptions.HTTPError) as e:
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

    def delete_asset_objects(self, asset_id: str) -> int:
        """Delete the original and every derived object of an asset; how many."""
        names = [original_name(asset_id)]
        names += [o.name for o in self.list(derived_prefix(asset_id))]
        self.delete_many(names)
        return len(names)


def _wrap(e: Exception, name: str | None = None) -> StorageError | ObjectNotFound:
    if isinstance(e, (StorageError, ObjectNotFound)):
        return e
    if isinstance(e, S3Error):
        if name and e.code in _NOT_FOUND:
            return ObjectNotFound(name)
        return StorageError(f"Object storage refused the request ({e.code})")
    return StorageError(f"Object storage is unreachable ({type(e).__name__})")
