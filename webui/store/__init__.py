"""The server's state: one `Store` per worker process, built by create_app.

Two backends behind one interface (webui/store/db.py `StateDB`): SQLite in DATA_DIR/state.db (the
embedded default) or PostgreSQL (`--database-url`, shared by any number of replicas, webui/store/pg.py).

Get it in a request with `webui.context.get_store()` (it lives in `current_app.extensions["ctrltower"]`;
the store itself never imports Flask). Errors are `webui.store.errors.StoreError`s.
Methods by area: agents (`register_agent`, `report_status`, `list_agents`, `get_agent`, `get_agents`,
`agent_events`), commands (`queue_command`, `list_commands`), revisions (`publish`, `list_revisions`,
`get_revision`, `list_groups`, `get_group` with history and diff, `list_pipelines`, `get_pipeline`,
`served_config`), tokens (`create_token`, `list_tokens`, `revoke_token`, `find_token`), audit and runs
(`audit`, `list_audit`, `add_reconcile_run`, `list_reconcile_runs`), OpAMP agents' protocol state
(`opamp_agent`, `opamp_register`, `opamp_describe`, `opamp_save`, `opamp_fail_commands`), identity
(`approve_reregistration`, `agent_label_scope`), UI sessions (`create_session`, `session_token_id`,
`end_session`) and what the metrics process reads (`scrape_targets`, `applied_revisions`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from webui.store.agents import AgentFilter, AgentsMixin
from webui.store.audit import AuditMixin
from webui.store.base import Clock, ScrapeHealth
from webui.store.collectors import CollectorsMixin
from webui.store.commands import CommandsMixin
from webui.store.db import MIGRATIONS, Database, StateDB, migrate
from webui.store.identity import IdentityMixin
from webui.store.opamp import OpampMixin
from webui.store.revisions import RevisionsMixin, ServedConfig
from webui.store.scrape import ScrapeMixin
from webui.store.tokens import TokensMixin

if TYPE_CHECKING:
    from webui.settings import ServerSettings

__all__ = ["AgentFilter", "ServedConfig", "Store"]


class Store(
    AgentsMixin,
    CommandsMixin,
    RevisionsMixin,
    TokensMixin,
    AuditMixin,
    OpampMixin,
    CollectorsMixin,
    IdentityMixin,
    ScrapeMixin,
):
    """All state access of the server. Thread-safe (SQLite: a connection per thread; PostgreSQL: a pool)."""

    @classmethod
    def open(
        cls,
        db_path: Path | None = None,
        *,
        database_url: str | None = None,
        poll_interval_s: float = 15.0,
        offline_after_s: float | None = None,
        clock: Clock = time.time,
        scrape_failing: ScrapeHealth | None = None,
        pool_size: int = 8,
    ) -> Store:
        """Migrate (if needed) and open the SQLite database at db_path, or the PostgreSQL database_url."""
        db: StateDB
        if database_url is not None:
            from webui.store.pg import PgDatabase, migrate_pg  # psycopg only where PostgreSQL is used

            migrate_pg(database_url, MIGRATIONS)
            db = PgDatabase(database_url, max_size=pool_size)
        elif db_path is not None:
            migrate(db_path)
            db = Database(db_path)
        else:
            raise ValueError("Store.open needs db_path or database_url")
        return cls(
            db,
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
            database_url=settings.database_url,
            pool_size=settings.threads + 2,
            poll_interval_s=settings.poll_interval_s,
            offline_after_s=settings.offline_after_s,
            clock=clock,
            scrape_failing=scrape_failing,
        )

    def close(self) -> None:
        self.db.close()
