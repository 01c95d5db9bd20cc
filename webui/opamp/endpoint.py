"""`POST /v1/opamp`: the OpAMP server over plain HTTP (AgentToServer in, ServerToAgent out).

Each request is one exchange: authenticate (the agent's own token, or an enroll token on first contact),
register through the store's one registration path, fold the message into the agent's state
(webui/opamp/protocol.py), record it as a status report (so sync status, events and commands are the
HTTP agents'), and answer with the config, a restart command, the agent's token or a ReportFullState
flag. Every refusal is a ServerToAgent with `error_response` and a 4xx status (503 only when the
database is busy, with retry_info): never a traceback. docs/opamp.md is the user's side of this.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace

from flask import Blueprint, Response, current_app, request
from google.protobuf.message import DecodeError
from pydantic import ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from schemas.api import AgentRegistration, Command, CommandAck, LabelScope, StatusReport
from schemas.errors import RetryLater
from schemas.opamp import CONTENT_TYPE, OPAMP_PATH, AgentCap, has, instance_id_of, opamp_pb2
from webui.api import read_body
from webui.api.agent import check_label_scope, pin_metrics_url
from webui.auth import authenticate, bearer_token
from webui.context import get_store
from webui.errors import ApiError, as_api_error
from webui.opamp.identity import registration_of
from webui.opamp.protocol import (
    SERVER_CAPABILITIES,
    Desired,
    error_message,
    observe,
    remote_config,
    should_offer_config,
    token_offer,
)
from webui.store import Store
from webui.store.errors import StoreError
from webui.store.opamp import OpampAgent
from webui.store.tokens import hash_secret, same_hash

bp = Blueprint("opamp", __name__)
BAD_REQUEST = opamp_pb2.ServerErrorResponseType_BadRequest
UNAVAILABLE = opamp_pb2.ServerErrorResponseType_Unavailable


class OpampRefused(Exception):
    """A request answered with ServerErrorResponse(BadRequest) and this HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Identified:
    agent: OpampAgent
    new_token: str | None  # issued by this request: offered in connection settings
    registered: bool


def _proto(message: opamp_pb2.ServerToAgent, status: int = 200) -> Response:
    return Response(message.SerializeToString(), status=status, mimetype=CONTENT_TYPE)


@bp.post(OPAMP_PATH)
def opamp() -> Response:
    """OpAMP over HTTP: one AgentToServer (application/x-protobuf) in, one ServerToAgent out."""
    uid = b""
    try:
        if request.mimetype != CONTENT_TYPE:
            raise OpampRefused(415, f"Content-Type must be {CONTENT_TYPE}")
        try:
            raw = _decoded(read_body())
        except RequestEntityTooLarge:
            raise OpampRefused(413, "message too large") from None
        msg = opamp_pb2.AgentToServer()
        try:
            msg.ParseFromString(raw)
        except DecodeError as exc:
            raise OpampRefused(400, f"malformed AgentToServer: {exc}") from None
        uid = msg.instance_uid
        try:
            instance_id = instance_id_of(uid)
        except ValueError as exc:
            raise OpampRefused(400, f"{exc} (ctrltower does not assign instance ids)") from None
        return _proto(exchange(get_store(), msg, instance_id, bearer_token()))
    except OpampRefused as exc:
        return _proto(error_message(BAD_REQUEST, exc.message, uid), exc.status)
    except (ApiError, StoreError) as exc:  # body too large (413), agent deleted meanwhile (404), ...
        err = as_api_error(exc)
        return _proto(error_message(BAD_REQUEST, err.message, uid), err.status if err.status < 500 else 400)
    except RetryLater as exc:
        resp = _proto(error_message(UNAVAILABLE, f"temporarily unavailable: {exc}", uid, 1.0), 503)
        resp.headers["Retry-After"] = "1"
        return resp


def _decoded(raw: bytes) -> bytes:
    """The body without its Content-Encoding: gzip (OpAMP HTTP clients may compress), within the same
    size limit as the body itself, so a small compressed message cannot expand into a large one."""
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding != "gzip":
        raise OpampRefused(415, f"Content-Encoding {encoding[:40]!r} is not supported (gzip or none)")
    limit = int(current_app.config.get("MAX_CONTENT_LENGTH") or 16 * 1024 * 1024)
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise OpampRefused(400, f"malformed gzip body: {exc}") from None
    if len(data) > limit:
        raise OpampRefused(413, f"message too large: over {limit} bytes once decompressed")
    if not inflater.eof:
        raise OpampRefused(400, "malformed gzip body: truncated")
    return data


