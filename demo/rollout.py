"""The demo's own config repo and the rollout it shows by itself.

`make demo` reconciles a Git repository of its own (DATA/config-repo, made on first run from
`example-config-repo/` and kept with the rest of the demo's data), so that it can commit to it without
touching the project's checkout, and so can the person watching. Once every agent reports Synced, the
demo commits a harmless change (each edge group's batch timeout, one second more) and publishes it at
once: the example repo's policy `rollouts/edge.yaml` then rolls it out, `edge-canary` first, then half
of `edge`, then all of it, judging each step on the metrics the server scrapes. `RolloutShow` does that
in a thread and prints each step and the outcome, with the Rollouts page URL.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_REPO = ROOT / "example-config-repo"
CONFIG_REPO = "config-repo"
BRANCH = "main"
# The demo's commits carry this identity: a fresh machine may have no git user configured.
GIT_IDENTITY = ("-c", "user.name=ctrltower demo", "-c", "user.email=demo@ctrltower.invalid")
# The groups the example policy covers; the demo's change touches both, so the canary step moves one.
CHANGED_GROUPS = ("edge-canary", "edge")
TIMEOUT = re.compile(r"^(\s*batch_timeout:\s*)(\d+)s\s*$", re.MULTILINE)
FINISHED = frozenset({"succeeded", "rolled_back", "aborted", "superseded"})
SYNC_CAP_S = 600.0  # a safety cap only: the demo waits on what the server reports
WATCH_EVERY_S = 2.0


class ConfigRepoError(Exception):
    """The demo's config repo cannot be made or committed to; the message says why."""


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *GIT_IDENTITY, "-C", str(repo), *args], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ConfigRepoError(f"git {' '.join(args)} in {repo} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def ensure_config_repo(data_dir: Path) -> Path:
    """DATA/config-repo: a Git repo on branch main holding example-config-repo/, made once (a
    second run keeps it, with every commit made to it since)."""
    repo = data_dir / CONFIG_REPO
    if (repo / ".git").is_dir():
        return repo
    if shutil.which("git") is None:
        raise ConfigRepoError("git is not installed (apt-get install git)")
    partial = data_dir / f"{CONFIG_REPO}.partial"  # a run killed half-way leaves no half-made repo
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(EXAMPLE_REPO, partial)
    git(partial, "init", "-q", "-b", BRANCH)
    git(partial, "add", "-A")
    git(partial, "commit", "-q", "-m", "example-config-repo as shipped with ctrltower")
    partial.rename(repo)
    return repo


def commit_change(repo: Path) -> tuple[str, str]:
    """Commit the demo's harmless change: each changed group's batch timeout one second longer (back
    to 1s after 5s). Returns (sha, message)."""
    changes = []
    for group in CHANGED_GROUPS:
        path = repo / "groups" / f"{group}.yaml"
        text = path.read_text()
        match = TIMEOUT.search(text)
        if match is None:
            raise ConfigRepoError(f"{path} has no `batch_timeout: Ns` var to change")
        old = int(match.group(2))
        new = old + 1 if old < 5 else 1
        path.write_text(f"{text[: match.start(2)]}{new}{text[match.end(2) :]}")
        changes.append(f"{group} {old}s -> {new}s")
    message = "demo: batch timeout " + ", ".join(changes)
    git(repo, "commit", "-q", "-am", message)
    return git(repo, "rev-parse", "HEAD"), message


def describe(rollout: dict[str, Any]) -> str:
    """One line for a rollout's state: its step, or its outcome and reason."""
    steps = rollout.get("steps") or []
    step = int(rollout.get("step", 0))
    sha = str(rollout["commit_sha"])[:8]
    head = f"rollout {rollout['id']} ({rollout['policy']}, {sha}): {rollout['state']}"
    if rollout["state"] in FINISHED:
        return f"{head}: {rollout['reason']}" if rollout.get("reason") else head
    agents = rollout.get("agents") or {}
    moved = ", ".join(f"{g} {a['new']} new/{a['old']} old" for g, a in sorted(agents.items()))
    where = (
        f"step {step + 1}/{len(steps)} {steps[step]['description']}"
        if step < len(steps)
        else "all steps done"
    )
    return f"{head}, {where}" + (f" ({moved})" if moved else "")


class RolloutShow:
    """In a thread: wait until every agent is Synced, commit the change, publish it (`publish` runs a
    one-shot reconcile and returns its exit code), then print the rollout's steps until it ends."""

    def __init__(
        self,
        *,
        url: str,
        token: str,
        repo: Path,
        agents: int,
        publish: Callable[[], int],
        stop: threading.Event,
        say: Callable[[str], None],
    ) -> None:
        self.url, self.token, self.repo, self.agents = url, token, repo, agents
        self.publish, self.stop, self.say = publish, stop, say
        self.thread = threading.Thread(target=self._run, name="demo-rollout", daemon=True)

    def start(self) -> RolloutShow:
        self.thread.start()
        return self

    def _get(self, client: httpx.Client, path: str, **params: Any) -> Any:
        response = client.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def _synced(self, client: httpx.Client) -> bool:
        try:
            items = self._get(client, "/api/v1/agents", limit=100)["items"]
        except (httpx.HTTPError, ValueError, KeyError):
            return False
        return len(items) >= self.agents and all(a.get("sync_status") == "Synced" for a in items)

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=10.0) as client:
            deadline = time.monotonic() + SYNC_CAP_S
            while not self._synced(client):
                if self.stop.wait(WATCH_EVERY_S):
                    return
                if time.monotonic() > deadline:
                    self.say(f"  The agents are not all Synced after {SYNC_CAP_S:g} s: no demo rollout.")
                    return
            try:
                sha, message = commit_change(self.repo)
            except ConfigRepoError as exc:
                self.say(f"  Could not commit the demo's change: {exc}")
                return
            self.say(f"  Every agent is Synced. Committed {sha[:8]} to {self.repo}: {message}")
            code = self.publish()
            if code != 0:
                self.say(f"  Publishing {sha[:8]} failed (reconcile exit {code}); see the reconcile log.")
                return
            self._watch(client, sha)

    def _watch(self, client: httpx.Client, sha: str) -> None:
        last = ""
        shown_url = False
        while not self.stop.wait(WATCH_EVERY_S):
            try:
                items = self._get(client, "/api/v1/rollouts", limit=20)["items"]
            except (httpx.HTTPError, ValueError, KeyError):
                continue  # the server is busy or restarting: ask again next time
            rollout = next((r for r in items if r.get("commit_sha") == sha), None)
            if rollout is None:
                continue
            if not shown_url:
                self.say(f"  Rollout {rollout['id']} started: {self.url}/rollouts?id={rollout['id']}")
                shown_url = True
            line = describe(rollout)
            if line != last:
                self.say(f"  {line}")
                last = line
            if rollout["state"] in FINISHED:
                self.say("  Break a commit on purpose to watch a rollback: docs/rollouts.md.")
                return
