"""An operator's action on a rollout (promote, pause, resume, abort): what it changes, and when it is
refused. The API (`webui/api/rollouts.py`) and the UI (`webui/ui/rollout_pages.py`) both act through
`act`, so the two cannot disagree; the store's `transition` makes the move (compare-and-set, audited).
"""

from __future__ import annotations

from schemas.api import ROLLOUT_ACTIVE
from webui.store.errors import Conflict
from webui.store.rollouts import RolloutRow, RolloutsMixin


def changes(row: RolloutRow, action: str) -> tuple[str, int | None, bool]:
    """(new state, new step or None, whether the step's clock restarts) for an operator's action; a
    store Conflict when the rollout is finished or (resume) not paused."""
    if row.state not in ROLLOUT_ACTIVE:
        raise Conflict(
            f"rollout {row.id} is {row.state}: nothing to {action}",
            code="rollout_finished",
            details={"rollout_id": row.id, "state": row.state},
        )
    if action == "promote":  # skip what the current step waits for
        return "progressing", row.step + 1, False
    if action == "pause":
        return "paused", None, False
    if action == "resume":
        if row.state != "paused":
            raise Conflict(
                f"rollout {row.id} is not paused", code="rollout_not_paused", details={"state": row.state}
            )
        return "progressing", None, True  # the step's clock starts again
    return "aborted", None, False  # abort: every agent back on its group's previous revision


def act(
    store: RolloutsMixin, row: RolloutRow, action: str, *, actor: str, role: str, reason: str
) -> RolloutRow:
    """Do an operator's action on `row` (store errors: finished, not paused, moved meanwhile)."""
    state, step, restart = changes(row, action)
    return store.transition(
        row,
        actor=actor,
        role=role,
        action=action,
        reason=reason,
        state=state,
        step=step,
        restart_step=restart,
    )
