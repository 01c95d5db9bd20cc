"""The agent API (/api/agent/v1): registration, config pull with ETag/304, status reports.

The config endpoint is the hot path (every agent polls it every few seconds): per worker, `ConfigCache`
keeps each agent's token hash and group and each group's (hash, body) of the current revision. Whether
a publish or a re-registration happened since: on SQLite one read of two counters per request; on
PostgreSQL (any number of replicas) the counters are pushed to the cache by LISTEN/NOTIFY, so a 304
costs no database round trip at all.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, request

from schemas.api import (
    HEADER_COLLECTOR_SHA256,
    HEADER_COLLECTOR_VERSION,
    HEADER_CONFIG_HASH,
    HEADER_GROUP,
    HEADER_REVISION,
    AgentRegistration,
    ErrorBody,
    ErrorDetail,
    LabelScope,
    RegistrationResponse,
    StatusReport,
    StatusResponse,
    labels_outside,
)
from schemas.signing import STATEMENT_HEADER
from webui.api import doc, parse_body
from webui.auth import bearer_token, current_principal, require_role
from webui.context import get_store
from webui.errors import ApiError, Forbidden, NotFound, Unauthorized, as_api_error, json_response
from webui.scrape_policy import ScrapeAllow, ScrapeUrlRefused, scrape_url
from webui.settings import SETTINGS_KEY
from webui.store import ServedConfig, Store
from webui.store.agents import AgentAuth
from webui.store.errors import StoreError
from webui.store.tokens import hash_secret, same_hash

log = logging.getLogger(__name__)
bp = Blueprint("agent_api", __name__)
CACHE_KEY = "ctrltower.config_cache"


class ConfigCache:
    """Per-worker cache of agent auth and served configs, keyed by the store's change counters."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._counters: tuple[int, int] | None = None
        self._agents: dict[str, AgentAuth] = {}
        self._configs: dict[tuple[str | None, str], ServedConfig | None] = {}
        self._revision: tuple[str | None] | None = None  # the current revision, once asked
        self._pushed: tuple[int, int] | None = None
        # A fallback re-read well inside one poll interval, in case a notification is ever lost.
        fallback = max(0.5, min(5.0, store.poll_interval_s / 3))
        self._push = store.watch_changes(self._on_change, fallback_s=fallback)

    def _on_change(self, counters: tuple[int, int]) -> None:
        self._pushed = counters

    def _check(self) -> None:
        pushed = self._pushed
        counters = pushed if self._push and pushed is not None else self.store.counters()
        if counters != self._counters:
            with self._lock:
                if counters != self._counters:
                    # One query loads every agent: cheaper than one per agent on a fleet of 25,000.
                    self._agents = self.store.all_agent_auth()
                    self._configs = {}
                    self._revision = None
                    self._counters = counters

    def recheck(self, agent_id: str) -> AgentAuth | None:
        """The agent's auth from the database (a token that does not match the cached one may be newer
        than this worker's last notification: another replica registered it a moment ago)."""
        auth = self.store.agent_auth(agent_id)
        if auth is not None:
            self._agents[agent_id] = auth
        return auth

    def current_revision(self) -> str | None:
        if self._revision is None:
            self._revision = (self.store.current_revision(),)
        return self._revision[0]

    def agent(self, agent_id: str) -> AgentAuth | None:
        self._check()
        auth = self._agents.get(agent_id)
        if auth is None:  # registered since the last load (new agents do not bump the counters)
            auth = self.store.agent_auth(agent_id)
            if auth is not None and len(self._agents) < 1_000_000:
                self._agents[agent_id] = auth
        return auth

    def config(self, group: str, sha: str | None = None) -> ServedConfig | None:
        """The group's config at `sha` (an agent pinned by a rollout), or at the current revision."""
        key = (sha, group)
        if key in self._configs:
            return self._configs[key]
        served = self.store.served_config(group, sha)
        self._configs[key] = served
        return served


@dataclass(frozen=True)
class ConfigAnswer:
    status: int
    headers: dict[str, str]
    body: bytes


def _cache() -> ConfigCache:
    cache = current_app.extensions.get(CACHE_KEY)
    if cache is None:
        cache = current_app.extensions[CACHE_KEY] = ConfigCache(get_store())
    assert isinstance(cache, ConfigCache)
    return cache


