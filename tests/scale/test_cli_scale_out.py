"""`ctrltower server` and `token` in scale-out mode: bad combinations are usage errors (exit 2), an
unreachable database is a clear exit 5 with the password hidden, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from ctrltower import exit_codes
from ctrltower.cli import cli
from tests.conftest import ROOT, free_port


def _server(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ctrltower", "server", "--listen", f"127.0.0.1:{free_port()}", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_bad_combinations_are_usage_errors(tmp_path: Path) -> None:
    d = str(tmp_path / "d")
    lake_alone = _server("--data-dir", d, "--metrics-lake", str(tmp_path / "lake"))
    assert lake_alone.returncode == exit_codes.USAGE and "needs --database-url" in lake_alone.stderr
    no_lake = _server("--data-dir", d, "--database-url", "postgresql://u@127.0.0.1:1/db")
    assert no_lake.returncode == exit_codes.USAGE and "--metrics-lake" in no_lake.stderr
    not_pg = _server("--data-dir", d, "--database-url", "mysql://u@h/db", "--no-metrics")
    assert not_pg.returncode == exit_codes.USAGE and "postgresql://" in not_pg.stderr
    for out in (lake_alone, no_lake, not_pg):
        assert "Traceback" not in out.stderr


def test_an_unreachable_database_is_exit_5_without_the_password(tmp_path: Path) -> None:
    url = f"postgresql://ct:hunter2@127.0.0.1:{free_port()}/ct?connect_timeout=2"
    out = _server("--data-dir", str(tmp_path / "d"), "--database-url", url, "--no-metrics")
    assert out.returncode == exit_codes.SERVER_ERROR, out.stderr
    assert "hunter2" not in out.stderr and "Traceback" not in out.stderr and "ct:***@" in out.stderr
    listed = CliRunner().invoke(cli, ["token", "list", "--database-url", url])
    assert listed.exit_code == exit_codes.SERVER_ERROR and "hunter2" not in listed.output


def test_tokens_in_the_database(database_url: str) -> None:
    created = CliRunner().invoke(cli, ["token", "create", "--database-url", database_url, "--role", "viewer"])
    assert created.exit_code == 0, created.output
    listed = CliRunner().invoke(cli, ["token", "list", "--database-url", database_url, "--format", "json"])
    assert listed.exit_code == 0 and '"viewer"' in listed.output
    neither = CliRunner().invoke(cli, ["token", "list"])
    assert neither.exit_code == exit_codes.USAGE and "--data-dir or --database-url" in neither.output
