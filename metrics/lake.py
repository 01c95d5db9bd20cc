"""Metrics in DuckLake (scale-out mode): every replica's metrics process writes and reads the same tables.

`ctrltower server --database-url postgresql://... --metrics-lake DATA_PATH`: the DuckLake catalog lives in
the same PostgreSQL (in the state's own schema, tables `ducklake_*`), the Parquet files under DATA_PATH,
a directory every replica can reach or `s3://bucket/prefix`. The store (metrics/store.py) runs the
same SQL on it as on the local DuckDB file.

DuckDB extensions cannot be downloaded at run time on these machines: they come from PyPI packages pinned
with duckdb (`duckdb-extension-ducklake`, `-postgres_scanner`, `-httpfs`, each built for one duckdb
version) and are loaded from their files; automatic install and load are switched off so nothing is
fetched behind our back.

S3 credentials and endpoint come from the standard variables: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_SESSION_TOKEN, AWS_REGION (or AWS_DEFAULT_REGION), AWS_ENDPOINT_URL (an S3-compatible endpoint such
as MinIO; `http://` turns TLS off).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import duckdb

from schemas.errors import Permanent

EXTENSIONS = ("postgres_scanner", "ducklake", "httpfs")
CATALOG = "lake"


class LakeError(Permanent):
    """The lake cannot be opened: a missing extension package, a bad data path, an unreachable catalog."""


def extension_file(name: str) -> Path:
    """The extension's file shipped by `duckdb-extension-<name>` for the installed duckdb version."""
    try:
        module = importlib.import_module(f"duckdb_extension_{name}")
    except ModuleNotFoundError as exc:
        raise LakeError(
            f"the DuckDB extension {name} is not installed (pip package duckdb-extension-{name}=="
            f"{duckdb.__version__})"
        ) from exc
    base = Path(str(module.__file__)).parent / "extensions"
    for version in (f"v{duckdb.__version__}", duckdb.__version__):
        path = base / version / f"{name}.duckdb_extension"
        if path.exists():
            return path
    raise LakeError(f"duckdb-extension-{name} has no build for duckdb {duckdb.__version__} under {base}")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _s3_secret(env: Mapping[str, str]) -> str | None:
    key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if not key or not secret:
        return None
    parts = [f"TYPE s3, KEY_ID {_quote(key)}, SECRET {_quote(secret)}"]
    if env.get("AWS_SESSION_TOKEN"):
        parts.append(f"SESSION_TOKEN {_quote(env['AWS_SESSION_TOKEN'])}")
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        parts.append(f"REGION {_quote(region)}")
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        u = urlsplit(endpoint)
        host = u.netloc or u.path
        parts.append(f"ENDPOINT {_quote(host)}, URL_STYLE 'path'")
        if u.scheme == "http":
            parts.append("USE_SSL false")
    return f"CREATE OR REPLACE SECRET ctrltower_s3 ({', '.join(parts)})"


def catalog_conninfo(database_url: str) -> str:
    """The PostgreSQL URL as DuckDB's postgres extension takes it (libpq accepts URIs as they are)."""
    return database_url.replace("postgres://", "postgresql://", 1)


def open_lake(
    database_url: str,
    data_path: str,
    schema: str,
    *,
    memory_limit: str | None = None,
    env: Mapping[str, str] | None = None,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the lake attached as `lake` and selected (`USE lake`)."""
    env = os.environ if env is None else env
    if not data_path.startswith("s3://"):
        Path(data_path).mkdir(parents=True, exist_ok=True)
        data_path = str(Path(data_path).resolve())
    if not data_path.endswith("/"):
        data_path += "/"
    con = duckdb.connect()
    try:
        con.execute("SET autoinstall_known_extensions = false")
        con.execute("SET autoload_known_extensions = false")
        if memory_limit is not None:
            con.execute(f"SET memory_limit = {_quote(memory_limit)}")
        for name in EXTENSIONS:
            con.execute(f"LOAD {_quote(str(extension_file(name)))}")
        if data_path.startswith("s3://"):
            secret = _s3_secret(env)
            if secret is None:
                raise LakeError(f"{data_path}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for S3")
            con.execute(secret)
        con.execute(
            f"ATTACH {_quote('ducklake:postgres:' + catalog_conninfo(database_url))} AS {CATALOG}"
            f" (DATA_PATH {_quote(data_path)}, METADATA_SCHEMA {_quote(schema)})"
        )
        con.execute(f"USE {CATALOG}")
    except duckdb.Error as exc:
        con.close()
        raise LakeError(f"opening the metrics lake at {data_path}: {exc}") from exc
    return con
