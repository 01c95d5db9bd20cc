"""The web UI blueprint (`bp`, mounted at `/` by `webui.app.create_app`): fleet and agent pages,
agent commands, login and logout. Config pages (pipelines, groups, runs, tokens) are in
`webui.ui.config_pages`; both use the server's Store, metrics come through `webui.ui.metricsource`.

Access: every page needs a logged-in session (role viewer or better); agent commands need operator;
tokens need admin. Forms are POST with a CSRF token. Errors are HTML pages with the right status
(the JSON error shape is for `/api/...`).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.sansio.blueprints import BlueprintSetupState
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from schemas.api import ROLES, AgentView
from schemas.errors import CtrlTowerError
from webui.auth import Principal, authenticate
from webui.context import get_store
from webui.errors import ApiError, as_api_error
from webui.store import AgentFilter
from webui.store.errors import StoreError
from webui.store.rollouts import marker_label
from webui.ui import charts, config_pages, metricsource, rollout_pages, session
from webui.ui.diff import unified
from webui.ui.timerange import PRESETS, parse_range

bp = Blueprint(
    "ui", __name__, template_folder="templates", static_folder="static", static_url_path="/ui/static"
)

STATUSES = ("online", "degraded", "offline")
SYNC_STATUSES = ("Synced", "OutOfSync", "ApplyFailed", "Untrusted", "Drifted", "NoGroup")
ACTIONS = ("start", "stop", "restart", "shutdown")
PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
PUBLIC_ENDPOINTS = {"ui.login", "ui.static"}


@bp.record_once
def _setup(state: BlueprintSetupState) -> None:
    app = cast(Flask, state.app)
    session.configure_cookies(app)


@bp.before_request
def _require_login() -> Response | None:
    principal = session.load_principal()
    if principal is None and request.endpoint not in PUBLIC_ENDPOINTS:
        if request.method != "GET":
            abort(401)
        return redirect(url_for("ui.login", next=request.full_path.rstrip("?")))
    if request.method == "POST" and not session.csrf_ok():
        abort(
            400,
            description="the form expired or came from another site (CSRF check failed); reload and retry",
        )
    return None


@bp.after_request
def _no_store(response: Response) -> Response:
    if request.endpoint != "ui.static":
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self'; frame-ancestors 'none'; form-action 'self'"
        )
    return response


@bp.app_context_processor
def _template_globals() -> dict[str, Any]:
    return {
        "principal": g.get("principal") if request and request.blueprint == "ui" else None,
        "csrf_token": session.csrf_token,
        "fmt": format_metric,
        "ago": ago,
        "when": when,
    }


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> tuple[str, int]:
    code = exc.code or 500
    return render_template("error.html", status=code, title=exc.name, message=exc.description or ""), code


@bp.errorhandler(ApiError)
@bp.errorhandler(StoreError)
def _api_error(raised: ApiError | StoreError) -> tuple[str, int]:
    exc = as_api_error(raised)  # the status a store error answers with on the API too
    return render_template("error.html", status=exc.status, title=exc.code, message=exc.message), exc.status


@bp.errorhandler(CtrlTowerError)
def _ct_error(exc: CtrlTowerError) -> tuple[str, int]:
    return render_template("error.html", status=503, title="unavailable", message=str(exc)), 503


# --- helpers for templates ------------------------------------------------------------------------


def format_metric(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    return charts.format_value(value, unit)


def ago(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    seconds = max(0.0, time.time() - moment.timestamp())
    if seconds < 60:
        return f"{seconds:.0f}s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m ago"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h ago"
    return f"{seconds / 86400:.1f}d ago"


def when(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def principal() -> Principal:
    value = g.get("principal")
    assert isinstance(value, Principal)
    return value


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    try:
        value = int(request.args.get(name, default))
    except ValueError:
        abort(400, description=f"'{name}' must be an integer")
    return max(low, min(high, value))


def safe_next(target: str | None) -> str:
    """Only same-site relative paths: never an open redirect after login."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("ui.fleet")
    parts = urlsplit(target)
    return url_for("ui.fleet") if parts.scheme or parts.netloc else target


# --- login ----------------------------------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int]:
    next_url = safe_next(request.values.get("next"))
    if request.method == "GET":
        if g.get("principal") is not None:
            return redirect(next_url)
        return render_template("login.html", next_url=next_url, error=None)
    found = authenticate(request.form.get("token", "").strip())
    if found is None or not found.can(session.UI_ROLE):
        error = "That token is unknown, revoked, or may not use the UI."
        return render_template("login.html", next_url=next_url, error=error), 401
    session.log_in(found)
    get_store().audit(found.actor, found.role, "ui.login", None, None)
    return redirect(next_url)