def identify(store: Store, msg: opamp_pb2.AgentToServer, instance_id: str, token: str | None) -> Identified:
    """Who is talking: the agent by its own token, or an enroll token registering (or re-registering)."""
    if not token:
        raise OpampRefused(401, "Authorization: Bearer <token> required (the enroll token on first contact)")
    known = store.opamp_agent(instance_id)
    if known is not None and same_hash(hash_secret(token), known.token_hash):
        return Identified(known, None, registered=False)
    principal = authenticate(token)
    if principal is None or not principal.can("enroll"):
        if known is None:
            raise OpampRefused(401, "unknown instance_uid: the first contact needs an enroll token")
        raise OpampRefused(401, "the token is neither this agent's own token nor an enroll token")
    takes_token = has(msg.capabilities, AgentCap.AgentCapabilities_AcceptsOpAMPConnectionSettings)
    if known is not None and not takes_token and known.enroll_token_id == principal.token_id:
        # An agent that cannot be handed its own token keeps the enroll token that registered it.
        return Identified(known, None, registered=False)
    reg = _in_scope(_registration(instance_id, msg), principal.label_scope)
    check_label_scope(reg.labels, principal.label_scope)  # 403 labels_out_of_scope
    response = store.opamp_register(  # 409 instance_registered: a known instance needs its own token
        reg,
        capabilities=msg.capabilities,
        enroll_token_id=None if takes_token else principal.token_id,
        scope=principal.label_scope,
    )
    agent = store.opamp_agent(instance_id)
    if agent is None:  # deleted by an operator in between
        raise OpampRefused(409, "the agent was deleted while registering: try again")
    return Identified(agent, response.agent_token if takes_token else None, registered=True)


def _in_scope(reg: AgentRegistration, scope: LabelScope | None) -> AgentRegistration:
    """With a scoped enroll token, only the attributes the scope names become labels.

    Every attribute of an OpAMP description is a label candidate (host.name, os.type, service.*...); an
    HTTP agent sends only the labels it was given. Without this a scoped token could never enrol an
    OpAMP agent. Dropping an attribute never gains a group (selectors need labels, not their absence);
    a named key with a value outside the scope is still refused (403 labels_out_of_scope).
    """
    if scope is None:
        return reg
    return reg.model_copy(update={"labels": {k: v for k, v in reg.labels.items() if k in scope}})


def _registration(instance_id: str, msg: opamp_pb2.AgentToServer) -> AgentRegistration:
    description = msg.agent_description if msg.HasField("agent_description") else None
    try:
        # the metrics URL pinned to the connection's address, as for the agent API (scraper SSRF)
        return pin_metrics_url(registration_of(instance_id, description), refuse=False)
    except ValidationError as exc:
        fields = sorted({".".join(map(str, e["loc"])) for e in exc.errors()})
        raise OpampRefused(
            400, f"agent_description does not fit an agent record: {', '.join(fields)}"
        ) from None


def exchange(
    store: Store, msg: opamp_pb2.AgentToServer, instance_id: str, token: str | None
) -> opamp_pb2.ServerToAgent:
    """Everything after parsing: identify, record, decide the answer."""
    who = identify(store, msg, instance_id, token)
    agent_id = who.agent.agent_id
    prev = who.agent.state
    if msg.HasField("agent_description") and not who.registered:
        scope = store.agent_label_scope(agent_id)  # the scope it enrolled with
        described = _in_scope(_registration(instance_id, msg), scope)
        check_label_scope(described.labels, scope)
        store.opamp_describe(agent_id, described)
    auth = store.agent_auth(agent_id)
    served = store.served_config(auth.group, auth.served_sha) if auth is not None and auth.group else None
    desired = Desired(served.config_hash, served.revision, served.body) if served else None
    obs = observe(prev, msg, now=store.clock(), desired=desired)
    runs_desired = desired is not None and obs.reported_hash == desired.config_hash
    report = StatusReport(
        collector_state=obs.collector_state,
        effective_config_hash=obs.reported_hash,
        effective_revision=desired.revision if desired is not None and runs_desired else None,
        last_apply=obs.last_apply,
        drift_events=obs.drift,
        acks=[CommandAck(id=i, result="done") for i in prev.delivered],
        uptime_s=obs.uptime_s,
    )
    commands = store.report_status(agent_id, report)
    command = _pick_command(store, agent_id, obs.state.capabilities, commands)

    state = obs.state
    full = obs.gap or state.want_full_state or (who.registered and not msg.HasField("agent_description"))
    out = opamp_pb2.ServerToAgent(instance_uid=msg.instance_uid, capabilities=SERVER_CAPABILITIES)
    if command is not None and who.new_token is None:
        # A command travels alone (the spec: other fields are ignored with it); the rest comes next time.
        out.command.type = opamp_pb2.CommandType_Restart
        state = replace(state, delivered=(command.id,), want_full_state=full)
    else:
        if full:
            out.flags |= opamp_pb2.ServerToAgentFlags_ReportFullState
        state = replace(state, want_full_state=False)
        if desired is not None and should_offer_config(state, desired, full_state=full):
            out.remote_config.CopyFrom(remote_config(desired))
            state = replace(state, offered_hash=desired.config_hash)
        if who.new_token is not None:
            out.connection_settings.CopyFrom(token_offer(who.new_token, request.url, store.poll_interval_s))
    store.opamp_save(agent_id, state, disconnected=state.disconnected)
    return out


def _pick_command(store: Store, agent_id: str, capabilities: int, commands: list[Command]) -> Command | None:
    """The first restart the agent can carry out; every other command fails now, saying why."""
    chosen: Command | None = None
    can_restart = has(capabilities, AgentCap.AgentCapabilities_AcceptsRestartCommand)
    for command in commands:
        if command.action == "restart" and can_restart:
            chosen = chosen or command
            continue
        if command.action == "restart":
            why = "this OpAMP agent does not accept restart commands (no AcceptsRestartCommand capability)"
        else:
            why = f"OpAMP has no {command.action} command: only restart can be sent to an OpAMP agent"
        store.opamp_fail_commands(agent_id, [command.id], why)
    return chosen
