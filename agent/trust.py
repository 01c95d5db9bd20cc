"""Which configs the agent may run: with --trust-key, only bytes a trusted key signed for a group this
agent can belong to (schemas/signing.py); without, what the server sends, as before signing existed."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.client import FetchedConfig, ServerRefused, ServerUnavailable
from agent.clock import Clock
from agent.metrics import AgentMetrics
from agent.state import StateDir, StoredConfig
from agent.upgrade import Build, Upgrades
from schemas.api import ApplyResult
from schemas.signing import Untrusted, verify_config

log = logging.getLogger("ctrltower.agent")


class TrustGate:
    def __init__(
        self,
        keys: Mapping[str, Ed25519PublicKey],
        labels: Mapping[str, str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = dict(keys)
        self.labels = dict(labels)
        self.clock = clock

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def check(self, fetched: FetchedConfig) -> StoredConfig:
        """The config to act on, identified by its statement's commit and group when verified.

        Raises Untrusted (refuse and report) with trusted keys; without, a body that does not match
        its announced hash raises ServerUnavailable (retry later), as it always did.
        """
        if not self.keys:
            if fetched.hash_mismatch:
                raise ServerUnavailable(
                    f"config body hash {fetched.hash[:12]} does not match announced {fetched.announced}"
                )
            return StoredConfig(fetched.data, fetched.hash, fetched.revision, fetched.group)
        if fetched.hash_mismatch:
            raise Untrusted(f"body sha256 {fetched.hash[:12]} is not the announced {fetched.announced}")
        st = verify_config(
            fetched.statement, self.keys, data=fetched.data, labels=self.labels, now=self.clock()
        )
        return StoredConfig(fetched.data, fetched.hash, st.commit, st.group)


class TrustChecks:
    """The agent's side of refusing: a config whose statement does not verify, a collector build that
    does not check out. Mixed into agent.runner.Agent, whose attributes these are."""

    clock: Clock
    trust: TrustGate
    untrusted: tuple[str, str] | None
    upgrades: Upgrades
    metrics: AgentMetrics
    state: StateDir
    last_apply: ApplyResult | None
    failed_hash: str | None
    etag: str | None
    agent_id: str | None
    token: str | None

    def _check(self, fetched: FetchedConfig) -> StoredConfig | None:
        """The config to act on, or None if refused. With trusted keys, nothing the server sent is
        written anywhere (not even last_received) until its statement verifies; a refusal is reported
        as `untrusted` and the ETag is not advanced, so the next poll fetches and checks it again."""
        try:
            checked = self.trust.check(fetched)
        except Untrusted as exc:
            self._refuse(fetched, exc.reason)
            return None
        if self.untrusted is not None:
            log.info("config %s verified: trusted again", fetched.hash[:12])
            self.untrusted = None
        return checked

    def _refuse(self, fetched: FetchedConfig, reason: str) -> None:
        # Report against the hash the server announced: that is what it wants this agent to run.
        target = fetched.announced or fetched.hash
        if self.untrusted != (target, reason):
            log.error("refusing config %s (revision %s): %s", target[:12], fetched.revision, reason)
            self.untrusted = (target, reason)
            self.metrics.applies.labels(result="untrusted").inc()
            self.last_apply = ApplyResult(
                result="untrusted",
                config_hash=target,
                revision=fetched.revision,
                error=reason,
                at=self.clock.now(),
            )

    def _prepare_build(self, new: StoredConfig, version: str) -> Build | None:
        """The build `new` asks for, on disk and checked; None if refused (reported). A server that is
        away raises ServerUnavailable before anything is recorded, so the next poll tries again."""
        assert self.agent_id is not None and self.token is not None
        try:
            return self.upgrades.prepare(self.agent_id, self.token, version)
        except Untrusted as exc:
            # Never run it; do not download it again for this config either (a version is immutable).
            self._refuse(FetchedConfig(new.data, new.hash, new.revision, new.group), exc.reason)
            self.failed_hash = new.hash
            self.state.save_failed_hash(new.hash)
            self.state.save_last_received(new)
            self.etag = new.hash
        except ServerRefused as exc:  # not published (yet): report it, ask again next poll
            if exc.status != 404:
                raise  # 401 and the like: the server cycle re-registers
            error = f"collector {version} cannot be downloaded: {exc}"
            if self.last_apply is None or self.last_apply.error != error:
                log.error("%s", error)
                self.last_apply = ApplyResult(
                    result="failed",
                    config_hash=new.hash,
                    revision=new.revision,
                    error=error,
                    at=self.clock.now(),
                )
        return None
