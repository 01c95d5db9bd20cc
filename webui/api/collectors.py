"""The control API (/api/v1) for collector builds: `ctrltower collector publish` uploads one (admin),
viewers list them. Agents download with their own token (webui/api/agent.py)."""

from __future__ import annotations

import re

from flask import Blueprint, Response, current_app, request

from schemas.api import CollectorBuild, CollectorBuildList
from schemas.repo import COLLECTOR_VERSION_PATTERN
from schemas.signing import STATEMENT_HEADER
from webui.api import doc
from webui.auth import current_principal, require_role
from webui.context import get_store
from webui.errors import ApiError, json_response
from webui.settings import ServerSettings

bp = Blueprint("collectors_api", __name__)
_VERSION = re.compile(COLLECTOR_VERSION_PATTERN)


def check_version(version: str) -> str:
    if len(version) > 128 or not _VERSION.match(version):
        raise ApiError(
            f"not a collector version: {version!r} ({COLLECTOR_VERSION_PATTERN}, at most 128)",
            code="validation_error",
            status=422,
        )
    return version


def _upload(limit: int) -> bytes:
    """The raw body, at most `limit` bytes (413 body_too_large), also when sent chunked."""
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(f"collector build over {limit} bytes", code="body_too_large", status=413)
    request.max_content_length = limit
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise ApiError(f"collector build over {limit} bytes", code="body_too_large", status=413)
    return data


@bp.put("/collectors/<version>")
@require_role("admin")
@doc(
    "Publish a collector build: the body is the binary (application/octet-stream), the optional"
    " X-Ctrltower-Statement header its signed statement; a version is immutable (409 collector_exists)",
    response=CollectorBuild,
    status=201,
    also_ok=(200,),
    errors=(400, 401, 403, 409, 413, 422),
)
def publish_collector(version: str) -> Response:
    check_version(version)
    settings: ServerSettings = current_app.config["CTRLTOWER_SETTINGS"]
    data = _upload(settings.max_collector_bytes)
    if not data:
        raise ApiError("the request body must be the collector binary", code="empty_body", status=400)
    p = current_principal()
    assert p is not None
    statement = request.headers.get(STATEMENT_HEADER) or None
    build, created = get_store().publish_collector(version, data, statement, actor=p.actor, role=p.role)
    return json_response(build, status=201 if created else 200)


@bp.get("/collectors")
@require_role("viewer")
@doc("Published collector builds, newest first", response=CollectorBuildList, errors=(401, 403))
def list_collectors() -> Response:
    return json_response(get_store().list_collectors())
