"""What the agent does with a config the server sent: check it (the trust gate), fetch and check the
collector build it asks for (upgrades), apply it, and remember the outcome (desired, failed hash, the
last apply result the next status report carries).

The same steps for a config fetched over HTTP and one an OpAMP server pushed. The applier, the builds
and the server session are passed in (agent/factory.py builds the real ones), so a test drives this with
a state dir in tmp_path and fakes for the collector's side: no port, no subprocess.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Literal, Protocol

from agent.apply import ApplyOutcome
from agent.client import FetchedConfig, ServerRefused
from agent.clock import Clock
from agent.metrics import AgentMetrics
from agent.state import StateDir, StoredConfig
from agent.trust import TrustGate
from agent.upgrade import Build
from schemas.api import ApplyResult
from schemas.signing import Untrusted

log = logging.getLogger("ctrltower.agent")

MAX_ERROR_CHARS = 8000  # the tail of a collector's error that a report carries
ApplyResultKind = Literal["applied", "failed", "untrusted"]  # schemas.api.ApplyResult.result


class ConfigApplier(Protocol):
    """The part of agent.apply.Applier a received config needs (a test passes a fake)."""

    def apply(
        self, new: StoredConfig, last_good: StoredConfig | None, should_run: bool, binary: Path | None = None
    ) -> ApplyOutcome: ...


class CollectorBuilds(Protocol):
    """The part of agent.upgrade.Upgrades a received config needs (a test passes a fake)."""

    @property
    def current(self) -> Build: ...

    def needed(self, data: bytes) -> str | None: ...

    def prepare(self, agent_id: str, token: str, version: str) -> Build: ...

    def switched(self, build: Build) -> None: ...

    def discard(self) -> None: ...


class ServerStanding(Protocol):
    """The part of agent.session.Session a received config touches: the ETag and the credentials."""

    etag: str | None

    def credentials(self) -> tuple[str, str]: ...


class Receiver:
    def __init__(
        self,
        *,
        trust: TrustGate,
        state: StateDir,
        session: ServerStanding,
        applier: ConfigApplier,
        upgrades: CollectorBuilds,
        metrics: AgentMetrics,
        clock: Clock,
        operator_stopped: Callable[[], bool],
        on_applied: Callable[[], None] = lambda: None,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        """`on_applied` runs after a new config applied (the loop resets its restart backoff);
        `on_change` after desired or the build changed (the loop updates its info metric)."""
        self.trust = trust
        self.state = state
        self.session = session
        self.applier = applier
        self.upgrades = upgrades
        self.metrics = metrics
        self.clock = clock
        self.operator_stopped = operator_stopped
        self.on_applied = on_applied
        self.on_change = on_change
        # what the agent knows
        self.desired: StoredConfig | None = state.last_good()
        self.failed_hash = state.failed_hash()
        self.last_apply: ApplyResult | None = None
        self.untrusted: tuple[str, str] | None = None  # (hash, reason) last refused, to log it once

    def receive(self, fetched: FetchedConfig) -> None:
        new = self.check(fetched)
        if new is None:
            return
        build: Build | None = None
        version = self.upgrades.needed(new.data) if new.hash != self.failed_hash else None
        if version is not None:
            build = self.prepare_build(new, version)
            if build is None:
                return
        self.state.save_last_received(new)
        self.session.etag = new.hash
        desired = self.desired
        if desired is not None and new.hash == desired.hash:
            # Same bytes (perhaps a new revision): never reload for an unchanged hash.
            if (new.revision, new.group) != (desired.revision, desired.group):
                self.desired = new
                self.state.save_last_good(new)
                self.on_change()
            return
        if new.hash == self.failed_hash:
            return
        log.info("applying config %s (revision %s)", new.hash[:12], new.revision)
        binary = build.path if build is not None else None
        outcome = self.applier.apply(new, desired, should_run=not self.operator_stopped(), binary=binary)
        if build is not None:
            if outcome.ok:
                self.upgrades.switched(build)
            else:
                log.error("collector %s rolled back to %s", build.version, self.upgrades.current.version)
                self.upgrades.discard()
        result: ApplyResult
        if outcome.ok:
            self.desired = new
            self.state.save_last_good(new)
            self.failed_hash = None
            self.state.save_failed_hash(None)
            self.on_applied()
            result = self._result("applied", new.hash, new.revision)
        else:
            self.failed_hash = new.hash
            self.state.save_failed_hash(new.hash)
            error = (outcome.error or "apply failed")[-MAX_ERROR_CHARS:]
            result = self._result("failed", new.hash, new.revision, error)
        self.last_apply = result
        self.metrics.applies.labels(result=result.result).inc()
        self.on_change()

    def mark_restored(self) -> None:
        """The desired config is back in force (after drift, a restart, a start): report it applied, so
        the server sees the drift resolved."""
        desired = self.desired
        assert desired is not None
        self.last_apply = self._result("applied", desired.hash, desired.revision)

    def _result(
        self, result: ApplyResultKind, config_hash: str, revision: str | None, error: str | None = None
    ) -> ApplyResult:
        return ApplyResult(
            result=result, config_hash=config_hash, revision=revision, error=error, at=self.clock.now()
        )

    # --- refusing ---------------------------------------------------------------------------------

    def check(self, fetched: FetchedConfig) -> StoredConfig | None:
        """The config to act on, or None if refused. With trusted keys, nothing the server sent is
        written anywhere (not even last_received) until its statement verifies; a refusal is reported
        as `untrusted` and the ETag is not advanced, so the next poll fetches and checks it again."""
        try:
            checked = self.trust.check(fetched)
        except Untrusted as exc:
            self.refuse(fetched, exc.reason)
            return None
        if self.untrusted is not None:
            log.info("config %s verified: trusted again", fetched.hash[:12])
            self.untrusted = None
        return checked

    def refuse(self, fetched: FetchedConfig, reason: str) -> None:
        # Report against the hash the server announced: that is what it wants this agent to run.
        target = fetched.announced or fetched.hash
        if self.untrusted != (target, reason):
            log.error("refusing config %s (revision %s): %s", target[:12], fetched.revision, reason)
            self.untrusted = (target, reason)
            self.metrics.applies.labels(result="untrusted").inc()
            self.last_apply = self._result("untrusted", target, fetched.revision, reason)

    def prepare_build(self, new: StoredConfig, version: str) -> Build | None:
        """The build `new` asks for, on disk and checked; None if refused (reported). A server that is
        away raises ServerUnavailable before anything is recorded, so the next poll tries again."""
        agent_id, token = self.session.credentials()
        try:
            return self.upgrades.prepare(agent_id, token, version)
        except Untrusted as exc:
            # Never run it; do not download it again for this config either (a version is immutable).
            self.refuse(FetchedConfig(new.data, new.hash, new.revision, new.group), exc.reason)
            self.failed_hash = new.hash
            self.state.save_failed_hash(new.hash)
            self.state.save_last_received(new)
            self.session.etag = new.hash
        except ServerRefused as exc:  # not published (yet): report it, ask again next poll
            if exc.status != 404:
                raise  # 401 and the like: the server cycle re-registers
            error = f"collector {version} cannot be downloaded: {exc}"
            if self.last_apply is None or self.last_apply.error != error:
                log.error("%s", error)
                self.last_apply = self._result("failed", new.hash, new.revision, error)
        return None
