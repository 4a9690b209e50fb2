"""Streaming ``multipart/form-data``: find one file field and yield its bytes
as they arrive, so an upload can go to S3 without being buffered whole
(werkzeug's own form parser spools files first)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from werkzeug.sansio.multipart import NEED_DATA, Data, Epilogue, File, MultipartDecoder

from shared.errors import ApiError

_CHUNK = 256 * 1024


def _malformed(detail: str) -> ApiError:
    return ApiError(400, f"Malformed multipart/form-data body: {detail}", "invalid_multipart")


def file_field(
    read: Callable[[int], bytes], boundary: str, field: str = "file"
) -> tuple[str, str, Iterator[bytes]]:
    """(filename, part content type, iterator of the part's bytes) for ``field``.

    Fields before it are skipped; nothing after it is read.
    """
    decoder = MultipartDecoder(boundary.encode("latin-1"))

    def events():
        while True:
            try:
                ev = decoder.next_event()
            except ValueError as e:
                raise _malformed(str(e)) from None
            if ev is NEED_DATA:
                chunk = read(_CHUNK)
                decoder.receive_data(chunk if chunk else None)
                continue
            yield ev
            if isinstance(ev, Epilogue):
                return

    it = events()
    for ev in it:
        if isinstance(ev, File) and ev.name == field:
            content_type = ev.headers.get("content-type", "application/octet-stream")

            def data() -> Iterator[bytes]:
                for ev2 in it:
                    if not isinstance(ev2, Data):
                        raise _malformed("the file part ended unexpectedly")
                    if ev2.data:
                        yield ev2.data
                    if not ev2.more_data:
                        return
                raise _malformed("the body ended inside the file part")

            return ev.filename or "", content_type, data()
    raise ApiError(400, f"The multipart body has no {field!r} file field", "invalid_multipart")
