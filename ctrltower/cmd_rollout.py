"""`ctrltower rollout status|promote|pause|resume|abort`: look at and steer progressive rollouts.

status reads (viewer); the actions need an operator token and are audited on the server. An action on
a finished rollout is refused by the server (409) and exits CONFLICT (6). docs/rollouts.md.
"""

from __future__ import annotations

import json

import click

from ctrltower import exit_codes
from ctrltower.cmd_reconcile import _client, _exit_code_of, _fail, _server_options
from reconciler.errors import ServerRefused
from schemas.api import RolloutView
from schemas.errors import CtrlTowerError


def describe(r: RolloutView, *, measurements: int = 3) -> list[str]:
    """A rollout in a few lines: state, steps (done, current, pending), agents, newest evidence."""
    bases = ", ".join(f"{g} {sha[:12]}" for g, sha in sorted(r.bases.items()))
    out = [f"rollout {r.id} ({r.policy}): {r.commit_sha[:12]} {r.state}, was: {bases}"]
    if r.reason:
        out.append(f"  reason: {r.reason}")
    for s in r.steps:
        mark = {"done": "x", "current": ">", "pending": " "}[s.status]
        out.append(f"  [{mark}] {s.index + 1}. {s.description}")
    agents = ", ".join(f"{g} {a.new} new / {a.old} old" for g, a in sorted(r.agents.items()))
    out.append(f"  agents: {agents or 'none'}")
    for m in r.measurements[:measurements]:
        checks = "; ".join(
            f"{c.metric}={'-' if c.value is None else f'{c.value:.3g}'}"
            f" ({'<=' if c.comparison == 'max' else '>='} {c.threshold:g}) {c.verdict}"
            for c in m.checks
        )
        out.append(f"  {m.at:%H:%M:%S} step {m.step + 1} {m.verdict}: {checks}")
    return out


@click.group()
def rollout() -> None:
    """Progressive rollouts: status, promote, pause, resume, abort."""


@rollout.command("status")
@click.argument("rollout_id", type=int, required=False)
@_server_options(required=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def status(rollout_id: int | None, server: str, token: str | None, fmt: str) -> None:
    """One rollout (every measurement), or the active ones and the latest finished one."""
    try:
        with _client(server, token) as client:
            if rollout_id is not None:
                items = [client.rollout(rollout_id)]
            else:
                latest = client.rollouts(limit=10).items
                items = [r for r in latest if r.state in ("progressing", "paused")] or latest[:1]
    except CtrlTowerError as exc:
        _fail(_exit_code_of(exc), str(exc))
    if fmt == "json":
        click.echo(json.dumps([r.model_dump(mode="json") for r in items], sort_keys=True))
        return
    if not items:
        click.echo("no rollouts yet")
    for r in items:
        click.echo("\n".join(describe(r, measurements=100 if rollout_id is not None else 3)))


def _action(action: str, doc: str) -> click.Command:
    @click.argument("rollout_id", type=int)
    @click.option("--reason", default=None, help="Why (kept in the audit log).")
    @_server_options(required=True)
    def command(rollout_id: int, reason: str | None, server: str, token: str | None) -> None:
        try:
            with _client(server, token) as client:
                r = client.rollout_action(rollout_id, action, reason)
        except ServerRefused as exc:
            _fail(exit_codes.CONFLICT if exc.status == 409 else exit_codes.SERVER_ERROR, str(exc))
        except CtrlTowerError as exc:
            _fail(_exit_code_of(exc), str(exc))
        click.echo("\n".join(describe(r)))

    command.__doc__ = doc
    return rollout.command(action)(command)


promote = _action("promote", "Skip the current step (an analysis or a pause) and go on (operator).")
pause = _action("pause", "Pause the rollout; agents keep what they are served (operator).")
resume = _action("resume", "Resume a paused rollout; its current step starts over (operator).")
abort = _action("abort", "Abort: every agent of the rollout gets its previous revision back (operator).")