def check_agent(cache: ConfigCache, agent_id: str, token: str | None) -> AgentAuth:
    """The agent, if `token` is its current token: else 401 unauthorized or 404 not_found."""
    if not token:
        raise Unauthorized("this agent's bearer token is required")
    auth = cache.agent(agent_id)
    if auth is None:
        raise NotFound(f"no agent {agent_id!r}: register again", details={"agent_id": agent_id})
    digest = hash_secret(token)
    if not same_hash(digest, auth.token_hash):
        fresh = cache.recheck(agent_id)
        if fresh is None or not same_hash(digest, fresh.token_hash):
            raise Unauthorized("token is not this agent's current token: register again")
        auth = fresh
    return auth


def etag_matches(if_none_match: str | None, config_hash: str) -> bool:
    if not if_none_match:
        return False
    for part in if_none_match.split(","):
        tag = part.strip()
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag == "*" or tag.strip('"') == config_hash:
            return True
    return False


def config_answer(
    cache: ConfigCache, agent_id: str, token: str | None, if_none_match: str | None
) -> ConfigAnswer:
    """The whole config endpoint as a function (raises ApiError for 401/404)."""
    auth = check_agent(cache, agent_id, token)
    served = None if auth.group is None else cache.config(auth.group, auth.served_sha)
    if served is None:
        if cache.current_revision() is None:
            raise NotFound("nothing has been published yet", code="no_revision")
        raise NotFound(
            "this agent's labels match no group of the current revision",
            code="no_group",
            details={"agent_id": agent_id},
        )
    headers = {
        "ETag": f'"{served.config_hash}"',
        HEADER_REVISION: served.revision,
        HEADER_GROUP: served.group,
        HEADER_CONFIG_HASH: served.config_hash,
        "Cache-Control": "no-cache",
    }
    if etag_matches(if_none_match, served.config_hash):
        return ConfigAnswer(304, headers, b"")
    if served.statement is not None:  # only with the body: the 304 path stays as it was
        headers[STATEMENT_HEADER] = served.statement
    return ConfigAnswer(200, headers, served.body)


@bp.post("/agents")
@require_role("enroll")
@doc(
    "Register an agent (enroll token); the same instance_id again (with its current agent_token, or "
    "after an operator's approval) updates it and issues a new token",
    body=AgentRegistration,
    response=RegistrationResponse,
    errors=(400, 401, 403, 409, 413, 422),
)
def register() -> Response:
    reg = pin_metrics_url(parse_body(AgentRegistration))
    principal = current_principal()
    scope = principal.label_scope if principal is not None else None
    check_label_scope(reg.labels, scope)
    return json_response(get_store().register_agent(reg, scope=scope))


def check_label_scope(labels: dict[str, str], scope: LabelScope | None) -> None:
    """403 `labels_out_of_scope` if the enroll token's scope does not allow these labels."""
    outside = labels_outside(labels, scope)
    if outside:
        raise Forbidden(
            f"the enroll token may not register labels {sorted(outside)}",
            code="labels_out_of_scope",
            details={"labels": dict(list(outside.items())[:20]), "allowed": scope},
        )


def pin_metrics_url(reg: AgentRegistration, *, refuse: bool = True) -> AgentRegistration:
    """The registration with the metrics URL the server may scrape (webui/scrape_policy.py): the host
    the agent connected from unless the announced one is allow-listed, path /metrics only. A URL that
    is not http://HOST:PORT/metrics is a 422 (`refuse`) or dropped (OpAMP: no scraping, still enrolled)."""
    settings = current_app.config[SETTINGS_KEY]
    try:
        url = scrape_url(reg.metrics_url, request.remote_addr, ScrapeAllow.parse(settings.scrape_allow))
    except ScrapeUrlRefused as exc:
        if refuse:
            raise ApiError(str(exc), code="metrics_url_refused", status=422) from None
        url = None
    if url != reg.metrics_url and reg.metrics_url:
        log.info("agent %s announced %s; scraping %s", reg.instance_id, reg.metrics_url[:200], url)
    return reg.model_copy(update={"metrics_url": url})