@bp.route("/logout", methods=["POST"])
def logout() -> Response:
    session.log_out()
    flash("Logged out.", "ok")
    return redirect(url_for("ui.login"))


# --- fleet ----------------------------------------------------------------------------------------


def _labels_arg(text: str) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            abort(400, description="label filter: use key=value (comma-separated for several)")
        pairs.append((key.strip(), value.strip()))
    return tuple(pairs)


@bp.route("/")
def fleet() -> str:
    args = request.args
    filters = {
        "q": (args.get("q") or "").strip()[:200] or None,
        "group": args.get("group") or None,
        "label": (args.get("label") or "").strip()[:500] or None,
        "status": args.get("status") if args.get("status") in STATUSES else None,
        "sync": args.get("sync") if args.get("sync") in SYNC_STATUSES else None,
    }
    limit = _int_arg("limit", PAGE_SIZE, 1, MAX_PAGE_SIZE)
    offset = _int_arg("offset", 0, 0, 10**9)
    store = get_store()
    result = store.list_agents(
        AgentFilter(
            group=filters["group"],
            status=filters["status"],
            sync_status=filters["sync"],
            labels=_labels_arg(filters["label"] or ""),
            search=filters["q"],
        ),
        limit=limit,
        offset=offset,
    )
    groups, _ = store.list_groups()
    source = metricsource.from_app()
    latest, note = source.latest([a.id for a in result.items]) if result.items else ({}, None)

    def fleet_url(**changes: Any) -> str:
        params: dict[str, Any] = {k: v for k, v in filters.items() if v}
        params.update(changes)
        if limit != PAGE_SIZE:
            params["limit"] = limit
        return url_for("ui.fleet", **{k: v for k, v in params.items() if v not in (None, "", 0)})

    return render_template(
        "fleet.html",
        agents=result.items,
        page=result.page,
        counts={s: result.counts.get(s, 0) for s in STATUSES},
        statuses=STATUSES,
        sync_statuses=SYNC_STATUSES,
        group_names=sorted({g.name for g in groups} | ({filters["group"]} if filters["group"] else set())),
        filters=filters,
        latest=latest,
        metrics_note=note,
        fleet_url=fleet_url,
    )


# --- agent ----------------------------------------------------------------------------------------

CHARTS: list[tuple[str, str, tuple[str, ...]]] = [
    ("CPU (cores)", "cores", ("cpu",)),
    ("Memory (RSS)", "bytes", ("memory",)),
    ("Logs (records/s)", "/s", ("logs_in", "logs_out")),
    ("Metrics (points/s)", "/s", ("metrics_in", "metrics_out")),
    ("Traces (spans/s)", "/s", ("traces_in", "traces_out")),
    ("Send failures (items/s)", "/s", ("send_failed",)),
]


@bp.route("/agents/<agent_id>")
def agent(agent_id: str) -> str:
    store = get_store()
    view = store.get_agent(agent_id)
    now = time.time()
    window = parse_range(request.args, now)
    if window.error:
        flash(window.error, "error")
    # Charts are separate SVG images (GET /agents/<id>/charts/<n>.svg): the page renders without
    # waiting for the metrics process, and the browser fetches the charts in parallel.
    range_args: dict[str, Any] = {"range": window.name}
    if window.name == "custom":
        range_args |= {"from": window.local(window.start), "to": window.local(window.end)}
    chart_urls = [
        (title, url_for("ui.agent_chart", agent_id=agent_id, index=i, **range_args))
        for i, (title, _, _) in enumerate(CHARTS)
    ]
    desired, effective, config_note = _configs(view)
    diff = unified(effective, desired, "effective", "desired") if desired and effective is not None else []
    events = store.agent_events(agent_id, limit=50)
    can_operate = principal().can("operator")
    return render_template(
        "agent.html",
        agent=view,
        ranges=[*PRESETS],
        range=window.name,
        custom_from=window.local(window.start),
        custom_to=window.local(window.end),
        charts=chart_urls,
        diff=diff,
        desired_config=desired,
        config_note=config_note,
        events=events.items,
        can_operate=can_operate,
        # an OpAMP agent gets buttons only for what it can carry out; the rest is listed as unavailable
        actions=[a for a in ACTIONS if view.opamp is None or a in view.opamp.commands],
        unavailable=[a for a in ACTIONS if view.opamp is not None and a not in view.opamp.commands],
    )


