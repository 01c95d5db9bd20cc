"""`/api/v1/metrics/...`: the Flask blueprint that proxies metric queries to the metrics process.

Viewer role required. The metrics process validates parameters and answers in the one error shape;
this blueprint forwards the query string and the answer, and answers 503 `metrics_unavailable`
when the process is down. Endpoints are documented in docs/metrics.md.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, json, request

from webui.auth import require_role
from webui.errors import api_error
from webui.metrics.client import MetricsClient, MetricsUnavailable, socket_of
from webui.settings import SETTINGS_KEY, ServerSettings

bp = Blueprint("metrics_api", __name__)
CLIENT_KEY = "ctrltower.metrics_client"


def _client() -> MetricsClient:
    client = current_app.extensions.get(CLIENT_KEY)
    if client is None:
        settings = current_app.config[SETTINGS_KEY]  # set by create_app
        assert isinstance(settings, ServerSettings)
        client = current_app.extensions.setdefault(CLIENT_KEY, MetricsClient(socket_of(settings)))
    assert isinstance(client, MetricsClient)
    return client


def _proxy(path: str) -> Response:
    params = {k: request.args.getlist(k) for k in request.args}
    try:
        status, body = _client().get(path, params)
    except MetricsUnavailable as exc:
        return api_error(503, "metrics_unavailable", "the metrics process is not answering", str(exc))
    if status >= 400 and not (isinstance(body, dict) and "error" in body):
        return api_error(502, "metrics_error", f"metrics process answered {status}")
    return Response(json.dumps(body), status=status, mimetype="application/json")


@bp.get("/query")
@require_role("viewer")
def query() -> Response:
    """Time series of one metric for an agent, a group or the fleet (`agent=`/`group=`/neither),
    `metric`, `start`, `end`, `step`, `agg`; with revision-apply annotations."""
    return _proxy("/query")


@bp.get("/latest")
@require_role("viewer")
def latest() -> Response:
    """Latest value of every metric for many agents at once (`agents=ID,ID` or repeated `agent=`)."""
    return _proxy("/latest")


@bp.get("/top")
@require_role("viewer")
def top() -> Response:
    """The top `n` agents by the latest value of `metric` (optionally within `group`)."""
    return _proxy("/top")


@bp.get("/health")
@require_role("viewer")
def health() -> Response:
    """Scrape health per agent: last attempt/success, consecutive failures, last error."""
    return _proxy("/health")
