"""`reconcile`: bring the server to the commit a ref points at, once (CronJob) or in a loop.

One run: take the cache lock -> fetch -> resolve the ref -> ask the server for its current revision
(same commit: a fast no-op, nothing rendered) -> read the files at the commit -> compile -> publish
with compare-and-set (previous = the server's current) -> report the run with every diagnostic and
the timings. An invalid commit publishes nothing and is reported as failed; the server keeps serving
the last good revision. Each outcome maps to one exit code in ctrltower/cmd_reconcile.py.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from compiler.api import compile_repo
from reconciler.client import ControlClient
from reconciler.errors import ConflictError, GitError, ServerError, ServerRefused
from reconciler.git import GitRepo, Source, redact
from reconciler.lock import RunLock
from schemas.api import ReconcileRunReport, RevisionPublish, RevisionSummary, RunOutcome
from schemas.diagnostics import Diagnostic, has_errors, sort_diagnostics
from schemas.errors import CtrlTowerError, Permanent
from schemas.signing import Signer

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class ReconcileSettings(BaseModel):
    """Everything one reconcile needs, built once by the CLI and passed down."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field(repr=False, description="URL or path as given; may hold credentials, never printed")
    ref: str = "main"
    path: str = ""
    cache_dir: Path
    git_timeout_s: float = 120.0
    signature_validity_s: int = Field(
        default=7 * 86400, gt=0, description="statements expire this long after signing (--signing-key)"
    )


@dataclass(frozen=True)
class RunResult:
    outcome: RunOutcome
    source: str  # without credentials
    ref: str
    commit_sha: str | None = None
    previous_sha: str | None = None
    diagnostics: tuple[Diagnostic, ...] = ()
    timings_s: dict[str, float] = field(default_factory=dict)
    error: CtrlTowerError | None = None
    reported: bool = False
    report_error: str | None = None
    resigned: bool = False  # the server's current commit got fresh statements (they were expiring)

    @property
    def message(self) -> str:
        sha = self.commit_sha[:12] if self.commit_sha else "?"
        if self.outcome == "published":
            prev = self.previous_sha[:12] if self.previous_sha else "nothing"
            return f"published {sha} (was {prev})"
        if self.outcome == "unchanged" and self.resigned:
            return f"{sha} is already the server's current revision: re-signed its groups' statements"
        if self.outcome == "unchanged":
            return f"{sha} is already the server's current revision: nothing to do"
        if self.outcome == "rolled_back":
            return f"{sha} was rolled back by a rollout: not published again; push a later commit"
        if self.outcome == "invalid":
            errors = sum(1 for d in self.diagnostics if d.severity == "error")
            return f"{sha} is invalid ({errors} error(s)): nothing published, the server keeps its revision"
        return f"{self.outcome}: {self.error}"


class _Timer:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._t0 = time.perf_counter()

    def lap(self, name: str, since: float) -> float:
        now = time.perf_counter()
        self.timings[name] = round(now - since, 6)
        return now

    def total(self) -> None:
        self.timings["total"] = round(time.perf_counter() - self._t0, 6)


def reconcile_once(
    settings: ReconcileSettings,
    client: ControlClient,
    *,
    environ: Mapping[str, str],
    clock: Clock = utc_now,
    signer: Signer | None = None,
) -> RunResult:
    """One reconcile run. Never raises a CtrlTowerError: the outcome and error are in the result.

    With a `signer`, every group's config gets a signed statement (schemas/signing.py), and a
    current commit whose statements pass half their validity is published again to refresh them.
    """
    started = clock()
    source = Source.parse(settings.source)
    timer = _Timer()
    result = _run(settings, source, client, environ, timer, signer, started)
    timer.total()
    result = _with(result, timings_s=dict(timer.timings))
    return _report(client, result, started, clock())


