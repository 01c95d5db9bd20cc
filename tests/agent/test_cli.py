"""`ctrltower agent` options and usage errors, and the systemd unit's command line."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from ctrltower import exit_codes
from ctrltower.cli import cli
from ctrltower.cmd_agent import agent
from tests.conftest import ROOT

UNIT = ROOT / "deploy" / "systemd" / "ctrltower-agent.service"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--poll-interval", "soon"], "not a duration"),
        (["--labels", "novalue"], "is not KEY=VALUE"),
        (["--metrics-listen", "nowhere"], "expected HOST:PORT"),
        (["--telemetry-port", "70000"], "70000"),
    ],
)
def test_bad_options_exit_2_with_a_message(tmp_path: Path, args: list[str], message: str) -> None:
    base = [
        "agent", "--server", "http://127.0.0.1:1", "--enroll-token", "t", "--collector", "/bin/true",
        "--config", str(tmp_path / "c.yaml"), "--state-dir", str(tmp_path / "s"),
    ]  # fmt: skip
    result = CliRunner().invoke(cli, base + args)
    assert result.exit_code == exit_codes.USAGE
    assert message in result.output and "Traceback" not in result.output


def test_missing_collector_is_a_usage_error(tmp_path: Path) -> None:
    args = ["agent", "--server", "http://x", "--enroll-token", "t", "--collector", str(tmp_path / "nope")]
    args += ["--config", str(tmp_path / "c.yaml"), "--state-dir", str(tmp_path / "s")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == exit_codes.USAGE and "does not exist" in result.output


def test_systemd_unit_runs_the_agent_with_known_options() -> None:
    text = UNIT.read_text()
    exec_start = re.search(r"^ExecStart=((?:.*\\\n)*.*)$", text, re.M)
    assert exec_start is not None
    argv = shlex.split(exec_start.group(1).replace("\\\n", " "))
    assert argv[0].endswith("/ctrltower") and argv[1] == "agent"
    known = {opt for param in agent.params for opt in param.opts}
    used = {a for a in argv[2:] if a.startswith("--")}
    assert used <= known, used - known
    assert {"--server", "--collector", "--config", "--state-dir"} <= used
    # the secret comes from the environment file, never the command line
    assert "--enroll-token" not in used and "EnvironmentFile=" in text
    assert re.search(r"^Restart=on-failure$", text, re.M)


def test_taken_metrics_port_is_a_clear_error(tmp_path: Path, collector_bin: Path) -> None:
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = CliRunner().invoke(
            cli,
            [
                "agent", "--server", "http://127.0.0.1:1", "--enroll-token", "t",
                "--collector", str(collector_bin), "--config", str(tmp_path / "c.yaml"),
                "--state-dir", str(tmp_path / "s"), "--metrics-listen", f"127.0.0.1:{port}",
            ],
        )  # fmt: skip
    assert result.exit_code == exit_codes.USAGE, result.output
    assert f"cannot serve /metrics on 127.0.0.1:{port}" in result.output


def test_invalid_label_key_is_a_usage_error(tmp_path: Path, collector_bin: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "agent", "--server", "http://127.0.0.1:1", "--enroll-token", "t",
            "--collector", str(collector_bin), "--config", str(tmp_path / "c.yaml"),
            "--state-dir", str(tmp_path / "s"), "--labels", "bad key=1",
        ],
    )  # fmt: skip
    assert result.exit_code == exit_codes.USAGE, result.output
    assert "invalid labels or hostname: labels.bad key" in result.output
