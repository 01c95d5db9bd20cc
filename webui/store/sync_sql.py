"""SQL shared by the fleet view, the maintained status counts and the migration that creates them.

A module of its own (no imports) because webui/store/db.py's migrations need it and db.py is imported
by everything else in the store.
"""

# The current revision's groups, and an agent's sync status against them: the one definition the
# fleet view (webui/store/agents.py) and these counts share, so they cannot disagree.
CURRENT_GROUPS_CTE = """
WITH cur AS (SELECT commit_sha FROM publications ORDER BY seq DESC LIMIT 1),
g AS (SELECT name, config_hash FROM revision_groups WHERE commit_sha = (SELECT commit_sha FROM cur))
"""
SYNC_STATUS_CASE = """CASE
    WHEN g.name IS NULL THEN 'NoGroup'
    WHEN a.last_apply_result = 'failed' AND a.last_apply_hash = g.config_hash THEN 'ApplyFailed'
    WHEN a.last_apply_result = 'untrusted' AND a.last_apply_hash = g.config_hash
      AND (a.reported_hash IS NULL OR a.reported_hash != g.config_hash) THEN 'Untrusted'
    WHEN a.last_drift_at IS NOT NULL AND (a.last_apply_at IS NULL OR a.last_drift_at > a.last_apply_at)
      THEN 'Drifted'
    WHEN a.reported_hash = g.config_hash THEN 'Synced'
    ELSE 'OutOfSync'
  END"""

# The revision an agent is served: its own `served_sha` while a rollout (or a rollback) pins it
# (webui/store/rollouts.py), else the current one. Added by the rollouts part (migration 5).
GROUP_OF_AGENT_JOIN = (
    "LEFT JOIN g ON g.name = a.group_name"
    " AND g.commit_sha = COALESCE(a.served_sha, (SELECT commit_sha FROM cur))"
)
SERVED_GROUPS_CTE = """
WITH cur AS (SELECT commit_sha FROM publications ORDER BY seq DESC LIMIT 1),
g AS (SELECT commit_sha, name, config_hash FROM revision_groups)
"""

CELL_OF_AGENT = f"""{SERVED_GROUPS_CTE}
SELECT COALESCE(a.group_name, '') AS grp, {SYNC_STATUS_CASE} AS sync_status
FROM agents a {GROUP_OF_AGENT_JOIN} WHERE a.id = ?
"""

REBUILD_SQL = [
    "DELETE FROM agent_sync_counts",
    f"""INSERT INTO agent_sync_counts (group_name, sync_status, n)
{SERVED_GROUPS_CTE}
SELECT COALESCE(a.group_name, ''), {SYNC_STATUS_CASE}, COUNT(*)
FROM agents a {GROUP_OF_AGENT_JOIN} GROUP BY 1, 2""",
]

# Migration 4 as it ran before agents had served_sha (a migration's text never changes meaning).
REBUILD_SQL_V4 = [
    "DELETE FROM agent_sync_counts",
    f"""INSERT INTO agent_sync_counts (group_name, sync_status, n)
{CURRENT_GROUPS_CTE}
SELECT COALESCE(a.group_name, ''), {SYNC_STATUS_CASE}, COUNT(*)
FROM agents a LEFT JOIN g ON g.name = a.group_name GROUP BY 1, 2""",
]
