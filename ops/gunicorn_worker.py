"""The API's gunicorn worker: gevent's, with two changes.

**Errors in our JSON shape.** gunicorn answers some requests itself, before
the application sees them: a request line over ``limit_request_line`` (414),
header fields over ``limit_request_field_size``/``limit_request_fields``
(431), a malformed request line, header or ``Content-Length``, a bad chunked
encoding (400). Its own answers are HTML; this worker writes
``{"statusCode", "error", "message", "code"}`` like every other error of the
API (``web/errors.py``).

**Bodies read straight from the socket.** gunicorn's ``wsgi.input`` passes
every received chunk through two ``BytesIO`` buffers (written, copied out,
sliced), about 1.8 ms of CPU per MB of upload on this project's test machine
against 0.3 ms for ``recv_into`` the reader's own buffer
(``bench/upload.py``; docs/benchmarks.md, "Uploads"). A body with a
``Content-Length`` is therefore read by :class:`DirectBody`, which also
offers ``readinto``: an upload is received straight into its S3 part
(``shared/storage.py``). Chunked bodies keep gunicorn's reader.

Referenced by ``worker_class`` in ``ops/gunicorn_conf.py``.
"""

from __future__ import annotations

import io
import json
from datetime import datetime
from ssl import SSLError
from typing import Any

from gunicorn import util
from gunicorn.http import errors as http_errors
from gunicorn.http.body import LengthReader
from gunicorn.http.wsgi import Response, default_environ
from gunicorn.workers.ggevent import GeventWorker

from shared.errors import ApiError

# Most specific first: gunicorn's exception types and what the client is told.
_CLIENT_ERRORS: list[tuple[type[BaseException] | tuple[type[BaseException], ...], int, str]] = [
    (http_errors.LimitRequestLine, 414, "The request line is too long; send long parameters in the body"),
    (http_errors.LimitRequestHeaders, 431, "The request's header fields are too large or too many"),
    (http_errors.UnsupportedTransferCoding, 501, "This transfer coding is not supported"),
    (http_errors.ExpectationFailed, 417, "The Expect header cannot be met"),
    ((http_errors.ForbiddenProxyRequest, SSLError), 403, "The request is forbidden"),
    (http_errors.ParseException, 400, "The request is malformed"),
]


def error_for(exc: BaseException) -> ApiError:
    """The API error for an exception gunicorn raised while reading a request."""
    if isinstance(exc, (http_errors.InvalidResponseHeader, http_errors.InvalidResponseHeaderName)):
        return ApiError(500, "Something went wrong on our side; it has been logged")  # the app's header
    if isinstance(exc, http_errors.ConfigurationProblem):
        return ApiError(500, "The server is misconfigured; it has been logged")
    for types, status, message in _CLIENT_ERRORS:
        if isinstance(exc, types):
            return ApiError(status, f"{message} ({exc})")
    return ApiError(500, "Something went wrong on our side; it has been logged")


#: Reads from the socket are at most this large (gunicorn's own cap).
_MAX_RECV = 1024 * 1024


class DirectBody:
    """``wsgi.input`` of a request body of known length, read from the socket
    without gunicorn's buffers.

    What gunicorn received past the headers (its read-ahead) is served first;
    anything beyond this body there (a pipelined next request) is left in
    gunicorn's buffer. gunicorn discards an unread rest of the body after the
    response through this object's ``read``, as it would its own; a read that
    failed (the client vanished, the upload deadline cut it off) marks the
    body ``failed``, and gunicorn then closes the connection.
    """

    def __init__(self, reader: LengthReader, sock: Any) -> None:
        unreader = reader.unreader
        ahead = unreader.buf.getvalue()
        self._held = ahead[: reader.length]
        unreader.buf = io.BytesIO()
        unreader.buf.write(ahead[len(self._held) :])
        self._left = reader.length - len(self._held)  # still on the socket
        self._sock = sock
        self.failed = False

    def _recv(self, fn: Any, *args: Any) -> Any:
        try:
            got = fn(*args)
        except BaseException:
            self.failed = True
            raise
        if not got:  # the client closed the connection before the end of the body
            self.failed = True
        return got

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(_MAX_RECV), b""))
        if self._held:
            piece, self._held = self._held[:size], self._held[size:]
            return piece
        if size == 0 or self._left <= 0:
            return b""
        # Small reads (gunicorn discarding an unread body reads 1 KB at a
        # time) receive 64 KB and keep the rest.
        data = self._recv(self._sock.recv, min(max(size, 65536), self._left, _MAX_RECV))
        self._left = self._left - len(data) if data else 0
        piece, self._held = data[:size], data[size:]
        return piece

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf).cast("B")
        if self._held:
            n = min(len(view), len(self._held))
            view[:n] = self._held[:n]
            self._held = self._held[n:]
            return n
        if not view or self._left <= 0:
            return 0
        n = self._recv(self._sock.recv_into, view, min(len(view), self._left, _MAX_RECV))
        self._left = self._left - n if n else 0
        return n

    def readline(self, size: int | None = -1) -> bytes:
        limit = _MAX_RECV * 64 if size is None or size < 0 else size
        line = b""
        while len(line) < limit:
            chunk = self.read(min(8192, limit - len(line)))
            if not chunk:
                break
            end = chunk.find(b"\n")
            if end >= 0:
                line += chunk[: end + 1]
                self._held = chunk[end + 1 :] + self._held
                break
            line += chunk
        return line

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        return list(iter(self.readline, b""))

    def __iter__(self) -> DirectBody:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


class ApiWorker(GeventWorker):
    def handle_request(self, listener_name, req, sock, addr):  # type: ignore[no-untyped-def]
        reader = getattr(req.body, "reader", None)
        if (
            isinstance(reader, LengthReader)
            and reader.length > 0
            and isinstance(getattr(reader.unreader, "buf", None), io.BytesIO)  # the layout we know
            and not req.body.buf.tell()
        ):
            req.body = DirectBody(reader, sock)
        return super().handle_request(listener_name, req, sock, addr)

    def handle_error(self, req, client, addr, exc):  # type: ignore[no-untyped-def]
        started = datetime.now()
        addr = addr or ("", -1)  # unix socket
        err = error_for(exc)
        if err.status >= 500:
            what = (
                f"{req.method} {req.uri}"
                if hasattr(req, "method") and hasattr(req, "uri")
                else "(no URI read)"
            )
            self.log.exception("Error handling request %s", what)
        else:
            self.log.warning("Invalid request from ip=%s: %s", addr[0], exc)
        body = json.dumps(err.to_dict()).encode()
        if req is None and isinstance(exc, (http_errors.InvalidHeader, http_errors.InvalidHeaderName)):
            req = getattr(exc, "req", None)  # a header error carries its request, for the access log
        if req is not None:
            environ = default_environ(req, client, self.cfg)
            environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = addr[0], str(addr[1])
            resp = Response(req, client, self.cfg)
            resp.status = f"{err.status} {err.reason}"
            resp.response_length = len(body)
            self.log.access(resp, req, environ, datetime.now() - started)
        head = (
            f"HTTP/1.1 {err.status} {err.reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        try:
            util.write_nonblock(client, head.encode("latin-1") + body)
        except Exception:  # the client is gone; nothing left to tell it
            self.log.debug("Failed to send error message.")
