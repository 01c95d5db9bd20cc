"""Issue 10 on the agent's side, each attack tried for real and shown harmless:

- a pipeline reading `${env:CTRLTOWER_ENROLL_TOKEN}` used to ship the agent's enroll token with the
  telemetry: the collector now gets an allow-listed environment (the real collector, the real sink);
- configs, `last_*.yaml` and `collector.log` were 0644, and a symlink at the staging path was
  followed (a config written over any file the agent may write): now 0600, and the link is refused;
- `kill -9` of the agent must not leave its collector running unsupervised.

The server is not needed here: the agent boots its last good config with the server unreachable.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from agent.apply import Applier
from agent.client import MetricsScraper
from agent.environment import collector_environment, parse_collector_env
from agent.state import StateDir, StoredConfig
from agent.supervisor import CollectorProcess
from demo.sink import start_sink
from schemas.common import config_hash
from tests.agent.helpers import collector_config, wait_until, write_lines
from tests.conftest import ROOT, free_port
from tests.support.agent import BLOCKER_DIR
from tests.support.procs import alive, children

SECRET = "ctt_enroll-secret-that-must-stay-home"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- the collector's environment ------------------------------------------------------------------


def test_collector_environment_is_an_allow_list() -> None:
    environ = {
        "PATH": "/usr/bin",
        "LC_ALL": "C.UTF-8",
        "CTRLTOWER_ENROLL_TOKEN": SECRET,
        "CTRLTOWER_SERVER": "http://server",
        "AWS_SECRET_ACCESS_KEY": "not-for-the-collector",
        "APP_LOG_DIR": "/var/log/app",
        "APP_OTHER": "x",
    }
    named = parse_collector_env(["APP_*", "REGION=eu-1"])
    env = collector_environment(environ, named, 4242)
    assert env == {
        "PATH": "/usr/bin",
        "LC_ALL": "C.UTF-8",
        "APP_LOG_DIR": "/var/log/app",
        "APP_OTHER": "x",
        "REGION": "eu-1",
        "CTRLTOWER_TELEMETRY_PORT": "4242",
    }
    assert SECRET not in env.values()


@pytest.mark.parametrize(
    "bad", ["CTRLTOWER_ENROLL_TOKEN", "ctrltower_server", "CTRL*", "*", "C*", "1X", "A*=B", ""]
)
def test_collector_env_refuses_the_agents_own_variables_and_bad_names(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_collector_env([bad])


def test_cli_refuses_passing_the_enroll_token(tmp_path: Path, collector_bin: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ctrltower", "agent", "--server", "http://127.0.0.1:9", "--enroll-token", "x",
         "--collector", str(collector_bin), "--config", str(tmp_path / "c.yaml"),
         "--state-dir", str(tmp_path / "s"), "--collector-env", "CTRLTOWER_ENROLL_TOKEN"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "never passed to the collector" in out.stderr and "Traceback" not in out.stderr


def _seed(state_dir: Path, text: str) -> None:
    StateDir(state_dir).save_last_good(StoredConfig(text.encode(), config_hash(text), "abc1234", "edge"))


def _agent_process(
    tmp_path: Path, collector_bin: Path, extra: list[str], env: dict[str, str]
) -> subprocess.Popen[bytes]:
    log = (tmp_path / "agent.log").open("ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "ctrltower", "agent",
             "--server", f"http://127.0.0.1:{free_port()}",  # nobody listens: the server is down
             "--collector", str(collector_bin), "--config", str(tmp_path / "etc" / "collector.yaml"),
             "--state-dir", str(tmp_path / "state"), "--labels", "role=edge",
             "--telemetry-port", str(free_port()), "--health-timeout", "5s", *extra],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    finally:
        log.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.mark.collector
def test_a_pipeline_cannot_ship_the_enroll_token(tmp_path: Path, collector_bin: Path) -> None:
    """The config replaces every log body with `${env:CTRLTOWER_ENROLL_TOKEN:-not-passed}`; the agent
    runs with the token in its environment (as the systemd unit and the DaemonSet do). The sink gets
    "not-passed": the real collector could not resolve the token. A variable the operator names with
    --collector-env (APP_LOG_DIR, in the include path) does reach the collector."""
    logs = tmp_path / "logs"
    logs.mkdir()
    with start_sink("127.0.0.1", 0) as sink:
        text = collector_config(
            "${env:APP_LOG_DIR}/*.log",
            sink.endpoint,
            extra=(
                "    operators:\n"
                "      - type: add\n"
                "        field: body\n"
                '        value: "${env:CTRLTOWER_ENROLL_TOKEN:-not-passed}"\n'
            ),
        )
        _seed(tmp_path / "state", text)
        env = dict(
            os.environ, CTRLTOWER_ENROLL_TOKEN=SECRET, APP_LOG_DIR=str(logs), PYTHONPATH=str(BLOCKER_DIR)
        )
        agent = _agent_process(tmp_path, collector_bin, ["--collector-env", "APP_LOG_DIR"], env)
        try:
            write_lines(logs / "app.log", "line", 5)
            wait_until(lambda: sink.counts()["logs"] >= 5, 30, what="lines at the sink")
            bodies = sink.bodies()
        finally:
            _stop(agent)
    log = (tmp_path / "agent.log").read_text()
    assert bodies == ["not-passed"] * 5, (bodies, log[-2000:])
    assert SECRET not in (tmp_path / "state" / "collector.log").read_text()


# --- file modes and the staging symlink ---------------------------------------------------------------


def test_state_files_config_and_collector_log_are_private(tmp_path: Path, collector_bin: Path) -> None:
    state = StateDir(tmp_path / "state")
    cfg = StoredConfig(b"receivers: {}\n", config_hash(b"receivers: {}\n"), "r", "g")
    state.save_last_received(cfg)
    state.save_last_good(cfg)
    assert mode(tmp_path / "state") == 0o700
    state.save_agent_token("ag_1", "cta_secret")  # the proof for the next registration
    assert state.agent_token() == ("ag_1", "cta_secret")
    state.instance_id()
    for name in ("instance_id", "last_received.yaml", "last_good.yaml", "last_good.json", "agent_token.json"):
        assert mode(tmp_path / "state" / name) == 0o600, name
    log = tmp_path / "state" / "collector.log"
    log.write_text("from an older agent\n")
    os.chmod(log, 0o644)
    process = CollectorProcess(collector_bin, tmp_path / "missing.yaml", {}, log)
    process.start()  # no config there: it exits at once, after opening its log
    process.stop(10)
    assert mode(log) == 0o600


def test_a_symlink_at_the_staging_path_is_not_followed(tmp_path: Path, collector_bin: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    os.chmod(victim, 0o644)
    config = tmp_path / "etc" / "collector.yaml"
    config.parent.mkdir()
    (config.parent / ".collector.yaml.staging").symlink_to(victim)
    port = free_port()
    process = CollectorProcess(
        collector_bin, config, {"CTRLTOWER_TELEMETRY_PORT": str(port)}, tmp_path / "c.log"
    )
    scraper = MetricsScraper(f"http://127.0.0.1:{port}/metrics", timeout=1.0)
    applier = Applier(process, scraper, health_timeout_s=5.0, health_settle_s=0.3)
    text = "attacker: controlled\n"
    try:
        outcome = applier.apply(StoredConfig(text.encode(), config_hash(text), "r", "g"), None, True)
    finally:
        process.stop(5)
        scraper.close()
    assert not outcome.ok and "symlink" in (outcome.error or "")
    assert victim.read_text() == "precious\n" and mode(victim) == 0o644
    assert not config.exists()


def test_atomic_writes_refuse_a_symlink_at_their_temp_path(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    state = StateDir(tmp_path / "state")
    (tmp_path / "state" / f".failed.json.{os.getpid()}.tmp").symlink_to(victim)
    with pytest.raises(OSError, match="symlink"):
        state.save_failed_hash("0" * 64)
    assert victim.read_text() == "precious\n"


# --- the collector does not outlive a SIGKILLed agent --------------------------------------------------


@pytest.mark.collector
def test_sigkill_of_the_agent_stops_its_collector(tmp_path: Path, collector_bin: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    _seed(tmp_path / "state", collector_config(f"{logs}/*.log", f"http://127.0.0.1:{free_port()}"))
    agent = _agent_process(tmp_path, collector_bin, [], dict(os.environ, CTRLTOWER_ENROLL_TOKEN=SECRET))

    def collector_pid() -> int | None:
        assert agent.poll() is None, (tmp_path / "agent.log").read_text()
        return next((p for p in children(agent.pid) if alive(p)), None)

    try:
        collector = wait_until(collector_pid, 30, what="collector started")
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait(10)
        wait_until(lambda: not alive(collector), 15, what="the collector to exit after its agent died")
    finally:
        _stop(agent)
