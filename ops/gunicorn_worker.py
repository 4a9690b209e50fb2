"""The API's gunicorn worker: gevent's, answering in our JSON error shape.

gunicorn answers some requests itself, before the application sees them: a
request line over ``limit_request_line`` (414), header fields over
``limit_request_field_size``/``limit_request_fields`` (431), a malformed
request line, header or ``Content-Length``, a bad chunked encoding (400).
Its own answers are HTML; this worker writes ``{"statusCode", "error",
"message", "code"}`` like every other error of the API (``web/errors.py``).
Referenced by ``worker_class`` in ``ops/gunicorn_conf.py``.
"""

from __future__ import annotations

import json
from datetime import datetime
from ssl import SSLError

from gunicorn import util
from gunicorn.http import errors as http_errors
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


class JsonErrorWorker(GeventWorker):
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
