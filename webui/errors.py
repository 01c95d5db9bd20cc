"""The one JSON error shape of the HTTP API, and the handlers that make every `/api/...` error use it.

Every 4xx/5xx answer under `/api/` is `schemas.api.ErrorBody`:
`{"error": {"code": ..., "message": ..., "details": ...}}`. Web code raises `ApiError` (or a subclass);
the store raises its own `webui.store.errors.StoreError`s, which `STORE_STATUS` maps to a status here;
werkzeug's HTTP errors (404, 405, 413, bad JSON) and unexpected exceptions are converted here too.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, json, request
from werkzeug.exceptions import HTTPException

from schemas.api import ErrorBody, ErrorDetail
from schemas.errors import Permanent, RetryLater
from webui.store import errors as store_errors

log = logging.getLogger(__name__)

# werkzeug status -> our stable code, for errors raised by Flask/werkzeug itself.
_HTTP_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    411: "length_required",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
}


class ApiError(Permanent):
    """An error with an HTTP status and a stable code; the handler turns it into ErrorBody JSON."""

    status = 400
    code = "bad_request"

    def __init__(
        self, message: str, *, details: Any = None, status: int | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


# The store's error types -> HTTP status; a subclass not listed answers with its nearest listed base.
STORE_STATUS: dict[type[store_errors.StoreError], int] = {
    store_errors.NotFound: 404,
    store_errors.Conflict: 409,
    store_errors.Invalid: 422,
}


def as_api_error(exc: ApiError | store_errors.StoreError) -> ApiError:
    """The ApiError (status, code, message, details) a store error answers with; ApiErrors as they are."""
    if isinstance(exc, ApiError):
        return exc
    status = next((STORE_STATUS[cls] for cls in type(exc).__mro__ if cls in STORE_STATUS), 400)
    err = ApiError(exc.message, details=exc.details, status=status, code=exc.code)
    err.__cause__ = exc
    return err


def api_error(status: int, code: str, message: str, details: Any = None) -> Response:
    """A JSON `ErrorBody` response. Use it (or raise ApiError) for every API error."""
    body = ErrorBody(error=ErrorDetail(code=code, message=message, details=details))
    resp = Response(body.model_dump_json(), status=status, mimetype="application/json")
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="ctrltower"'
    return resp


def _wants_json() -> bool:
    return request.path.startswith("/api/")


def _handle_api_error(exc: ApiError) -> Response:
    return api_error(exc.status, exc.code, exc.message, exc.details)


def _handle_store_error(exc: store_errors.StoreError) -> Response:
    return _handle_api_error(as_api_error(exc))


def _handle_retry_later(exc: RetryLater) -> Response:
    # e.g. the database stayed locked past its busy timeout: the client should retry, not give up
    resp = api_error(503, "unavailable", f"temporarily unavailable, retry: {exc}")
    resp.headers["Retry-After"] = "1"
    return resp


def _handle_http(exc: HTTPException) -> Response | HTTPException:
    if not _wants_json():
        return exc  # the UI renders its own pages
    status = exc.code or 500
    code = _HTTP_CODES.get(status, "error" if status >= 500 else "bad_request")
    message = exc.description or exc.name
    resp = api_error(status, code, message)
    if status == 405 and hasattr(exc, "valid_methods") and exc.valid_methods:
        resp.headers["Allow"] = ", ".join(exc.valid_methods)
    return resp


def _handle_unexpected(exc: Exception) -> Response:
    # A bug: log it with the traceback for the operator, answer the client without one.
    log.exception("unhandled error on %s %s", request.method, request.path)
    if isinstance(exc, HTTPException):  # pragma: no cover - routed to _handle_http by Flask
        return api_error(exc.code or 500, "error", exc.description or exc.name)
    if _wants_json():
        return api_error(500, "internal_error", "internal server error (logged on the server)")
    return Response("internal server error", status=500, mimetype="text/plain")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ApiError, _handle_api_error)
    app.register_error_handler(store_errors.StoreError, _handle_store_error)
    app.register_error_handler(RetryLater, _handle_retry_later)
    app.register_error_handler(HTTPException, _handle_http)
    app.register_error_handler(Exception, _handle_unexpected)


def json_response(payload: Any, status: int = 200) -> Response:
    """Serialize a pydantic model (by alias) or plain JSON data."""
    if hasattr(payload, "model_dump_json"):
        text = payload.model_dump_json(by_alias=True)
    else:
        text = json.dumps(payload)
    return Response(text, status=status, mimetype="application/json")
