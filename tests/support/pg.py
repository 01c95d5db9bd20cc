"""A throwaway PostgreSQL for the tests: one cluster per test session, one schema per test.

The cluster is Debian's PostgreSQL 15 (`scripts/system-deps.sh` installs it): `initdb` in a temp dir,
`postgres` listening on 127.0.0.1 and a free port, trust authentication (loopback only, test data
only). `initdb` refuses to run as root, so as root the cluster runs as the `postgres` user.

`make test` starts one cluster for the whole run (`python -m tests.support.pg -- CMD...` exports
`CTRLTOWER_TEST_DATABASE_URL` to CMD and stops the cluster afterwards), so the pytest-xdist workers share
it; a plain `pytest` run starts its own in the `pg_cluster` session fixture (tests/conftest.py).
Each test gets a fresh schema (CREATE DATABASE is slow; CREATE SCHEMA is not) through the URL's
`options=-csearch_path=...`; the store's advisory locks include the schema, so tests never contend.

    from tests.support.pg import PgCluster
    with PgCluster.start(tmp_dir) as pg:
        url = pg.new_schema_url("t_mine")
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

from tests.support.ready import READY_CAP_S

ENV_URL = "CTRLTOWER_TEST_DATABASE_URL"
PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def pg_bin(name: str) -> str:
    for d in PG_BIN_DIRS:
        if (d / name).exists():
            return str(d / name)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"PostgreSQL's {name} not found: run scripts/system-deps.sh (Debian `postgresql`)")
    return found


def available() -> bool:
    try:
        pg_bin("initdb")
    except RuntimeError:
        return False
    return True


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    """A PostgreSQL cluster in a temp dir; `stop()` (or leaving the `with`) removes it."""

    def __init__(self, root: Path, port: int, run_as: str | None) -> None:
        self.root = root
        self.port = port
        self.run_as = run_as
        self.data = root / "data"
        self.log = root / "postgres.log"

    @property
    def base_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _cmd(self, *args: str) -> list[str]:
        if self.run_as is None:
            return list(args)
        return ["runuser", "-u", self.run_as, "--", *args]

    @classmethod
    def start(cls, parent: Path | None = None, *, timeout_s: float = READY_CAP_S) -> PgCluster:
        # pg_ctl -w returns as soon as PostgreSQL accepts connections (its own readiness report);
        # timeout_s is only the safety cap (tests/support/ready.py), not a guess at how long it takes
        run_as = "postgres" if os.geteuid() == 0 else None
        root = Path(tempfile.mkdtemp(prefix="ctrltower-pg-", dir=parent))
        if run_as is not None:
            pw = pwd.getpwnam(run_as)
            os.chown(root, pw.pw_uid, pw.pw_gid)
            root.chmod(0o700)
        cluster = cls(root, _free_port(), run_as)
        subprocess.run(
            cluster._cmd(
                pg_bin("initdb"), "-D", str(cluster.data), "-U", "postgres", "--auth=trust",
                "--encoding=UTF8", "--locale=C", "--no-sync",
            ),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        opts = (
            f"-c listen_addresses=127.0.0.1 -c port={cluster.port} -c unix_socket_directories={root}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"  # throwaway data: speed
            " -c max_connections=300 -c shared_buffers=64MB"
        )
        subprocess.run(
            cluster._cmd(pg_bin("pg_ctl"), "-D", str(cluster.data), "-l", str(cluster.log), "-o", opts,
                         "-w", "-t", str(int(timeout_s)), "start"),
            check=True,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        return cluster

    def new_schema_url(self, name: str | None = None) -> str:
        """A fresh empty schema and a URL whose connections use it (search_path)."""
        import psycopg

        schema = name or "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.base_url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        return schema_url(self.base_url, schema)

    def drop_schema(self, url: str) -> None:
        import psycopg

        schema = url.rsplit("search_path%3D", 1)[-1]
        with psycopg.connect(self.base_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, FileNotFoundError):
            subprocess.run(
                self._cmd(pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"),
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PgCluster:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def schema_url(base_url: str, schema: str) -> str:
    sep = "&" if "?" in base_url else "?"
    return f"{base_url}{sep}options={quote('-csearch_path=' + schema, safe='')}"


class SharedCluster:
    """A cluster someone else started (`make test`): its URL from the environment; never stopped here."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    new_schema_url = PgCluster.new_schema_url
    drop_schema = PgCluster.drop_schema

    def stop(self) -> None:
        pass


def main(argv: list[str]) -> int:
    """`python -m tests.support.pg -- CMD...`: run CMD with a throwaway cluster's URL in the environment."""
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print("usage: python -m tests.support.pg -- CMD [ARGS...]", file=sys.stderr)
        return 2
    # A CI timeout or Ctrl-C signals this process: pass it on to CMD and wait for it, so the cluster is
    # stopped after CMD ends (leaving the `with`), never left running under a dead parent. The handlers
    # go in first: a signal before CMD runs would otherwise take its default action (or none: a parent
    # such as a pytest-xdist worker may have left SIGINT ignored) and be lost.
    child: subprocess.Popen[bytes] | None = None
    pending: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        if child is None:
            pending.append(signum)
        else:
            child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    started = time.monotonic()
    with PgCluster.start() as cluster:
        print(f"tests.support.pg: PostgreSQL on port {cluster.port} ({time.monotonic() - started:.1f} s)")
        if pending:  # told to stop while the cluster started: CMD never runs
            return 128 + pending[0]
        child = subprocess.Popen(argv, env={**os.environ, ENV_URL: cluster.base_url})
        for signum in pending:  # arrived between the check above and Popen
            child.send_signal(signum)
        return child.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
