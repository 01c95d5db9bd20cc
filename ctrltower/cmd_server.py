"""`ctrltower server` (run the control plane) and `ctrltower token create|list|revoke`."""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

import click
from pydantic import ValidationError

from ctrltower import exit_codes
from ctrltower.params import parse_listen
from schemas.api import ROLES, Role, TokenCreate, parse_label_scope
from schemas.errors import CtrlTowerError

if TYPE_CHECKING:
    from webui.store import Store

DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory holding state.db, tokens and metrics.",
)


DATABASE_URL = click.option(
    "--database-url",
    envvar="CTRLTOWER_DATABASE_URL",
    default=None,
    help="PostgreSQL URL (postgresql://...): keep all state there, shared by every server replica "
    "(env CTRLTOWER_DATABASE_URL). Default: SQLite in DATA_DIR/state.db.",
)


TOKEN_DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The server's data dir (its state.db); not needed with --database-url.",
)


def check_database_url(url: str | None) -> str | None:
    if url is None or url == "":
        return None
    if not url.startswith(("postgresql://", "postgres://")):
        raise click.BadParameter("expected a postgresql:// URL", param_hint="--database-url")
    return url


@click.command()
@DATA_DIR
@click.option("--listen", default="127.0.0.1:8080", show_default=True, help="HOST:PORT to serve on.")
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True, help="WSGI processes.")
@click.option(
    "--threads", type=click.IntRange(1, 64), default=2, show_default=True, help="Threads per worker."
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(0.05, 3600),
    default=15.0,
    show_default=True,
    help="Seconds between agent polls (agents offline after 3 intervals of silence).",
)
@click.option(
    "--max-body",
    type=click.IntRange(1024),
    default=16 * 1024 * 1024,
    show_default=True,
    help="Request body limit in bytes.",
)
@click.option("--no-metrics", is_flag=True, help="Do not start the metrics process.")
@click.option(
    "--metrics-interval",
    type=click.FloatRange(0.05, 3600),
    default=None,
    help="Seconds between metrics scrapes of each agent (default: the metrics process's).",
)
@click.option(
    "--metrics-max-gap",
    type=click.FloatRange(1, 1000, min_open=True),
    default=None,
    help="Scrapes further apart than this many intervals leave a gap in the charts, not a rate "
    "(default: the metrics process's, 3.5).",
)
@click.option(
    "--retention-days",
    type=click.FloatRange(0.01, 36500),
    default=30.0,
    show_default=True,
    help="Keep agent events, finished commands and reconcile runs this long (the audit log is kept).",
)
@click.option(
    "--rollout-tick",
    type=click.FloatRange(0.05, 3600),
    default=5.0,
    show_default=True,
    help="Seconds between two looks of the rollout controller at the active rollouts.",
)
@DATABASE_URL
@click.option(
    "--metrics-lake",
    envvar="CTRLTOWER_METRICS_LAKE",
    default=None,
    metavar="DATA_PATH",
    help="With --database-url: metrics in DuckLake, catalog in that PostgreSQL, data in DATA_PATH "
    "(a directory all replicas reach, or s3://bucket/prefix); scrapes are sharded across replicas "
    "(env CTRLTOWER_METRICS_LAKE).",
)
@click.option(
    "--scrape-allow",
    multiple=True,
    metavar="HOST|CIDR",
    help="A host or network agents may announce as their metrics host (repeatable); other announced "
    "hosts are replaced by the address the agent connected from.",
)
@click.option(
    "--behind-proxy",
    is_flag=True,
    help="Trust X-Forwarded-For / X-Forwarded-Proto from one reverse proxy in front of the server.",
)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info")
def server(
    data_dir: Path,
    listen: str,
    workers: int,
    threads: int,
    poll_interval: float,
    max_body: int,
    no_metrics: bool,
    metrics_interval: float | None,
    metrics_max_gap: float | None,
    retention_days: float,
    rollout_tick: float,
    database_url: str | None,
    metrics_lake: str | None,
    scrape_allow: tuple[str, ...],
    behind_proxy: bool,
    log_level: str,
) -> None:
    """Run the control plane server (agent API, control API, web UI, metrics) until SIGTERM/SIGINT."""
    from webui.serve import serve
    from webui.settings import ServerSettings

    host, port = parse_listen(listen)
    if port == 0:
        raise click.BadParameter("the server needs a fixed port", param_hint="--listen")
    url = check_database_url(database_url)
    if metrics_lake and url is None:
        raise click.BadParameter(
            "needs --database-url (the lake's catalog lives there)", param_hint="--metrics-lake"
        )
    if url is not None and not no_metrics and not metrics_lake:
        # a local DuckDB file per replica would answer each query with a different part of the fleet
        raise click.UsageError(
            "with --database-url, give --metrics-lake DATA_PATH (shared metrics) or --no-metrics"
        )
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = ServerSettings(
        data_dir=data_dir.resolve(),
        host=host,
        port=port,
        workers=workers,
        threads=threads,
        poll_interval_s=poll_interval,
        max_body_bytes=max_body,
        metrics=not no_metrics,
        metrics_interval_s=metrics_interval,
        metrics_max_gap_intervals=metrics_max_gap,
        retention_days=retention_days,
        rollout_tick_s=rollout_tick,
        database_url=url,
        metrics_lake=metrics_lake or None,
        scrape_allow=scrape_allow,
        behind_proxy=behind_proxy,
    )
    try:
        code = serve(settings)
    except CtrlTowerError as exc:
        click.echo(f"ctrltower server: {exc}", err=True)
        sys.exit(exit_codes.SERVER_ERROR)
    sys.exit(code)


