"""The server's SQLite state (DATA_DIR/state.db): one `Store` per worker process, built by create_app.

Get it in a request with `webui.store.get_store()` (it lives in `current_app.extensions["ctrltower"]`).
Methods by area: agents (`register_agent`, `report_status`, `list_agents`, `get_agent`, `get_agents`,
`agent_events`), commands (`queue_command`, `list_commands`), revisions (`publish`, `list_revisions`,
`get_revision`, `list_groups`, `get_group` with history and diff, `list_pipelines`, `get_pipeline`,
`served_config`), tokens (`create_token`, `list_tokens`, `revoke_token`, `find_token`), audit and runs
(`audit`, `list_audit`, `add_reconcile_run`, `list_reconcile_runs`), OpAMP agents' protocol state
(`opamp_agent`, `opamp_register`, `opamp_describe`, `opamp_save`, `opamp_fail_commands`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, cast

from flask import current_app

from webui.store.agents import AgentFilter, AgentsMixin
from webui.store.audit import AuditMixin
from webui.store.base import Clock, ScrapeHealth
from webui.store.commands import CommandsMixin
from webui.store.db import Database, migrate
from webui.store.opamp import OpampMixin
from webui.store.revisions import RevisionsMixin, ServedConfig
from webui.store.tokens import TokensMixin

if TYPE_CHECKING:
    from webui.settings import ServerSettings

__all__ = ["AgentFilter", "ServedConfig", "Store", "get_store"]

EXTENSION_KEY = "ctrltower"


class Store(AgentsMixin, CommandsMixin, RevisionsMixin, TokensMixin, AuditMixin, OpampMixin):
    """All state access of the server. Thread-safe (one SQLite connection per thread)."""

    @classmethod
    def open(
        cls,
        db_path: Path,
        *,
        poll_interval_s: float = 15.0,
        offline_after_s: float | None = None,
        clock: Clock = time.time,
        scrape_failing: ScrapeHealth | None = None,
    ) -> Store:
        """Migrate (if needed) and open the database at db_path."""
        migrate(db_path)
        return cls(
            Database(db_path),
            clock=clock,
            poll_interval_s=poll_interval_s,
            offline_after_s=3 * poll_interval_s if offline_after_s is None else offline_after_s,
            scrape_failing=scrape_failing,
        )

    @classmethod
    def from_settings(
        cls, settings: ServerSettings, *, clock: Clock = time.time, scrape_failing: ScrapeHealth | None = None
    ) -> Store:
        return cls.open(
            settings.db_path,
            poll_interval_s=settings.poll_interval_s,
            offline_after_s=settings.offline_after_s,
            clock=clock,
            scrape_failing=scrape_failing,
        )

    def close(self) -> None:
        self.db.close()


def get_store() -> Store:
    """The store of the current Flask app (inside a request or app context)."""
    return cast(Store, current_app.extensions[EXTENSION_KEY])
