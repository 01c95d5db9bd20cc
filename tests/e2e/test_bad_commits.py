"""A commit ctrltower rejects and a commit only the collector rejects, one after the other, against one
real agent: the invalid commit is never published, the collector-rejected one shows ApplyFailed with
the collector's own message, and the agent's logs keep reaching the sink the whole time."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.harness import running_system
from tests.reconciler.gitutil import commit, edit, head

pytestmark = [pytest.mark.collector, pytest.mark.slow]

PIPELINE = "pipelines/app-logs.yaml"


def test_invalid_then_collector_rejected_commit(tmp_path: Path, collector_bin: Path) -> None:
    with running_system(tmp_path, collector_bin) as system:
        good = head(system.repo)
        view = system.wait("the agent Synced on the first commit", lambda: (
            v if (v := system.agent_view()).get("sync_status") == "Synced" else None))  # fmt: skip
        assert view["effective_revision"] == good
        system.logs_keep_flowing("first commit")

        # 1. invalid for ctrltower (an edge to a node that does not exist): never published
        edit(system.repo, PIPELINE, "  - {from: batch, to: ship}", "  - {from: batch, to: nowhere}")
        invalid = commit(system.repo, "edge to a node that does not exist")
        code, report = system.reconcile()
        assert code == 1, report  # findings
        assert "nowhere" in str(report), report
        assert system.current_revision() == good
        assert invalid not in {r["commit_sha"] for r in system.get("/api/v1/revisions", limit=100)["items"]}
        runs = system.get("/api/v1/reconcile-runs", limit=1)["items"]
        assert runs[0]["commit_sha"] == invalid and runs[0]["outcome"] == "invalid", runs[0]
        system.logs_keep_flowing("after the invalid commit")
        view = system.agent_view()
        assert view["sync_status"] == "Synced" and view["effective_revision"] == good, view

        # 2. valid for ctrltower, rejected by the collector (a key the batch processor does not have)
        edit(system.repo, PIPELINE, "  - {from: batch, to: nowhere}", "  - {from: batch, to: ship}")
        edit(system.repo, PIPELINE, 'timeout: "{{ vars.batch_timeout }}"',
             'timeout: "{{ vars.batch_timeout }}"\n      no_such_option: 7')  # fmt: skip
        bad = commit(system.repo, "an option the collector does not know")
        code, report = system.reconcile()
        assert code == 0, report
        assert system.current_revision() == bad
        failed = system.wait("ApplyFailed", lambda: (
            v if (v := system.agent_view()).get("sync_status") == "ApplyFailed" else None))  # fmt: skip
        error = failed["last_apply"]["error"] or ""
        assert "no_such_option" in error, error  # the collector's own message reaches the API
        assert failed["last_apply"]["revision"] == bad and failed["effective_revision"] == good, failed
        system.logs_keep_flowing("while the rejected commit is desired")  # the last good config ships

        # the UI shows the same: ApplyFailed and the collector's message on the agent page
        page = system.ui_page(f"/agents/{failed['id']}")
        assert "ApplyFailed" in page and "no_such_option" in page
