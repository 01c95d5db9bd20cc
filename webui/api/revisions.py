"""The control API (/api/v1) for what the reconciler publishes: revisions, groups, pipelines, runs."""

from __future__ import annotations

import re

from flask import Blueprint, Response, request

from schemas.api import (
    GroupDetail,
    GroupList,
    PipelineGraph,
    PipelineList,
    PublishResult,
    ReconcileRunList,
    ReconcileRunReport,
    ReconcileRunView,
    RevisionDetail,
    RevisionList,
    RevisionPublish,
)
from webui.api import LIMIT, OFFSET, QueryParam, doc, parse_body, query_int
from webui.auth import current_principal, require_role
from webui.context import get_store
from webui.errors import ApiError, json_response

bp = Blueprint("revisions_api", __name__)

_DIFF = re.compile(r"^([0-9a-f]{7,64})\.\.([0-9a-f]{7,64})$")


@bp.post("/revisions")
@require_role("reconciler")
@doc(
    "Publish a revision atomically; compare-and-set on previous_commit_sha (409 revision_conflict);"
    " the current commit again is 'unchanged'",
    body=RevisionPublish,
    response=PublishResult,
    status=201,
    also_ok=(200,),
    errors=(400, 401, 403, 409, 413, 422),
)
def publish() -> Response:
    rev = parse_body(RevisionPublish)
    p = current_principal()
    assert p is not None
    result = get_store().publish(rev, actor=p.actor, role=p.role)
    return json_response(result, status=201 if result.outcome == "published" else 200)


@bp.get("/revisions")
@require_role("viewer")
@doc(
    "Published revisions, newest first", response=RevisionList, query=(LIMIT, OFFSET), errors=(400, 401, 403)
)
def list_revisions() -> Response:
    return json_response(
        get_store().list_revisions(
            limit=query_int("limit", 50, minimum=1, maximum=1000),
            offset=query_int("offset", 0, maximum=10_000_000),
        )
    )


@bp.get("/revisions/<sha>")
@require_role("viewer")
@doc(
    "One revision (full SHA or unique 7+ digit prefix) with every group's config",
    response=RevisionDetail,
    errors=(401, 403, 404),
)
def get_revision(sha: str) -> Response:
    return json_response(get_store().get_revision(sha))


@bp.get("/groups")
@require_role("viewer")
@doc("Groups of the current revision with their agent counts", response=GroupList, errors=(401, 403))
def list_groups() -> Response:
    items, sha = get_store().list_groups()
    return json_response(GroupList(items=items, revision=sha))


@bp.get("/groups/<name>")
@require_role("viewer")
@doc(
    "One group: rendered config, history of changes, and ?diff=SHA1..SHA2 (unified diff)",
    response=GroupDetail,
    query=(QueryParam("diff", "string", "SHA1..SHA2", pattern=_DIFF.pattern),),
    errors=(400, 401, 403, 404),
)
def get_group(name: str) -> Response:
    diff = None
    raw = request.args.get("diff")
    if raw is not None:
        m = _DIFF.match(raw)
        if m is None:
            raise ApiError("diff must be SHA1..SHA2 (hex, 7-64 digits each)", details={"diff": raw})
        diff = (m.group(1), m.group(2))
    return json_response(get_store().get_group(name, diff=diff))


@bp.get("/pipelines")
@require_role("viewer")
@doc(
    "Pipelines of the current revision (graphs of nodes and edges)", response=PipelineList, errors=(401, 403)
)
def list_pipelines() -> Response:
    items, sha = get_store().list_pipelines()
    return json_response(PipelineList(items=items, revision=sha))


@bp.get("/pipelines/<name>")
@require_role("viewer")
@doc("One pipeline of the current revision", response=PipelineGraph, errors=(401, 403, 404))
def get_pipeline(name: str) -> Response:
    return json_response(get_store().get_pipeline(name))


@bp.post("/reconcile-runs")
@require_role("reconciler")
@doc(
    "Record a reconcile run with its outcome, diagnostics and timings",
    body=ReconcileRunReport,
    response=ReconcileRunView,
    status=201,
    errors=(400, 401, 403, 413, 422),
)
def add_run() -> Response:
    run = parse_body(ReconcileRunReport)
    return json_response(get_store().add_reconcile_run(run), status=201)


@bp.get("/reconcile-runs")
@require_role("viewer")
@doc("Reconcile runs, newest first", response=ReconcileRunList, query=(LIMIT, OFFSET), errors=(400, 401, 403))
def list_runs() -> Response:
    return json_response(
        get_store().list_reconcile_runs(
            limit=query_int("limit", 50, minimum=1, maximum=1000),
            offset=query_int("offset", 0, maximum=10_000_000),
        )
    )