def _run(
    settings: ReconcileSettings,
    source: Source,
    client: ControlClient,
    environ: Mapping[str, str],
    timer: _Timer,
    signer: Signer | None,
    now: datetime,
) -> RunResult:
    base = RunResult(outcome="error", source=source.display, ref=settings.ref)
    lock = RunLock(settings.cache_dir / "locks" / f"{source.cache_key}.lock")
    t = time.perf_counter()
    try:
        lock.acquire()
    except ConflictError as exc:
        return _with(base, outcome="conflict", error=exc)
    try:
        t = timer.lap("lock", t)
        repo = GitRepo.mirror(
            source, settings.cache_dir, environ=environ, timeout_s=settings.git_timeout_s, fetch=True
        )
        with repo:
            t = timer.lap("fetch", t)
            sha = repo.resolve(settings.ref)
            base = _with(base, commit_sha=sha)
            current = client.current_revision()
            current_sha = current.commit_sha if current else None
            base = _with(base, previous_sha=current_sha)
            t = timer.lap("server_current", t)
            if current_sha == sha and not _needs_resign(current, signer, settings, now):
                return _with(base, outcome="unchanged")
            listing = repo.list_files(sha, settings.path)
            refused = repo.refusals(sha, listing, settings.path)  # symlinks, files over the limit
            files = repo.read_blobs(listing)
            info = repo.commit_info(sha)
            seq = repo.first_parent_depth(sha) if signer is not None else 0
            t = timer.lap("read", t)
        compiled = compile_repo(files)
        t = timer.lap("compile", t)
        diagnostics = tuple(sort_diagnostics([*refused, *compiled.diagnostics]))
        base = _with(base, diagnostics=diagnostics)
        if not compiled.ok or has_errors(refused):
            return _with(base, outcome="invalid")
        groups = compiled.groups
        if signer is not None:
            stamp = int(now.timestamp())
            groups = [
                g.model_copy(
                    update={
                        "statement": signer.sign_config(
                            group=g.name,
                            selector=g.selector,
                            commit=sha,
                            seq=seq,
                            sha256=g.config_hash,
                            now=stamp,
                            valid_for_s=settings.signature_validity_s,
                        )
                    }
                )
                for g in groups
            ]
        publish = RevisionPublish(
            commit_sha=sha,
            previous_commit_sha=current_sha,
            message=info.message[:65536],
            author=info.author[:512],
            committed_at=info.committed_at,
            source=source.display,
            groups=groups,
            pipelines=compiled.pipelines,
            rollouts=compiled.rollouts,
        )
        try:
            published = client.publish(publish)
        except ServerRefused as exc:
            if exc.code == "commit_rolled_back":  # a rollout rolled it back: wait for a later commit
                return _with(base, outcome="rolled_back")
            raise
        timer.lap("publish", t)
        if published.outcome == "published":
            return _with(base, outcome="published")
        return _with(base, outcome="unchanged", resigned=published.outcome == "resigned")
    except ConflictError as exc:
        return _with(base, outcome="conflict", error=exc)
    except (GitError, ServerError) as exc:
        return _with(base, outcome="error", error=exc)
    finally:
        lock.release()


def _needs_resign(
    current: RevisionSummary | None, signer: Signer | None, settings: ReconcileSettings, now: datetime
) -> bool:
    """The current commit must be signed again: unsigned, or past half its statements' validity."""
    if signer is None or current is None:
        return False
    if current.signed_until is None:
        return True
    return (current.signed_until - now).total_seconds() < settings.signature_validity_s / 2


def _with(result: RunResult, **changes: Any) -> RunResult:
    return replace(result, **changes)


def _report(client: ControlClient, result: RunResult, started: datetime, finished: datetime) -> RunResult:
    report = ReconcileRunReport(
        started_at=started,
        finished_at=finished,
        source=result.source[:2048],
        ref=result.ref[:512],
        commit_sha=result.commit_sha,
        outcome=result.outcome,
        diagnostics=list(result.diagnostics),
        timings_s=result.timings_s,
        error=None if result.error is None else redact(str(result.error))[:65536],
    )
    try:
        client.report_run(report)
    except ServerError as exc:
        return _with(result, reported=False, report_error=str(exc))
    return _with(result, reported=True)


def next_delay(interval_s: float, jitter: float, rng: random.Random) -> float:
    """The interval with +-jitter (a fraction), so many reconcilers never hit the server in step."""
    return max(0.0, interval_s * (1.0 + rng.uniform(-jitter, jitter)))


def run_loop(
    settings: ReconcileSettings,
    client: ControlClient,
    *,
    environ: Mapping[str, str],
    interval_s: float,
    jitter: float = 0.1,
    max_runs: int | None = None,
    stop: threading.Event | None = None,
    rng: random.Random | None = None,
    on_result: Callable[[RunResult], None] = lambda r: None,
    clock: Clock = utc_now,
    signer: Signer | None = None,
) -> RunResult:
    """Reconcile every interval (with jitter) until stopped, `max_runs` is reached, or a permanent error.

    Transient failures (network, lock held, conflict, an invalid commit) wait for the next run;
    a permanent one (token refused, ref or repository gone) ends the loop: retrying cannot fix it.
    """
    stop = stop or threading.Event()
    rng = rng or random.Random()
    runs = 0
    while True:
        result = reconcile_once(settings, client, environ=environ, clock=clock, signer=signer)
        runs += 1
        on_result(result)
        if isinstance(result.error, Permanent):
            return result
        if max_runs is not None and runs >= max_runs:
            return result
        if stop.wait(next_delay(interval_s, jitter, rng)):
            return result
