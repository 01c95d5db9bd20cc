"""The rollouts API (/api/v1/rollouts): list and read rollouts, and the operator's actions on one.

Reading needs viewer; promote, pause, resume and abort need operator and are audited. An action on a
finished rollout (or on one that moved meanwhile) is a 409 with the JSON error body.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from schemas.api import RolloutAction, RolloutList, RolloutState, RolloutView
from webui.api import LIMIT, OFFSET, QueryParam, doc, parse_body, query_choice, query_int
from webui.auth import current_principal, require_role
from webui.context import get_store
from webui.errors import NotFound, json_response
from webui.rollouts.actions import act

bp = Blueprint("rollouts_api", __name__)

STATES: tuple[RolloutState, ...] = (
    "progressing",
    "paused",
    "succeeded",
    "rolled_back",
    "aborted",
    "superseded",
)
_ERRORS = (400, 401, 403, 404, 409, 413, 422)


@bp.get("/rollouts")
@require_role("viewer")
@doc(
    "Rollouts, newest first, with their steps, agents per revision and latest measurements",
    response=RolloutList,
    query=(QueryParam("state", "string", "only rollouts in this state", enum=STATES), LIMIT, OFFSET),
    errors=(400, 401, 403),
)
def list_rollouts() -> Response:
    return json_response(
        get_store().list_rollouts(
            limit=query_int("limit", 20, minimum=1, maximum=1000),
            offset=query_int("offset", 0, maximum=10_000_000),
            state=query_choice("state", STATES),
        )
    )


@bp.get("/rollouts/<int:rollout_id>")
@require_role("viewer")
@doc(
    "One rollout with every measurement (each check's value, threshold and verdict: the evidence)",
    response=RolloutView,
    errors=(401, 403, 404),
)
def get_rollout(rollout_id: int) -> Response:
    return json_response(get_store().get_rollout(_id(rollout_id)))


def _id(rollout_id: int) -> int:
    """Ids are 64-bit in the database: a larger number names no rollout (404, not an overflow)."""
    if not 0 < rollout_id < 2**63:
        raise NotFound(f"no rollout {rollout_id}", details={"rollout_id": rollout_id})
    return rollout_id


def _act(rollout_id: int, action: str) -> Response:
    body = parse_body(RolloutAction) if request.content_length else RolloutAction()
    store = get_store()
    row = store.rollout_row(_id(rollout_id))
    p = current_principal()
    assert p is not None  # require_role ran first
    reason = f"{action} by {p.actor}" + (f": {body.reason}" if body.reason else "")
    act(store, row, action, actor=p.actor, role=p.role, reason=reason)
    return json_response(store.get_rollout(rollout_id))


def _action_view(action: str, summary: str) -> None:
    """POST /rollouts/<id>/<action>: the four actions differ only in what they change."""

    @require_role("operator")
    @doc(summary, body=RolloutAction, response=RolloutView, errors=_ERRORS)
    def view(rollout_id: int) -> Response:
        return _act(rollout_id, action)

    bp.add_url_rule(
        f"/rollouts/<int:rollout_id>/{action}", endpoint=f"{action}_rollout", view_func=view, methods=["POST"]
    )


_action_view(
    "promote", "Skip the current step (an analysis, a pause) and go on to the next (operator, audited)"
)
_action_view("pause", "Pause the rollout where it is; agents keep what they are served (operator, audited)")
_action_view("resume", "Resume a paused rollout; its current step starts over (operator, audited)")
_action_view("abort", "Abort: every agent of the rollout gets its previous revision back (operator, audited)")
