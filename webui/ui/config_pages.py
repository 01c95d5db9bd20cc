"""Pages about what Git says should run: pipelines (with their graphs), groups (agents, rendered
config, history, diff between two revisions), reconcile runs, and tokens (admin only).

`register(bp, ...)` adds the routes to the UI blueprint of `webui.ui.views`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from markupsafe import Markup
from werkzeug.wrappers import Response

from webui.auth import Principal
from webui.context import get_store
from webui.store import AgentFilter
from webui.store.errors import StoreError
from webui.ui.diff import from_text
from webui.ui.graph import render_graph

GROUP_AGENTS_SHOWN = 20
RUNS_PAGE = 50


def register(bp: Blueprint, principal: Callable[[], Principal], roles: Sequence[str]) -> None:
    @bp.route("/pipelines")
    def pipelines() -> str:
        items, revision = get_store().list_pipelines()
        return render_template("pipelines.html", pipelines=items, revision=revision)

    @bp.route("/pipelines/<name>")
    def pipeline(name: str) -> str:
        graph = get_store().get_pipeline(name)
        node_data: dict[str, dict[str, Any]] = {
            n.id: {"class": n.class_, "type": n.type, "config": n.config} for n in graph.nodes
        }
        return render_template(
            "pipeline.html",
            pipeline=graph,
            svg=Markup(render_graph(graph)),
            node_data=node_data,
            revision=None,
        )

    @bp.route("/groups")
    def groups() -> str | Response:
        store = get_store()
        views, _revision = store.list_groups()
        if not views:
            return render_template("groups.html", groups=[], selected=None)
        name = request.args.get("group") or views[0].name
        if name not in {g.name for g in views}:
            flash(f"No group {name[:63]!r} in the current revision.", "error")
            return redirect(url_for("ui.groups"))
        diff_from = request.args.get("from") or None
        diff_to = request.args.get("to") or None
        detail = store.get_group(name)
        if diff_from is None and diff_to is None and len(detail.history) > 1:
            diff_from, diff_to = detail.history[1].commit_sha, detail.history[0].commit_sha
        diff_lines = []
        if diff_from and diff_to:
            try:
                detail = store.get_group(name, diff=(diff_from, diff_to))
            except StoreError as exc:
                flash(f"Cannot diff: {exc.message}", "error")
                diff_from = diff_to = None
            else:
                diff_lines = from_text(detail.diff or "")
        agents = store.list_agents(AgentFilter(group=name), limit=GROUP_AGENTS_SHOWN)
        selected = {
            "name": detail.group.name,
            "selector": detail.group.selector,
            "priority": detail.group.priority,
            "pipelines": detail.group.pipelines,
            "config_hash": detail.group.config_hash,
            "config": detail.config,
        }
        history = [
            {
                "commit_sha": h.commit_sha,
                "published_at": h.published_at,
                "config_hash": h.config_hash,
                "message": h.message,
                "current": index == 0,
            }
            for index, h in enumerate(detail.history)
        ]
        agent_counts = {
            k: v for k, v in agents.counts.items() if v and k in ("online", "degraded", "offline")
        }
        return render_template(
            "groups.html",
            groups=views,
            selected=selected,
            agents=agents.items,
            agent_total=agents.page.total,
            agent_counts=agent_counts,
            history=history,
            diff_from=diff_from,
            diff_to=diff_to,
            diff=diff_lines,
        )

    @bp.route("/runs")
    def runs() -> str:
        result = get_store().list_reconcile_runs(limit=RUNS_PAGE)
        return render_template("runs.html", runs=result.items)

    def require_admin() -> Principal:
        who = principal()
        if not who.can("admin"):
            abort(403, description="tokens are for admins only")
        return who

    @bp.route("/tokens")
    def tokens() -> str:
        require_admin()
        return render_template("tokens.html", tokens=get_store().list_tokens(), roles=roles, created=None)

    @bp.route("/tokens", methods=["POST"])
    def token_create() -> str | tuple[str, int]:
        who = require_admin()
        role = request.form.get("role", "")
        name = request.form.get("name", "").strip()
        if role not in roles or not name or len(name) > 128:
            flash("Give a name (1-128 characters) and one of the roles.", "error")
            page = render_template("tokens.html", tokens=get_store().list_tokens(), roles=roles, created=None)
            return page, 400
        created = get_store().create_token(role, name, actor=who.actor, actor_role=who.role)  # type: ignore[arg-type]
        return render_template("tokens.html", tokens=get_store().list_tokens(), roles=roles, created=created)

    @bp.route("/tokens/<int:token_id>/revoke", methods=["POST"])
    def token_revoke(token_id: int) -> str | Response:
        who = require_admin()
        if request.form.get("confirm") != "yes":
            return render_template(
                "confirm.html",
                question=f"Revoke token {token_id}?",
                explain="Every client and UI session using it is refused from now on.",
                action_url=url_for("ui.token_revoke", token_id=token_id),
                cancel_url=url_for("ui.tokens"),
            )
        view = get_store().revoke_token(token_id, actor=who.actor, actor_role=who.role)
        flash(f"Revoked token {view.id} ({view.name or view.role}).", "ok")
        return redirect(url_for("ui.tokens"))
