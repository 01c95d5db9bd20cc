"""Collector upgrades with real parts: `ctrltower collector publish` to the real server, a group asking
for a version, the agent (with --trust-key) downloading, checking and switching its real collector.

An upgrade to a copy of the real collector succeeds and is reported; an upgrade to a binary that passes
`validate` but exits at start is rolled back and the old collector keeps shipping logs to the sink; an
unsigned build is refused; a build not published yet is reported and taken once published; at most two
builds stay on disk; a restarted agent runs the build it switched to. The CLI's refusals are checked too.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from ctrltower import exit_codes
from tests.agent.helpers import wait_until
from tests.signing.harness import SignedFleet, signed_fleet
from tests.support.server import auth

pytestmark = [pytest.mark.collector, pytest.mark.slow]

EXITS_AT_START = """#!/bin/sh
# Passes `validate` (and answers --version), then exits at once when run: a build that cannot start.
case "$1" in
  validate) exit 0 ;;
  --version) echo "otelcol-broken version 9.9.9"; exit 0 ;;
esac
echo "broken build: exiting" >&2
exit 3
"""


def _exe(fleet: SignedFleet) -> str:
    """The running collector's binary (waiting for one: supervision may be restarting it)."""
    try:
        pid = wait_until(fleet.collector_pid, 30, interval=0.1, what="a running collector")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{fleet.agent_log()}") from None
    return os.readlink(f"/proc/{pid}/exe")


def test_upgrade_is_reported_and_a_build_that_cannot_start_is_rolled_back(
    tmp_path: Path, collector_bin: Path
) -> None:
    with signed_fleet(tmp_path, collector_bin) as fleet:
        copy = tmp_path / "otelcol-copy"
        shutil.copy2(collector_bin, copy)
        broken = tmp_path / "otelcol-broken"
        broken.write_text(EXITS_AT_START)
        broken.chmod(0o755)
        for version, binary, key in (
            ("0.135.0-copy", copy, "a"),
            ("9.9.9-broken", broken, "a"),
            ("0.135.0-unsigned", copy, None),
        ):
            result = fleet.publish_collector(version, binary, key)
            assert result.exit_code == 0, result.output
        builds = httpx.get(f"{fleet.srv.base_url}/api/v1/collectors", headers=auth(fleet.admin)).json()
        assert {b["version"]: b["signed"] for b in builds["items"]} == {
            "0.135.0-copy": True, "9.9.9-broken": True, "0.135.0-unsigned": False,
        }  # fmt: skip

        first = fleet.commit_config("100ms", "no build named")
        fleet.reconcile("a")
        fleet.start_agent(("a",))
        view = fleet.wait_view("Synced on the agent's own binary", lambda v: v.sync_status == "Synced")
        original = view.collector_version
        assert original and original != "0.135.0-copy" and view.effective_revision == first
        fleet.ship("before-upgrade")

        # 1. Upgrade to a copy of the real collector: downloaded, checked, swapped, reported.
        upgraded = fleet.commit_config("100ms", "run 0.135.0-copy", collector="0.135.0-copy")
        fleet.reconcile("a")
        fleet.wait_view(
            "upgraded",
            lambda v: (
                v.sync_status == "Synced"
                and v.effective_revision == upgraded
                and v.collector_version == "0.135.0-copy"
            ),
            timeout=60,  # a 33 MB download, a validate and a start on a loaded machine
        )
        store = fleet.tmp / "state" / "collectors"
        assert _exe(fleet).startswith(str(store)) and "0.135.0-copy" in _exe(fleet)
        fleet.ship("after-upgrade")

        # 2. A build that exits at start: rolled back to the copy, which keeps shipping.
        fleet.commit_config("100ms", "run the broken build", collector="9.9.9-broken")
        fleet.reconcile("a")
        view = fleet.wait_view("ApplyFailed on the broken build", lambda v: v.sync_status == "ApplyFailed")
        assert view.last_apply is not None and "exited with code 3" in (view.last_apply.error or "")
        assert view.collector_version == "0.135.0-copy" and view.effective_revision == upgraded
        fleet.wait_view("running again", lambda v: v.run_state == "running")
        assert "0.135.0-copy" in _exe(fleet)
        fleet.ship("after-rollback")
        assert len(list(store.glob("*.bin"))) <= 2, sorted(p.name for p in store.iterdir())

        # 3. An unsigned build is never run by an agent that trusts keys.
        fleet.commit_config("100ms", "run an unsigned build", collector="0.135.0-unsigned")
        fleet.reconcile("a")
        view = fleet.wait_view("Untrusted build", lambda v: v.sync_status == "Untrusted")
        assert view.last_apply is not None and "no signed statement" in (view.last_apply.error or "")
        assert "0.135.0-copy" in _exe(fleet)
        fleet.ship("after-unsigned")
        assert len(list(store.glob("*.bin"))) <= 2, sorted(p.name for p in store.iterdir())

        # 4. A build that is not published yet: reported, then taken as soon as it is published.
        later = fleet.commit_config("100ms", "run 0.135.0-later", collector="0.135.0-later")
        fleet.reconcile("a")
        view = fleet.wait_view(
            "the missing build is reported",
            lambda v: v.last_apply is not None and "cannot be downloaded" in (v.last_apply.error or ""),
        )
        assert "no_collector" in (view.last_apply.error or "")  # type: ignore[union-attr]
        assert fleet.publish_collector("0.135.0-later", copy, "a").exit_code == 0
        fleet.wait_view(
            "upgraded once published",
            lambda v: (
                v.sync_status == "Synced"
                and v.effective_revision == later
                and v.collector_version == "0.135.0-later"
            ),
            timeout=60,
        )
        assert len(list(store.glob("*.bin"))) <= 2, sorted(p.name for p in store.iterdir())

        # The agent restarts on the build it switched to, not on --collector.
        fleet.stop_agent()
        fleet.start_agent(("a",))
        wait_until(fleet.collector_pid, 30, what="a collector under the restarted agent")
        assert "0.135.0-later" in _exe(fleet)
        fleet.ship("after-restart")


def test_publish_refusals(tmp_path: Path, collector_bin: Path) -> None:
    with signed_fleet(tmp_path, collector_bin) as fleet:
        one, two = tmp_path / "one", tmp_path / "two"
        one.write_bytes(b"\x7fELF one")
        two.write_bytes(b"\x7fELF two")
        assert fleet.publish_collector("1.0.0", one, "a").exit_code == 0
        again = fleet.publish_collector("1.0.0", one, "a")
        assert again.exit_code == 0 and "already published" in again.output
        other = fleet.publish_collector("1.0.0", two, "a")  # a version names one binary forever
        assert other.exit_code == exit_codes.CONFLICT and "collector_exists" in other.output
        bad = fleet.publish_collector("../x", one, "a")
        assert bad.exit_code == exit_codes.USAGE
        r = httpx.put(
            f"{fleet.srv.base_url}/api/v1/collectors/1.0.1",
            content=b"x",
            headers=auth(fleet.srv.create_token("operator")),
        )
        assert r.status_code == 403 and r.json()["error"]["code"]
        r = httpx.put(
            f"{fleet.srv.base_url}/api/v1/collectors/1.0.1",
            content=b"x",
            headers={**auth(fleet.admin), "X-Ctrltower-Statement": "garbage"},
        )
        assert r.status_code == 422 and "malformed" in r.json()["error"]["message"]