@bp.get("/agents/<agent_id>/config")
@doc(
    "The agent's rendered collector config (text/yaml) with ETag; 304 on If-None-Match",
    response_media="text/yaml",
    errors=(304, 401, 404),
)
def get_config(agent_id: str) -> Response:
    answer = config_answer(_cache(), agent_id, bearer_token(), request.headers.get("If-None-Match"))
    resp = Response(answer.body, status=answer.status, headers=answer.headers)
    if answer.status == 200:
        resp.mimetype = "text/yaml"
    return resp


@bp.get("/agents/<agent_id>/collectors/<version>")
@doc(
    "Download a published collector build (application/octet-stream) with its sha256 and signed"
    " statement in headers; 404 no_collector",
    response_media="application/octet-stream",
    errors=(401, 404, 422),
)
def get_collector(agent_id: str, version: str) -> Response:
    from webui.api.collectors import check_version

    check_agent(_cache(), agent_id, bearer_token())
    build, data = get_store().collector_bytes(check_version(version))
    headers = {HEADER_COLLECTOR_VERSION: build.version, HEADER_COLLECTOR_SHA256: build.sha256}
    if build.statement is not None:
        headers[STATEMENT_HEADER] = build.statement
    return Response(data, status=200, headers=headers, mimetype="application/octet-stream")


@bp.post("/agents/<agent_id>/status")
@doc(
    "Report collector state, applies, drift and command acks; answers pending commands",
    body=StatusReport,
    response=StatusResponse,
    errors=(400, 401, 404, 413, 422),
)
def post_status(agent_id: str) -> Response:
    store = get_store()
    check_agent(_cache(), agent_id, bearer_token())
    report = parse_body(StatusReport)
    _check_int64(report)
    commands = store.report_status(agent_id, report)
    return json_response(StatusResponse(commands=commands, poll_interval_s=store.poll_interval_s))


_INT64 = 2**63 - 1


def _check_int64(report: StatusReport) -> None:
    """SQLite integers are 64-bit: refuse larger ids/pids with a 422 instead of failing on write."""
    bad = [f"acks.{i}.id" for i, a in enumerate(report.acks) if not 0 <= a.id <= _INT64]
    if report.collector_pid is not None and not 0 <= report.collector_pid <= _INT64:
        bad.append("collector_pid")
    if bad:
        raise ApiError("integer out of range", code="validation_error", status=422, details={"fields": bad})


# --- the hot path without Flask -----------------------------------------------------------------------

_CONFIG_PATH = re.compile(r"^/api/agent/v1/agents/([^/]+)/config$")
_REASONS = {200: "200 OK", 304: "304 Not Modified", 401: "401 Unauthorized", 404: "404 Not Found"}
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ConfigFastPath:
    """WSGI middleware answering `GET .../agents/{id}/config` without Flask's request machinery.

    Same function (`config_answer`), same answers and error bodies as the Flask route, about 4x less CPU
    per poll (Flask's request context, session and routing cost ~250 us; this path ~60 us). Any other
    request, and any unexpected error, goes to the Flask app.
    """

    def __init__(self, app: WsgiApp, cache: ConfigCache) -> None:
        self.app = app
        self.cache = cache

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "GET":
            return self.app(environ, start_response)
        m = _CONFIG_PATH.match(environ.get("PATH_INFO", ""))
        if m is None:
            return self.app(environ, start_response)
        header = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, value = header.partition(" ")
        token = value.strip() if scheme.lower() == "bearer" and value.strip() else None
        try:
            answer = config_answer(self.cache, m.group(1), token, environ.get("HTTP_IF_NONE_MATCH"))
        except (ApiError, StoreError) as raised:
            exc = as_api_error(raised)
            body = ErrorBody(error=ErrorDetail(code=exc.code, message=exc.message, details=exc.details))
            data = body.model_dump_json().encode()
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
            if exc.status == 401:
                headers.append(("WWW-Authenticate", 'Bearer realm="ctrltower"'))
            start_response(_REASONS.get(exc.status, f"{exc.status} Error"), headers)
            return [data]
        except Exception:  # a bug: let Flask log it and answer the JSON 500
            return self.app(environ, start_response)
        out = list(answer.headers.items())
        if answer.status == 200:  # a 304 carries no Content-Length (RFC 9110 15.4.5) and no body
            out.append(("Content-Type", "text/yaml; charset=utf-8"))
            out.append(("Content-Length", str(len(answer.body))))
        start_response(_REASONS[answer.status], out)
        return [answer.body]
