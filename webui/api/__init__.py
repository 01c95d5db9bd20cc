"""The HTTP APIs: `agent` (/api/agent/v1) and `control` (/api/v1), plus request helpers.

`doc(...)` attaches what the OpenAPI generator (webui/openapi.py) needs to a view: summary, request body
model, response model, query parameters and the error statuses it can answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import current_app, request
from pydantic import BaseModel, ValidationError

from webui.errors import ApiError

M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class QueryParam:
    name: str
    type: str  # "string" | "integer" | "number"
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None
    enum: tuple[str, ...] | None = None
    pattern: str | None = None
    repeat: bool = False  # may be given several times (an array in the OpenAPI document)


@dataclass(frozen=True)
class ApiDoc:
    summary: str
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    query: tuple[QueryParam, ...] = ()
    errors: tuple[int, ...] = ()
    status: int = 200
    response_media: str = "application/json"
    also_ok: tuple[int, ...] = ()  # further success statuses with the same response body


def doc(
    summary: str,
    *,
    body: type[BaseModel] | None = None,
    response: type[BaseModel] | None = None,
    query: tuple[QueryParam, ...] = (),
    errors: tuple[int, ...] = (),
    status: int = 200,
    response_media: str = "application/json",
    also_ok: tuple[int, ...] = (),
) -> Callable[[F], F]:
    def decorate(view: F) -> F:
        view.api_doc = ApiDoc(summary, body, response, query, errors, status, response_media, also_ok)  # type: ignore[attr-defined]
        return view

    return decorate


def read_body() -> bytes:
    """The request body, 413 body_too_large past MAX_CONTENT_LENGTH, also for chunked uploads.

    Werkzeug checks a declared Content-Length itself; a chunked body (no Content-Length, the server sets
    wsgi.input_terminated) it silently truncates at the limit, so read one byte more and check.
    """
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    env = request.environ
    if limit is not None and request.content_length is None and env.get("wsgi.input_terminated"):
        raw = env["wsgi.input"].read(limit + 1)
        if len(raw) > limit:
            raise ApiError(f"request body over {limit} bytes", code="body_too_large", status=413)
        return bytes(raw)
    return request.get_data(cache=False)  # Content-Length over the limit: werkzeug's 413


MAX_ERROR_DETAILS = 20


def parse_body(model: type[M]) -> M:
    """The request's JSON body as `model`: 400 bad_json for malformed JSON, 422 for schema errors.

    Strict: JSON types must match the schema (no `false` for an integer, no `"1"` for a number), so
    what the OpenAPI document says is exactly what is accepted.
    """
    raw = read_body()
    if not raw:
        raise ApiError("a JSON request body is required", code="bad_json")
    try:
        return model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        if any(e["type"] == "json_invalid" for e in errors):
            raise ApiError(f"malformed JSON: {errors[0]['msg']}", code="bad_json") from None
        raise ApiError(
            f"invalid {model.__name__}: {exc.error_count()} error(s)",
            code="validation_error",
            status=422,
            details=errors[:MAX_ERROR_DETAILS],  # 20,000 bad labels: the first ones tell enough
        ) from None


def query_int(name: str, default: int, *, minimum: int = 0, maximum: int = 10_000) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(f"query parameter {name!r} must be an integer", details={name: raw}) from None
    if not minimum <= value <= maximum:
        raise ApiError(
            f"query parameter {name!r} must be between {minimum} and {maximum}", details={name: raw}
        )
    return value


def query_float(name: str) -> float | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(f"query parameter {name!r} must be a number", details={name: raw}) from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ApiError(f"query parameter {name!r} must be finite", details={name: raw})
    return value


def query_choice(name: str, choices: tuple[str, ...]) -> str | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    if raw not in choices:
        raise ApiError(f"query parameter {name!r} must be one of {', '.join(choices)}", details={name: raw})
    return raw


LIMIT = QueryParam("limit", "integer", "page size", 1, 1000)
OFFSET = QueryParam("offset", "integer", "rows to skip", 0, 10_000_000)
