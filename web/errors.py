"""One error shape for every failure: ``{"statusCode", "error", "message"}``."""

from __future__ import annotations

import logging

import redis
from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from shared.errors import ApiError

log = logging.getLogger(__name__)

# Messages a person can act on, for the statuses werkzeug raises itself.
_MESSAGES = {
    400: "The request could not be understood",
    404: "There is nothing at this URL; see /docs for the routes",
    405: "This method is not allowed here; see the Allow header",
    413: "The request body is too large",
    415: "This content type is not supported here",
}


def error_response(err: ApiError):
    resp = jsonify(err.to_dict())
    resp.status_code = err.status
    for k, v in err.headers.items():
        resp.headers[k] = v
    if request and request.method in ("POST", "PUT", "PATCH"):
        # The body may be partly unread: gunicorn_conf closes the connection
        # instead of draining it, and the client is told so.
        request.environ["audioq.unread_body"] = True
        resp.headers["Connection"] = "close"
    return resp


def init_app(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(e: ApiError):
        return error_response(e)

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException):
        status = e.code or 500
        message = _MESSAGES.get(status) or e.description or e.name
        if e.description and status not in (404, 405) and e.description != type(e).description:
            message = e.description
        headers = {k: v for k, v in e.get_headers() if k.lower() != "content-type"}
        return error_response(ApiError(status, message, headers=headers))

    @app.errorhandler(redis.RedisError)
    def _redis_error(e: redis.RedisError):
        log.error("redis unavailable: %s", e)
        return error_response(
            ApiError(503, "The state store is unavailable, try again shortly", "state_unavailable")
        )

    @app.errorhandler(Exception)
    def _unexpected(e: Exception):
        log.exception("unhandled error")
        return error_response(ApiError(500, "Something went wrong on our side; it has been logged"))
