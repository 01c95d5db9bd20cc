"""The control API (/api/v1): agents, commands, audit, tokens, who-am-I."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from flask import Blueprint, Response, request
from pydantic import BaseModel

from schemas.api import (
    AgentEventList,
    AgentList,
    AgentView,
    AuditList,
    CommandList,
    CommandRequest,
    CommandView,
    TokenCreate,
    TokenCreated,
    TokenList,
    TokenView,
)
from webui.api import LIMIT, OFFSET, QueryParam, doc, parse_body, query_choice, query_float, query_int
from webui.auth import current_principal, require_role
from webui.context import get_store
from webui.errors import ApiError, json_response
from webui.store import AgentFilter
from webui.store.agents import EVENT_KINDS

bp = Blueprint("control_api", __name__)

STATUSES = ("online", "degraded", "offline")
SYNC_STATUSES = ("Synced", "OutOfSync", "ApplyFailed", "Untrusted", "Drifted", "NoGroup")
SORTS = ("hostname", "last_seen", "registered", "group")
LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_./-]*=.*$"
_KIND = "(" + "|".join(EVENT_KINDS) + ")"
KINDS_PATTERN = f"^({_KIND}(,{_KIND})*)?$"


class WhoAmI(BaseModel):
    token_id: int | None
    name: str
    role: str


def _principal_fields() -> tuple[str, str]:
    p = current_principal()
    assert p is not None  # require_role ran first
    return p.actor, p.role


def _labels() -> tuple[tuple[str, str], ...]:
    out = []
    for raw in request.args.getlist("label"):
        key, sep, value = raw.partition("=")
        if not sep or not re.match(LABEL_PATTERN, raw):
            raise ApiError("label filters are key=value", details={"label": raw})
        out.append((key, value))
    return tuple(out)


@bp.get("/agents")
@require_role("viewer")
@doc(
    "Agents, filtered and paginated, with counts per status and per sync status over the filter",
    response=AgentList,
    query=(
        QueryParam("group", "string", "group name"),
        QueryParam("status", "string", "run status", enum=STATUSES),
        QueryParam("sync", "string", "sync status", enum=SYNC_STATUSES),
        QueryParam(
            "label", "string", "key=value (repeatable, all must match)", pattern=LABEL_PATTERN, repeat=True
        ),
        QueryParam("q", "string", "substring of hostname, id or instance_id"),
        QueryParam("sort", "string", "order", enum=SORTS),
        LIMIT,
        OFFSET,
    ),
    errors=(400, 401, 403),
)
def list_agents() -> Response:
    f = AgentFilter(
        group=request.args.get("group") or None,
        status=query_choice("status", STATUSES),
        sync_status=query_choice("sync", SYNC_STATUSES),
        labels=_labels(),
        search=request.args.get("q") or None,
    )
    result = get_store().list_agents(
        f,
        limit=query_int("limit", 50, minimum=1, maximum=1000),
        offset=query_int("offset", 0, maximum=10_000_000),
        sort=query_choice("sort", SORTS) or "hostname",
    )
    return json_response(result)


@bp.get("/agents/<agent_id>")
@require_role("viewer")
@doc(
    "One agent: identity, labels, group, desired and reported config, sync and run status",
    response=AgentView,
    errors=(401, 403, 404),
)
def get_agent(agent_id: str) -> Response:
    return json_response(get_store().get_agent(agent_id))


@bp.delete("/agents/<agent_id>")
@require_role("admin")
@doc(
    "Forget a decommissioned agent (its events and commands too); a live one registers again",
    response=AgentView,
    errors=(401, 403, 404),
)
def delete_agent(agent_id: str) -> Response:
    actor, role = _principal_fields()
    return json_response(get_store().delete_agent(agent_id, actor=actor, role=role))


class ReregistrationApproval(BaseModel):
    agent_id: str
    approved_until: datetime


@bp.post("/agents/<agent_id>/approve-reregistration")
@require_role("operator")
@doc(
    "Let the next registration of this agent's instance_id (within an hour) go without proof of its "
    "current token: a host reinstalled without its state dir. Audited",
    response=ReregistrationApproval,
    errors=(401, 403, 404),
)
def approve_reregistration(agent_id: str) -> Response:
    actor, role = _principal_fields()
    until = get_store().approve_reregistration(agent_id, actor=actor, role=role)
    return json_response(
        ReregistrationApproval(agent_id=agent_id, approved_until=datetime.fromtimestamp(until, UTC))
    )


@bp.get("/agents/<agent_id>/events")
@require_role("viewer")
@doc(
    "The agent's events, newest first",
    response=AgentEventList,
    query=(
        QueryParam(
            "kind", "string", "comma-separated kinds: " + ",".join(EVENT_KINDS), pattern=KINDS_PATTERN
        ),
        QueryParam("since", "number", "unix seconds, inclusive"),
        QueryParam("until", "number", "unix seconds, inclusive"),
        LIMIT,
        OFFSET,
    ),
    errors=(400, 401, 403, 404),
)
def agent_events(agent_id: str) -> Response:
    kinds = [k for k in (request.args.get("kind") or "").split(",") if k]
    bad = [k for k in kinds if k not in EVENT_KINDS]
    if bad:
        raise ApiError(f"unknown event kinds {bad}", details={"kinds": list(EVENT_KINDS)})
    result = get_store().agent_events(
        agent_id,
        kinds=kinds or None,
        since=query_float("since"),
        until=query_float("until"),
        limit=query_int("limit", 100, minimum=1, maximum=1000),
        offset=query_int("offset", 0, maximum=10_000_000),
    )
    return json_response(result)


@bp.get("/agents/<agent_id>/commands")
@require_role("viewer")
@doc(
    "Commands sent to the agent, newest first",
    response=CommandList,
    query=(LIMIT,),
    errors=(400, 401, 403, 404),
)
def list_commands(agent_id: str) -> Response:
    items = get_store().list_commands(agent_id, limit=query_int("limit", 50, minimum=1, maximum=1000))
    return json_response(CommandList(items=items))


@bp.post("/agents/<agent_id>/commands")
@require_role("operator")
@doc(
    "Queue start, stop, restart or shutdown for the agent (audited); 409 for a command an OpAMP agent lacks",
    body=CommandRequest,
    response=CommandView,
    status=202,
    errors=(400, 401, 403, 404, 409, 413, 422),
)
def queue_command(agent_id: str) -> Response:
    req = parse_body(CommandRequest)
    actor, role = _principal_fields()
    return json_response(get_store().queue_command(agent_id, req.action, actor=actor, role=role), status=202)


@bp.get("/audit")
@require_role("operator")
@doc(
    "The audit log, newest first",
    response=AuditList,
    query=(QueryParam("action", "string"), QueryParam("target", "string"), LIMIT, OFFSET),
    errors=(400, 401, 403),
)
def list_audit() -> Response:
    result = get_store().list_audit(
        limit=query_int("limit", 100, minimum=1, maximum=1000),
        offset=query_int("offset", 0, maximum=10_000_000),
        action=request.args.get("action") or None,
        target=request.args.get("target") or None,
    )
    return json_response(result)


@bp.get("/tokens")
@require_role("admin")
@doc("API tokens (never their secrets)", response=TokenList, errors=(401, 403))
def list_tokens() -> Response:
    return json_response(TokenList(items=get_store().list_tokens()))


@bp.post("/tokens")
@require_role("admin")
@doc(
    "Create a token; the secret is in the answer only",
    body=TokenCreate,
    response=TokenCreated,
    status=201,
    errors=(400, 401, 403, 413, 422),
)
def create_token() -> Response:
    req = parse_body(TokenCreate)
    if req.labels is not None and req.role != "enroll":
        raise ApiError("only enroll tokens have a label scope", code="validation_error", status=422)
    actor, role = _principal_fields()
    created = get_store().create_token(req.role, req.name, actor=actor, actor_role=role, labels=req.labels)
    return json_response(created, status=201)


@bp.delete("/tokens/<int:token_id>")
@require_role("admin")
@doc("Revoke a token", response=TokenView, errors=(401, 403, 404))
def revoke_token(token_id: int) -> Response:
    actor, role = _principal_fields()
    return json_response(get_store().revoke_token(token_id, actor=actor, actor_role=role))


@bp.get("/whoami")
@require_role("viewer", "reconciler", "enroll")
@doc("The caller's token id, name and role", response=WhoAmI, errors=(401,))
def whoami() -> Response:
    p = current_principal()
    assert p is not None
    return json_response(WhoAmI(token_id=p.token_id, name=p.name, role=p.role))
