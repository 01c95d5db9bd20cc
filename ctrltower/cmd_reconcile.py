"""CLI of the reconciler: `plan` (pull-request CI), `reconcile` (CronJob or loop), `status`.

Each command parses options, builds the settings and clients once, calls one library function,
prints the result and returns a documented exit code (ctrltower/exit_codes.py, docs/reconciler.md).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TypeVar

import click

from ctrltower import exit_codes
from ctrltower.params import parse_duration, signing_key_option
from reconciler.client import ControlClient, make_http_client
from reconciler.errors import ConflictError, GitError, ServerError
from reconciler.explain import FORMATS, render
from reconciler.git import BadSource, GitRepo, Source, default_cache_dir, redact
from reconciler.plan import build_plan
from reconciler.run import ReconcileSettings, RunResult, reconcile_once, run_loop
from schemas.errors import CtrlTowerError

TOKEN_ENV = "CTRLTOWER_TOKEN"


def _fail(code: int, message: str) -> NoReturn:
    click.echo(f"ctrltower: {redact(message)}", err=True)
    sys.exit(code)


def _exit_code_of(exc: CtrlTowerError) -> int:
    if isinstance(exc, GitError):
        return exit_codes.GIT_ERROR
    if isinstance(exc, ConflictError):
        return exit_codes.CONFLICT
    if isinstance(exc, ServerError):
        return exit_codes.SERVER_ERROR
    return exit_codes.INTERNAL


F = TypeVar("F", bound=Callable[..., Any])


def _server_options(required: bool) -> Callable[[F], F]:
    def decorate(fn: F) -> F:
        fn = click.option(
            "--token",
            envvar=TOKEN_ENV,
            show_envvar=True,
            help="API token (prefer the environment variable: arguments show up in process lists).",
        )(fn)
        fn = click.option(
            "--server", required=required, help="Control plane URL, e.g. http://ctrltower:8080"
        )(fn)
        return fn

    return decorate


def _client(server: str, token: str | None) -> ControlClient:
    if not token:
        _fail(exit_codes.USAGE, f"--server needs a token: pass --token or set {TOKEN_ENV}")
    return ControlClient(make_http_client(server, token))


# --- plan --------------------------------------------------------------------------------------------


@click.command()
@click.option(
    "--repo",
    "repo_dir",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Local Git repository (the PR checkout; needs the base commit fetched).",
)
@click.option("--base", "base_ref", required=True, help="Base ref or SHA (e.g. origin/main).")
@click.option("--head", "head_ref", default="HEAD", show_default=True, help="Head ref or SHA.")
@click.option("--path", "subdir", default="", help="Subdirectory holding the config repo.")
@_server_options(required=False)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
@click.option(
    "--full", is_flag=True, help="Compile every file of both sides, not only what the change touches."
)
@click.option("--exit-code", is_flag=True, help=f"Exit {exit_codes.CHANGES} when a rendered config changes.")
def plan(
    repo_dir: str,
    base_ref: str,
    head_ref: str,
    subdir: str,
    server: str | None,
    token: str | None,
    fmt: str,
    full: bool,
    exit_code: bool,
) -> None:
    """Show what the change base..head does to each group's rendered config."""
    agents: dict[str, int] | None = None
    try:
        if server:
            with _client(server, token) as client:
                agents = {g.name: g.agents for g in client.groups().items}
        with GitRepo.open(Path(repo_dir)) as repo:
            result = build_plan(repo, base_ref, head_ref, subdir=subdir, agents_per_group=agents, full=full)
    except CtrlTowerError as exc:
        _fail(_exit_code_of(exc), str(exc))
    click.echo(render(result, fmt), nl=False)  # type: ignore[arg-type]
    if not result.valid:
        sys.exit(exit_codes.FINDINGS)
    if exit_code and result.has_changes:
        sys.exit(exit_codes.CHANGES)


# --- reconcile -----------------------------------------------------------------------------------------


def _result_line(result: RunResult) -> str:
    timing = result.timings_s.get("total")
    suffix = f" in {timing:.3f}s" if timing is not None else ""
    return f"reconcile {result.source}@{result.ref}: {result.message}{suffix}"


def _print_result(result: RunResult, fmt: str) -> None:
    if fmt == "json":
        data = {
            "outcome": result.outcome,
            "source": result.source,
            "ref": result.ref,
            "commit_sha": result.commit_sha,
            "previous_sha": result.previous_sha,
            "diagnostics": [d.model_dump(mode="json") for d in result.diagnostics],
            "timings_s": result.timings_s,
            "error": None if result.error is None else redact(str(result.error)),
            "reported": result.reported,
            "resigned": result.resigned,
        }
        click.echo(json.dumps(data, sort_keys=True))
        return
    for d in result.diagnostics:
        click.echo(d.format_text(), err=True)
    click.echo(redact(_result_line(result)), err=result.outcome in ("error", "conflict", "invalid"))
    if result.report_error:
        click.echo(f"ctrltower: warning: the run was not reported: {redact(result.report_error)}", err=True)


def _run_exit_code(result: RunResult) -> int:
    if result.error is not None:
        return _exit_code_of(result.error)
    if result.outcome == "invalid":
        return exit_codes.FINDINGS
    if not result.reported:
        return exit_codes.SERVER_ERROR
    return exit_codes.OK


