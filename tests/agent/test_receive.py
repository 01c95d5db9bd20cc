"""agent/receive.py on its own: trust, upgrade and apply decisions for a config the server sent.

The state dir is real (tmp_path), the trust gate and its signatures are real (schemas/signing.py). The
applier and the collector builds are fakes that record what they were asked: the real ones run the
collector binary, which the end-to-end tests (test_e2e.py, tests/signing/) cover. No port, no subprocess.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import CollectorRegistry

from agent.apply import ApplyOutcome
from agent.client import FetchedConfig, ServerRefused
from agent.clock import Clock
from agent.metrics import AgentMetrics
from agent.receive import Receiver
from agent.state import StateDir, StoredConfig
from agent.trust import TrustGate
from agent.upgrade import Build
from schemas.common import config_hash
from schemas.signing import Signer, Untrusted, trust_set

NOW = 1_700_000_000.0
CLOCK = Clock(monotonic=lambda: 10.0, wall=lambda: NOW, sleep=lambda s: None)


class FakeApplier:
    def __init__(self, ok: bool = True) -> None:
        self.ok = ok
        self.calls: list[tuple[str, str | None, bool, Path | None]] = []

    def apply(
        self, new: StoredConfig, last_good: StoredConfig | None, should_run: bool, binary: Path | None = None
    ) -> ApplyOutcome:
        self.calls.append((new.hash, last_good.hash if last_good else None, should_run, binary))
        return ApplyOutcome(True) if self.ok else ApplyOutcome(False, "collector validate failed: boom")


class FakeBuilds:
    def __init__(self, wants: str | None = None, refuse: Exception | None = None) -> None:
        self.current = Build("0.1", Path("/opt/otelcol"))
        self.wants = wants
        self.refuse = refuse
        self.events: list[str] = []

    def needed(self, data: bytes) -> str | None:
        return self.wants

    def prepare(self, agent_id: str, token: str, version: str) -> Build:
        self.events.append(f"prepare {version} as {agent_id}")
        if self.refuse is not None:
            raise self.refuse
        return Build(version, Path(f"/state/collectors/{version}"), "ab" * 32)

    def switched(self, build: Build) -> None:
        self.events.append(f"switched {build.version}")

    def discard(self) -> None:
        self.events.append("discard")


class Standing:
    def __init__(self) -> None:
        self.etag: str | None = None

    def credentials(self) -> tuple[str, str]:
        return "a1", "cta_token"


def receiver(
    tmp_path: Path,
    applier: FakeApplier,
    builds: FakeBuilds | None = None,
    trust: TrustGate | None = None,
    stopped: bool = False,
) -> tuple[Receiver, Standing, list[str]]:
    standing = Standing()
    calls: list[str] = []
    made = Receiver(
        trust=trust or TrustGate({}, {"tier": "edge"}, clock=CLOCK.wall),
        state=StateDir(tmp_path / "state"),
        session=standing,
        applier=applier,
        upgrades=builds or FakeBuilds(),
        metrics=AgentMetrics(CollectorRegistry()),
        clock=CLOCK,
        operator_stopped=lambda: stopped,
        on_applied=lambda: calls.append("applied"),
        on_change=lambda: calls.append("changed"),
    )
    return made, standing, calls


def fetched(data: bytes, revision: str = "c1", statement: str | None = None) -> FetchedConfig:
    digest = config_hash(data)
    return FetchedConfig(data, digest, revision, "edge", announced=digest, statement=statement)


def test_a_new_config_is_applied_remembered_and_survives_a_restart(tmp_path: Path) -> None:
    applier = FakeApplier()
    r, standing, calls = receiver(tmp_path, applier, stopped=True)
    r.receive(fetched(b"a: 1\n"))
    digest = config_hash(b"a: 1\n")
    assert applier.calls == [(digest, None, False, None)]  # stopped by the operator: not started
    assert r.desired is not None and r.desired.hash == digest and standing.etag == digest
    assert r.last_apply is not None and r.last_apply.result == "applied"
    assert r.last_apply.at.timestamp() == NOW and calls == ["applied", "changed"]
    again, _, _ = receiver(tmp_path, FakeApplier())  # a restarted agent starts from the last good one
    assert again.desired == r.desired and again.failed_hash is None and again.last_apply is None
    again.mark_restored()  # back in force after drift or a restart: reported as applied
    assert again.last_apply is not None and again.last_apply.result == "applied"
    assert again.last_apply.config_hash == digest and again.last_apply.revision == "c1"


def test_the_same_bytes_under_a_new_revision_never_reload(tmp_path: Path) -> None:
    applier = FakeApplier()
    r, _, calls = receiver(tmp_path, applier)
    r.receive(fetched(b"a: 1\n", "c1"))
    r.receive(fetched(b"a: 1\n", "c2"))
    assert len(applier.calls) == 1 and r.desired is not None and r.desired.revision == "c2"
    assert calls == ["applied", "changed", "changed"]
    assert r.state.last_good() == r.desired


def test_a_rejected_config_is_failed_once_and_not_retried(tmp_path: Path) -> None:
    applier = FakeApplier(ok=False)
    r, standing, calls = receiver(tmp_path, applier)
    r.receive(fetched(b"bad: 1\n"))
    r.receive(fetched(b"bad: 1\n"))
    assert len(applier.calls) == 1 and r.desired is None
    assert r.failed_hash == config_hash(b"bad: 1\n") == r.state.failed_hash() == standing.etag
    assert r.last_apply is not None and r.last_apply.result == "failed"
    assert r.last_apply.error == "collector validate failed: boom" and "applied" not in calls


def test_with_a_trusted_key_only_signed_bytes_are_applied(tmp_path: Path) -> None:
    signer = Signer(Ed25519PrivateKey.generate())
    gate = TrustGate(trust_set([signer.private.public_key()]), {"tier": "edge"}, clock=CLOCK.wall)
    applier = FakeApplier()
    r, standing, _ = receiver(tmp_path, applier, trust=gate)
    data = b"a: 1\n"
    r.receive(fetched(data))  # no statement: refused, nothing written, ETag not advanced
    assert applier.calls == [] and standing.etag is None and r.state.last_received() is None
    assert r.last_apply is not None and r.last_apply.result == "untrusted"
    assert r.untrusted is not None and "no signed statement" in r.untrusted[1]
    statement = signer.sign_config(
        group="edge",
        selector={"tier": "edge"},
        commit="f" * 40,
        seq=3,
        sha256=config_hash(data),
        now=int(NOW),
        valid_for_s=3600,
    )
    r.receive(fetched(data, statement=statement))
    assert len(applier.calls) == 1 and r.untrusted is None
    assert r.desired is not None and r.desired.revision == "f" * 40  # the statement names the commit


def test_an_upgrade_switches_on_success_and_is_discarded_on_failure(tmp_path: Path) -> None:
    builds = FakeBuilds(wants="0.2")
    applier = FakeApplier()
    r, _, _ = receiver(tmp_path, applier, builds=builds)
    r.receive(fetched(b"a: 1\n"))
    assert applier.calls[0][3] == Path("/state/collectors/0.2")
    assert builds.events == ["prepare 0.2 as a1", "switched 0.2"]
    failing = FakeBuilds(wants="0.3")
    r2, _, _ = receiver(tmp_path / "2", FakeApplier(ok=False), builds=failing)
    r2.receive(fetched(b"b: 1\n"))
    assert failing.events == ["prepare 0.3 as a1", "discard"]


def test_a_refused_build_is_never_fetched_again_for_that_config(tmp_path: Path) -> None:
    builds = FakeBuilds(wants="0.2", refuse=Untrusted("no signed statement for collector 0.2"))
    applier = FakeApplier()
    r, standing, _ = receiver(tmp_path, applier, builds=builds)
    r.receive(fetched(b"a: 1\n"))
    r.receive(fetched(b"a: 1\n"))
    assert builds.events == ["prepare 0.2 as a1"] and applier.calls == []
    assert r.failed_hash == config_hash(b"a: 1\n") == standing.etag
    assert r.last_apply is not None and r.last_apply.result == "untrusted"


def test_an_unpublished_build_is_reported_and_asked_for_again(tmp_path: Path) -> None:
    missing = ServerRefused(404, "no_collector", "collector 0.2 is not published")
    builds = FakeBuilds(wants="0.2", refuse=missing)
    r, standing, _ = receiver(tmp_path, FakeApplier(), builds=builds)
    r.receive(fetched(b"a: 1\n"))
    r.receive(fetched(b"a: 1\n"))
    assert builds.events == ["prepare 0.2 as a1"] * 2 and standing.etag is None
    assert r.last_apply is not None and r.last_apply.result == "failed"
    assert "cannot be downloaded" in (r.last_apply.error or "") and r.failed_hash is None
