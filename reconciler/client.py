"""HTTP client of the control API for the reconciler: the only httpx user in `reconciler`.

The transport is injected (an `httpx.Client` built by the caller), so tests and the CLI decide
timeouts and where requests go. Every failure becomes a `reconciler.errors` type with the cause
chained: 409 `revision_conflict` -> RevisionConflict, other 4xx -> ServerRefused, 5xx and
network errors -> ServerUnavailable.
"""

from __future__ import annotations

from typing import Any, TypeVar, get_args

import httpx
from pydantic import BaseModel, ValidationError

from reconciler.errors import RevisionConflict, ServerRefused, ServerUnavailable
from schemas.api import (
    AgentList,
    AgentStatus,
    ErrorBody,
    GroupList,
    PublishResult,
    ReconcileRunList,
    ReconcileRunReport,
    RevisionList,
    RevisionPublish,
    RevisionSummary,
    RolloutList,
    RolloutView,
    SyncStatus,
)

M = TypeVar("M", bound=BaseModel)

STATUSES = set(get_args(AgentStatus))
SYNC_STATUSES = set(get_args(SyncStatus))


def make_http_client(server: str, token: str, *, timeout_s: float = 30.0) -> httpx.Client:
    """The HTTP client the CLI injects: base URL, bearer token, timeouts."""
    return httpx.Client(
        base_url=server.rstrip("/"),
        headers={"Authorization": f"Bearer {token}", "User-Agent": "ctrltower-reconciler"},
        timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
    )


class ControlClient:
    """Typed calls of /api/v1 that the reconciler, `plan --server` and `status` need."""

    def __init__(self, http: httpx.Client) -> None:
        self._http = http

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, *, json: Any = None, params: Any = None) -> httpx.Response:
        try:
            response = self._http.request(method, path, json=json, params=params)
        except httpx.HTTPError as exc:
            raise ServerUnavailable(f"{method} {path}: cannot reach the server: {exc}") from exc
        if response.status_code < 400:
            return response
        code, message = _error_of(response)
        text = f"{method} {path}: HTTP {response.status_code} {code}: {message}"
        if response.status_code == 409 and code == "revision_conflict":
            raise RevisionConflict(text)
        if response.status_code >= 500:
            raise ServerUnavailable(text, status=response.status_code, code=code)
        raise ServerRefused(text, status=response.status_code, code=code)

    def _get(self, path: str, model: type[M], params: Any = None) -> M:
        return _parse(self._request("GET", path, params=params), model)

    # --- revisions --------------------------------------------------------------------------------

    def current_revision(self) -> RevisionSummary | None:
        """The revision the server serves now, or None when nothing was published yet."""
        page = self._get("/api/v1/revisions", RevisionList, params={"limit": 1})
        for item in page.items:
            if item.current:
                return item
        return None

    def publish(self, revision: RevisionPublish) -> PublishResult:
        body = revision.model_dump(mode="json", by_alias=True)
        return _parse(self._request("POST", "/api/v1/revisions", json=body), PublishResult)

    # --- runs, groups, agents ---------------------------------------------------------------------

    def report_run(self, report: ReconcileRunReport) -> None:
        self._request("POST", "/api/v1/reconcile-runs", json=report.model_dump(mode="json"))

    def runs(self, limit: int = 20) -> ReconcileRunList:
        return self._get("/api/v1/reconcile-runs", ReconcileRunList, params={"limit": limit})

    # --- rollouts (ctrltower rollout, status) -----------------------------------------------------------

    def rollouts(self, limit: int = 20, state: str | None = None) -> RolloutList:
        params: dict[str, Any] = {"limit": limit}
        if state is not None:
            params["state"] = state
        return self._get("/api/v1/rollouts", RolloutList, params=params)

    def rollout(self, rollout_id: int) -> RolloutView:
        return self._get(f"/api/v1/rollouts/{rollout_id}", RolloutView)

    def rollout_action(self, rollout_id: int, action: str, reason: str | None = None) -> RolloutView:
        body = {} if reason is None else {"reason": reason}
        path = f"/api/v1/rollouts/{rollout_id}/{action}"
        return _parse(self._request("POST", path, json=body), RolloutView)

    def groups(self) -> GroupList:
        return self._get("/api/v1/groups", GroupList)

    def agent_counts(self) -> tuple[int, dict[str, int], dict[str, int]]:
        """(total agents, agents per status, agents per sync status), from one small request."""
        page = self._get("/api/v1/agents", AgentList, params={"limit": 1})
        by_status = {k: v for k, v in page.counts.items() if k in STATUSES}
        by_sync = {k: v for k, v in page.counts.items() if k in SYNC_STATUSES}
        return page.page.total, by_status, by_sync


def _error_of(response: httpx.Response) -> tuple[str, str]:
    try:
        body = ErrorBody.model_validate_json(response.content)
    except ValidationError:
        return "http_error", response.text[:200].strip() or response.reason_phrase
    return body.error.code, body.error.message


def _parse(response: httpx.Response, model: type[M]) -> M:
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise ServerRefused(
            f"{response.request.method} {response.request.url.path}: unexpected answer: {exc}"
        ) from exc


__all__ = ["ControlClient", "make_http_client"]
