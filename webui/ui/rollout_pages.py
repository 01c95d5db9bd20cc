"""The Rollouts page: each rollout's steps, agents per revision, every check's value against its
threshold, the reason and evidence of a rollback; operators promote, pause, resume or abort it.

`register(bp, principal)` adds the routes to the UI blueprint of `webui.ui.views`. Actions go through
the same store transition as the API (audited, 409 when the rollout is finished), after a confirm page.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from schemas.api import ROLLOUT_ACTIVE
from webui.auth import Principal
from webui.context import get_store
from webui.rollouts.actions import act
from webui.store.errors import StoreError
from webui.ui.session import operators_only

ACTIONS = {
    "promote": "Skip the current step (an analysis or a pause) and go on to the next one.",
    "pause": "Pause where it is: every agent keeps the revision it is served.",
    "resume": "Go on; the current step starts over.",
    "abort": "Every agent of the rollout gets its group's previous revision back; the commit is not"
    " published again.",
}


def register(bp: Blueprint, principal: Callable[[], Principal]) -> None:
    @bp.route("/rollouts")
    def rollouts() -> str:
        store = get_store()
        listing = store.list_rollouts(limit=20)
        chosen = request.args.get("id", type=int)
        if chosen is None and listing.items:
            chosen = listing.items[0].id
        detail = None
        if chosen is not None and 0 < chosen < 2**63:
            try:
                detail = store.get_rollout(chosen)
            except StoreError:
                flash(f"No rollout {chosen}.", "error")
        return render_template(
            "rollouts.html",
            rollouts=listing.items,
            detail=detail,
            active=ROLLOUT_ACTIVE,
            can_act=principal().can("operator"),
        )

    @bp.route("/rollouts/<int:rollout_id>/<action>", methods=["POST"])
    def rollout_action(rollout_id: int, action: str) -> Response | str:
        if action not in ACTIONS or not 0 < rollout_id < 2**63:
            abort(404)
        who = principal()
        operators_only(who, action, "rollouts")
        store = get_store()
        row = store.rollout_row(rollout_id)
        back = url_for("ui.rollouts", id=rollout_id)
        if request.form.get("confirm") != "yes":
            return render_template(
                "confirm.html",
                question=f"{action.capitalize()} rollout {rollout_id}"
                f" ({row.policy.name}, {row.commit_sha[:8]})?",
                explain=ACTIONS[action],
                action_url=url_for("ui.rollout_action", rollout_id=rollout_id, action=action),
                cancel_url=back,
            )
        try:
            act(store, row, action, actor=who.actor, role=who.role, reason=f"{action} by {who.actor} (UI)")
        except StoreError as exc:  # finished, not paused, or moved meanwhile: say so on the page
            flash(str(exc), "error")
            return redirect(back)
        flash(f"Rollout {rollout_id}: {action} done.", "ok")
        return redirect(back)