@click.command()
@click.option(
    "--source", required=True, help="Config repo: a URL (https, http, ssh, git, file) or a local path."
)
@click.option("--ref", default="main", show_default=True, help="Branch, tag or commit SHA.")
@click.option("--path", "subdir", default="", help="Subdirectory holding the config repo.")
@_server_options(required=True)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Git cache reused between runs [default: $XDG_CACHE_HOME/ctrltower].",
)
@click.option("--interval", default=None, help="Loop: run every DURATION (e.g. 60s) instead of once.")
@click.option(
    "--jitter",
    type=click.FloatRange(0.0, 0.5),
    default=0.1,
    show_default=True,
    help="Loop: randomize each interval by this fraction.",
)
@click.option("--max-runs", type=click.IntRange(min=1), default=None, help="Loop: stop after N runs.")
@click.option("--git-timeout", default="120s", show_default=True, help="Kill a git fetch after DURATION.")
@signing_key_option("ed25519 private key (ctrltower keys generate): sign every group's config.")
@click.option(
    "--signature-validity",
    default="7d",
    show_default=True,
    help="Statements expire after DURATION; re-signed when half of it has passed.",
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def reconcile(
    source: str,
    ref: str,
    subdir: str,
    server: str,
    token: str | None,
    cache_dir: str | None,
    interval: str | None,
    jitter: float,
    max_runs: int | None,
    git_timeout: str,
    signing_key: Path | None,
    signature_validity: str,
    fmt: str,
) -> None:
    """Publish the commit REF points at to the server (once, or every --interval)."""
    from ctrltower.keyfiles import signer_for_option

    if not source.strip():
        raise click.BadParameter("must name a repository (URL or path)", param_hint="--source")
    try:
        Source.parse(source)  # refuse what git could read as an option or a command, before git runs
    except BadSource as exc:
        raise click.BadParameter(str(exc), param_hint="--source") from None
    signer = signer_for_option(signing_key)
    validity = parse_duration(signature_validity)
    if validity < 60:
        raise click.BadParameter("must be at least 1m", param_hint="--signature-validity")
    settings = ReconcileSettings(
        source=source,
        ref=ref,
        path=subdir.strip("/"),
        cache_dir=Path(cache_dir) if cache_dir else default_cache_dir(os.environ),
        git_timeout_s=parse_duration(git_timeout),
        signature_validity_s=int(validity),
    )
    every = parse_duration(interval) if interval else None
    with _client(server, token) as client:
        if every is None:
            result = reconcile_once(settings, client, environ=os.environ, signer=signer)
            _print_result(result, fmt)
            sys.exit(_run_exit_code(result))
        stop = threading.Event()

        def _stop(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        result = run_loop(
            settings,
            client,
            environ=os.environ,
            interval_s=every,
            jitter=jitter,
            max_runs=max_runs,
            stop=stop,
            on_result=lambda r: _print_result(r, fmt),
            signer=signer,
        )
    sys.exit(0 if stop.is_set() else _run_exit_code(result))


# --- status -------------------------------------------------------------------------------------------


@click.command()
@_server_options(required=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def status(server: str, token: str | None, fmt: str) -> None:
    """Last attempted and last applied commit, the outcome, agents by sync status, rollouts."""
    try:
        with _client(server, token) as client:
            current = client.current_revision()
            runs = client.runs(limit=1).items
            total, by_status, by_sync = client.agent_counts()
            rollouts = client.rollouts(limit=10).items
    except CtrlTowerError as exc:
        _fail(_exit_code_of(exc), str(exc))
    last = runs[0] if runs else None
    # the rollouts in progress, else the latest one (its outcome says why agents run what they run)
    shown = [r for r in rollouts if r.state in ("progressing", "paused")] or rollouts[:1]
    if fmt == "json":
        data = {
            "applied": None if current is None else current.model_dump(mode="json"),
            "last_run": None if last is None else last.model_dump(mode="json"),
            "agents": {"total": total, "by_status": by_status, "by_sync_status": by_sync},
            "rollouts": [r.model_dump(mode="json") for r in shown],
        }
        click.echo(json.dumps(data, sort_keys=True))
        return
    if current is None:
        click.echo("applied:   nothing published yet")
    else:
        subject = (current.message or "").splitlines()[0] if current.message else ""
        when = f"{current.published_at:%Y-%m-%d %H:%M:%SZ}"
        click.echo(f"applied:   {current.commit_sha[:12]} {subject} (published {when})")
    if last is None:
        click.echo("attempted: no reconcile run reported yet")
    else:
        sha = last.commit_sha[:12] if last.commit_sha else "-"
        when = f"{last.finished_at:%Y-%m-%d %H:%M:%SZ}"
        click.echo(f"attempted: {sha} {last.outcome} at {when} ({last.source}@{last.ref})")
        if last.error:
            click.echo(f"           error: {last.error}")
        errors = [d for d in last.diagnostics if d.severity == "error"]
        for d in errors[:10]:
            click.echo(f"           {d.format_text()}")
        if len(errors) > 10:
            click.echo(f"           ... {len(errors) - 10} more")
    sync = ", ".join(f"{k} {v}" for k, v in sorted(by_sync.items()) if v) or "none"
    live = ", ".join(f"{k} {v}" for k, v in sorted(by_status.items()) if v) or "none"
    click.echo(f"agents:    {total} total; sync: {sync}; status: {live}")
    from ctrltower.cmd_rollout import describe

    for r in shown:
        click.echo("\n".join(describe(r, measurements=1)))