@bp.route("/agents/<agent_id>/charts/<int:index>.svg")
def agent_chart(agent_id: str, index: int) -> Response:
    """One chart of the agent page as a standalone SVG image, with revision-apply markers."""
    if not 0 <= index < len(CHARTS):
        abort(404)
    store = get_store()
    store.get_agent(agent_id)  # 404 for an unknown agent
    window = parse_range(request.args, time.time())
    applied = store.agent_events(agent_id, kinds=["applied"], since=window.start, until=window.end, limit=200)
    markers = [charts.Marker(e.at.timestamp(), marker_label(e.revision, e.detail)) for e in applied.items]
    title, unit, names = CHARTS[index]
    series, note = metricsource.from_app().series(agent_id, names, window.start, window.end)
    svg = charts.render_chart(
        charts.Chart(
            title=title,
            unit=unit,
            start=window.start,
            end=window.end,
            markers=markers,
            series=[charts.Series(n, series.get(n, [])) for n in names],
            message=note if note and note.startswith("Charts unavailable") else None,
        ),
        standalone=True,
    )
    return Response(svg, mimetype="image/svg+xml")


def _configs(view: AgentView) -> tuple[str | None, str | None, str | None]:
    """(desired config text, effective config text, note). The agent reports only the hash it runs,
    so the effective text is the config of a published revision with that hash, when there is one."""
    store = get_store()
    if view.group is None or view.desired_revision is None:
        return None, None, "No desired config: the agent's labels match no group, or nothing is published."
    try:
        desired = store.get_revision(view.desired_revision)
    except StoreError:
        return None, None, "The desired revision is not in the store."
    desired_text = next((g.config for g in desired.group_configs if g.name == view.group), None)
    if view.reported_hash is None:
        return desired_text, None, "The agent has not reported running any config yet."
    if view.reported_hash == view.desired_hash:
        return desired_text, desired_text, None
    if view.effective_revision:
        try:
            effective = store.get_revision(view.effective_revision)
        except StoreError:
            effective = None
        if effective is not None:
            for group in effective.group_configs:
                if group.config_hash == view.reported_hash:
                    return desired_text, group.config, None
    return (
        desired_text,
        None,
        f"The agent runs config {view.reported_hash[:16]}, which matches no published revision "
        "(a local edit, or a revision this server no longer has); the desired config is below.",
    )


@bp.route("/agents/<agent_id>/<action>", methods=["POST"])
def agent_command(agent_id: str, action: str) -> Response | str:
    if action not in ACTIONS:
        abort(404)
    who = principal()
    session.operators_only(who, action, "collectors")
    store = get_store()
    view = store.get_agent(agent_id)
    if view.opamp is not None and action not in view.opamp.commands:
        flash(f"This OpAMP agent cannot {action}: see its capabilities below.", "error")
        return redirect(url_for("ui.agent", agent_id=agent_id))
    if request.form.get("confirm") != "yes":
        return render_template(
            "confirm.html",
            question=f"{action.capitalize()} the collector on {view.hostname}?",
            explain=f"This queues a {action} command for agent {view.id}; it runs on the agent's next poll.",
            action_url=url_for("ui.agent_command", agent_id=agent_id, action=action),
            cancel_url=url_for("ui.agent", agent_id=agent_id),
        )
    command = store.queue_command(agent_id, action, actor=who.actor, role=who.role)  # type: ignore[arg-type]
    flash(f"Queued {action} (command {command.id}); the agent runs it on its next poll.", "ok")
    return redirect(url_for("ui.agent", agent_id=agent_id))


@bp.route("/agents/<agent_id>/approve-reregistration", methods=["POST"])
def agent_approve_reregistration(agent_id: str) -> Response | str:
    """Let this agent's instance id register once more without its token (a reinstalled host)."""
    who = principal()
    if not who.can("operator"):
        abort(403, description="only operators may approve a re-registration")
    store = get_store()
    view = store.get_agent(agent_id)
    if request.form.get("confirm") != "yes":
        return render_template(
            "confirm.html",
            question=f"Allow {view.hostname} ({view.instance_id}) to register again without its token?",
            explain="For the next hour, one registration with this instance id takes this agent over "
            "without proving it holds the agent's token: do this only for a host you reinstalled.",
            action_url=url_for("ui.agent_approve_reregistration", agent_id=agent_id),
            cancel_url=url_for("ui.agent", agent_id=agent_id),
        )
    store.approve_reregistration(agent_id, actor=who.actor, role=who.role)
    flash("Approved: the next registration of this instance id within an hour needs no token.", "ok")
    return redirect(url_for("ui.agent", agent_id=agent_id))


config_pages.register(bp, principal, ROLES)
rollout_pages.register(bp, principal)