@click.group()
def token() -> None:
    """Create, list or revoke API tokens (works on the data dir directly; the server may be running)."""


def _store(data_dir: Path | None, database_url: str | None = None) -> Store:
    from webui import datadir
    from webui.store import Store

    url = check_database_url(database_url)
    if url is not None:
        try:
            return Store.open(database_url=url)
        except CtrlTowerError as exc:
            click.echo(f"ctrltower token: the database is not usable: {exc}", err=True)
            sys.exit(exit_codes.SERVER_ERROR)
    if data_dir is None:
        click.echo("ctrltower token: --data-dir or --database-url is required", err=True)
        sys.exit(exit_codes.USAGE)
    db = datadir.state_db(data_dir)
    if not db.exists():
        click.echo(f"ctrltower token: no {db.name} in {data_dir} (start the server once first)", err=True)
        sys.exit(exit_codes.USAGE)
    try:
        return Store.open(db)
    except (sqlite3.Error, CtrlTowerError) as exc:
        click.echo(f"ctrltower token: {db} is not usable: {exc}", err=True)
        sys.exit(exit_codes.SERVER_ERROR)


@token.command("create")
@TOKEN_DATA_DIR
@DATABASE_URL
@click.option("--role", type=click.Choice(list(ROLES)), required=True)
@click.option("--name", default="", help="A label for the token (shown in lists and the audit log).")
@click.option(
    "--labels",
    "label_scope",
    default=None,
    metavar="KEY=VALUE,KEY=*,...",
    help="enroll tokens: the labels a registration may claim (repeat a key for several values, * for any); "
    "registrations claiming others are refused (403).",
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def token_create(
    data_dir: Path | None, database_url: str | None, role: str, name: str, label_scope: str | None, fmt: str
) -> None:
    """Create a token and print its secret (shown once, stored only as a hash)."""
    scope = None
    if label_scope is not None:
        if role != "enroll":
            raise click.BadParameter("only enroll tokens have a label scope", param_hint="--labels")
        try:
            scope = TokenCreate(role="enroll", labels=parse_label_scope(label_scope)).labels
        except (ValueError, ValidationError) as exc:
            raise click.BadParameter(str(exc), param_hint="--labels") from None
    store = _store(data_dir, database_url)
    try:
        created = store.create_token(cast(Role, role), name, actor="cli", actor_role="admin", labels=scope)
    except ValidationError as exc:
        click.echo(f"ctrltower token: {exc}", err=True)
        sys.exit(exit_codes.USAGE)
    finally:
        store.close()
    if fmt == "json":
        click.echo(created.model_dump_json())
    else:
        click.echo(created.secret)


@token.command("list")
@TOKEN_DATA_DIR
@DATABASE_URL
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def token_list(data_dir: Path | None, database_url: str | None, fmt: str) -> None:
    """List tokens (id, role, name, created, revoked); never their secrets."""
    store = _store(data_dir, database_url)
    try:
        items = store.list_tokens()
    finally:
        store.close()
    if fmt == "json":
        click.echo(json.dumps([json.loads(t.model_dump_json()) for t in items], indent=2))
        return
    click.echo(f"{'ID':>4}  {'ROLE':<10}  {'CREATED':<20}  {'REVOKED':<20}  NAME")
    for t in items:
        revoked = t.revoked_at.strftime("%Y-%m-%d %H:%M:%S") if t.revoked_at else "-"
        created = t.created_at.strftime("%Y-%m-%d %H:%M:%S")
        scope = ""
        if t.labels is not None:  # an enroll token's label scope
            scope = "  [labels " + ",".join(f"{k}={v}" for k, vs in t.labels.items() for v in vs) + "]"
        click.echo(f"{t.id:>4}  {t.role:<10}  {created:<20}  {revoked:<20}  {t.name}{scope}")


@token.command("revoke")
@TOKEN_DATA_DIR
@DATABASE_URL
@click.argument("token_id", type=int)
def token_revoke(data_dir: Path | None, database_url: str | None, token_id: int) -> None:
    """Revoke the token with this id (see `token list`); it stops working at once."""
    from webui.store.errors import NotFound

    store = _store(data_dir, database_url)
    try:
        store.revoke_token(token_id, actor="cli", actor_role="admin")
    except NotFound as exc:
        click.echo(f"ctrltower token: {exc}", err=True)
        sys.exit(exit_codes.USAGE)
    finally:
        store.close()
    click.echo(f"revoked token {token_id}")
