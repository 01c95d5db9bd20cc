"""`ctrltower token ...` and `ctrltower server` option handling, with CliRunner and as a subprocess."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from ctrltower import exit_codes
from ctrltower.cli import cli
from tests.conftest import ROOT
from tests.support.server import InProcessServer
from webui.serve import prepare
from webui.settings import ServerSettings


def test_token_create_list_revoke(tmp_path: Path) -> None:
    prepare(ServerSettings(data_dir=tmp_path))
    runner = CliRunner()
    created = runner.invoke(
        cli,
        [
            "token",
            "create",
            "--data-dir",
            str(tmp_path),
            "--role",
            "operator",
            "--name",
            "ops",
            "--format",
            "json",
        ],
    )
    assert created.exit_code == 0, created.output
    info = json.loads(created.output)
    listed = runner.invoke(cli, ["token", "list", "--data-dir", str(tmp_path), "--format", "json"])
    tokens = json.loads(listed.output)
    assert [t["role"] for t in tokens] == ["admin", "enroll", "operator"]
    assert info["secret"] not in listed.output
    # the token works against an app on the same data dir, until revoked
    srv = InProcessServer(tmp_path)
    assert srv.client.get("/api/v1/whoami", headers=srv.auth(info["secret"])).json["role"] == "operator"
    revoked = runner.invoke(cli, ["token", "revoke", "--data-dir", str(tmp_path), str(info["token"]["id"])])
    assert revoked.exit_code == 0
    assert srv.client.get("/api/v1/whoami", headers=srv.auth(info["secret"])).status_code == 401
    text = runner.invoke(cli, ["token", "list", "--data-dir", str(tmp_path)]).output
    assert "ops" in text and "operator" in text
    unknown = runner.invoke(cli, ["token", "revoke", "--data-dir", str(tmp_path), "999"])
    assert unknown.exit_code == exit_codes.USAGE
    bad_role = runner.invoke(cli, ["token", "create", "--data-dir", str(tmp_path), "--role", "root"])
    assert bad_role.exit_code == exit_codes.USAGE
    missing = runner.invoke(cli, ["token", "list", "--data-dir", str(tmp_path / "nope")])
    assert missing.exit_code == exit_codes.USAGE and "no state.db" in missing.output


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ctrltower", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_subprocess_token_and_server_usage_errors(tmp_path: Path) -> None:
    prepare(ServerSettings(data_dir=tmp_path / "d"))
    out = run("token", "create", "--data-dir", str(tmp_path / "d"), "--role", "viewer")
    assert out.returncode == 0 and out.stdout.strip().startswith("ctt_")
    bad = run("server", "--data-dir", str(tmp_path / "d"), "--listen", "nonsense")
    assert bad.returncode == exit_codes.USAGE and "HOST:PORT" in bad.stderr
    blocker = tmp_path / "file"
    blocker.write_text("x")
    unusable = run("server", "--data-dir", str(blocker / "sub"), "--listen", "127.0.0.1:1", "--no-metrics")
    assert unusable.returncode == exit_codes.SERVER_ERROR, unusable.stderr
    assert "not usable" in unusable.stderr and "Traceback" not in unusable.stderr


def test_server_refuses_a_damaged_or_newer_database(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "state.db").write_bytes(b"this is not a database" * 100)
    out = run("server", "--data-dir", str(bad), "--listen", "127.0.0.1:1", "--no-metrics")
    assert out.returncode == exit_codes.SERVER_ERROR and "not usable" in out.stderr, out.stderr
    listed = CliRunner().invoke(cli, ["token", "list", "--data-dir", str(bad)])
    assert listed.exit_code == exit_codes.SERVER_ERROR and "not usable" in listed.output
    newer = tmp_path / "newer"
    prepare(ServerSettings(data_dir=newer))
    with sqlite3.connect(newer / "state.db") as conn:
        conn.execute("PRAGMA user_version = 999")
    out = run("server", "--data-dir", str(newer), "--listen", "127.0.0.1:1", "--no-metrics")
    assert out.returncode == exit_codes.SERVER_ERROR and "newer than this server" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
