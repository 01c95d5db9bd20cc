"""The agent verifies before it writes: the real server, reconciler, agent, collector and sink.

Tampering with the server's database, then with the bytes on the wire (a proxy), then a commit signed
by an unknown key: each time the agent refuses, reports Untrusted with the reason, and the last good
config keeps running (same file, same collector process, logs still reaching the sink). A key rotation
with two trusted keys goes through. An agent without --trust-key says so.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.common import config_hash
from tests.signing.harness import SignedFleet, signed_fleet

pytestmark = [pytest.mark.collector, pytest.mark.slow]


def _untrusted(fleet: SignedFleet, reason: str) -> None:
    view = fleet.wait_view(
        f"Untrusted: {reason}",
        lambda v: (
            v.last_apply is not None
            and v.last_apply.result == "untrusted"
            and reason in (v.last_apply.error or "")
        ),
    )
    assert view.verifies_signatures is True


def test_tampering_unknown_keys_and_rotation(tmp_path: Path, collector_bin: Path) -> None:
    with signed_fleet(tmp_path, collector_bin) as fleet:
        first = fleet.commit_config("100ms", "batch 100ms")
        assert fleet.reconcile("a")["outcome"] == "published"
        fleet.start_agent(("a", "b"))
        view = fleet.wait_view(
            "Synced on the first commit",
            lambda v: (
                v.sync_status == "Synced" and v.run_state == "running" and v.effective_revision == first
            ),
        )
        assert view.verifies_signatures is True
        good = fleet.config_path.read_bytes()
        pid = fleet.collector_pid()
        fleet.ship("before")

        # 1. Someone with the server's disk rewrites the stored config (and its hash, to look right).
        evil = good.decode().replace("100ms", "5s")
        fleet.db_execute(
            "UPDATE revision_groups SET config = ?, config_hash = ? WHERE commit_sha = ? AND name = 'edge'",
            (evil, config_hash(evil), first),
        )
        view = fleet.wait_view("Untrusted after the database edit", lambda v: v.sync_status == "Untrusted")
        assert view.last_apply is not None and "are not the signed ones" in (view.last_apply.error or "")
        assert view.last_apply.config_hash == config_hash(evil)
        assert fleet.config_path.read_bytes() == good and fleet.collector_pid() == pid
        assert (fleet.tmp / "state" / "last_received.yaml").read_bytes() != evil.encode()
        fleet.ship("during-db-tamper")
        assert "refusing config" in fleet.agent_log()

        # Put it back: the agent trusts it again and is Synced (nothing was ever swapped).
        fleet.db_execute(
            "UPDATE revision_groups SET config = ?, config_hash = ? WHERE commit_sha = ? AND name = 'edge'",
            (good.decode(), config_hash(good), first),
        )
        fleet.wait_view("Synced after the repair", lambda v: v.sync_status == "Synced")

        # 2. Someone on the wire changes the bytes; first keeping the server's headers ...
        fleet.proxy.mode = "body"
        _untrusted(fleet, "is not the announced")
        # It still runs exactly the desired config (the server's hash): Synced, with the refusal in
        # last_apply. Untrusted is for an agent that cannot run what the server wants.
        assert fleet.view().sync_status == "Synced"  # type: ignore[union-attr]
        # ... then announcing the hash of what they send: the signature still does not cover it.
        fleet.proxy.mode = "body+headers"
        _untrusted(fleet, "are not the signed ones")
        assert fleet.config_path.read_bytes() == good and fleet.collector_pid() == pid
        fleet.ship("during-wire-tamper")
        fleet.proxy.mode = "pass"
        assert fleet.proxy.tampered >= 2

        # 3. A commit signed by a key the agent does not trust.
        unknown = fleet.commit_config("200ms", "batch 200ms, signed by an unknown key")
        assert fleet.reconcile("c")["outcome"] == "published"
        _untrusted(fleet, "not a trusted key")
        view = fleet.wait_view("Untrusted for the unknown key", lambda v: v.sync_status == "Untrusted")
        assert view.desired_revision == unknown and view.effective_revision == first
        assert fleet.config_path.read_bytes() == good and fleet.collector_pid() == pid

        # 4. Rotation: the next commit is signed with the second trusted key and goes through.
        rotated = fleet.commit_config("300ms", "batch 300ms, signed with the new key")
        assert fleet.reconcile("b")["outcome"] == "published"
        fleet.wait_view(
            "Synced on the commit signed with the second key",
            lambda v: v.sync_status == "Synced" and v.effective_revision == rotated,
        )
        assert b"timeout: 300ms" in fleet.config_path.read_bytes()
        fleet.ship("after-rotation")


def test_without_trust_keys_the_agent_says_it_does_not_verify(tmp_path: Path, collector_bin: Path) -> None:
    with signed_fleet(tmp_path, collector_bin) as fleet:
        fleet.reconcile(None)  # unsigned, as before signing existed
        fleet.start_agent(())
        view = fleet.wait_view("Synced, unverified", lambda v: v.sync_status == "Synced")
        assert view.verifies_signatures is False
        assert "configs are NOT verified" in fleet.agent_log()
