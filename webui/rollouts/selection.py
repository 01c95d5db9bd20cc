"""Which revision each agent of a rollout is served (pure: no database, no clock).

A group is served from one of three places: an active rollout (the new revision for the agents the
current step selected, the previous one for the rest), its stable revision (the last one a rollout
finished or rolled back to), or the current revision (groups no policy covers: today's behaviour).

`weight` steps choose agents by a stable hash of agent id and commit: each agent gets a bucket in
[0, 10000) that does not change during the rollout, so raising the weight only adds agents, and a
different commit shuffles who goes first (the same hosts are not always the canaries).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

BUCKETS = 10_000


def bucket(agent_id: str, commit_sha: str) -> int:
    """The agent's place in [0, 10000) for this commit: stable across processes and restarts."""
    digest = hashlib.sha256(f"{agent_id}\n{commit_sha}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


@dataclass(frozen=True)
class GroupServing:
    """How an active rollout serves one group."""

    commit_sha: str  # the new revision
    base_sha: str  # the revision the group ran before
    whole: bool  # a group step took the whole group
    weight: int  # percent of the group's agents on the new revision

    def revision_for(self, agent_id: str) -> str:
        if self.whole or self.weight >= 100:
            return self.commit_sha
        if bucket(agent_id, self.commit_sha) < self.weight * (BUCKETS // 100):
            return self.commit_sha
        return self.base_sha


def served_revisions(
    agents: Iterable[tuple[str, str | None]],
    rollouts: Mapping[str, GroupServing],
    stable: Mapping[str, str],
) -> dict[str, str | None]:
    """agent id -> the revision it is served (None: the current revision), for (agent id, group) pairs."""
    out: dict[str, str | None] = {}
    for agent_id, group in agents:
        if group is None:
            out[agent_id] = None
        elif group in rollouts:
            out[agent_id] = rollouts[group].revision_for(agent_id)
        else:
            out[agent_id] = stable.get(group)
    return out
