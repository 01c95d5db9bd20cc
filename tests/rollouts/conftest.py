"""Rollout tests run their store on both backends (SQLite, PostgreSQL), like the server's."""

from tests.webui.conftest import backend  # noqa: F401  (fixture: None or a PostgreSQL URL)
