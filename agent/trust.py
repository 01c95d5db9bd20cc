"""Which configs the agent may run: with --trust-key, only bytes a trusted key signed for a group this
agent can belong to (schemas/signing.py); without, what the server sends, as before signing existed."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.client import FetchedConfig, ServerUnavailable
from agent.state import StoredConfig
from schemas.signing import Untrusted, verify_config


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
