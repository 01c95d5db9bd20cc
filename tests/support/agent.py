"""Run the REAL `ctrltower agent` in tests (and benchmarks), as a subprocess with the real collector.

    from tests.support.agent import AgentProcess

    with AgentProcess(srv.base_url, srv.enroll_token, collector_bin, tmp_path, labels="role=edge") as agent:
        agent.metrics_url        # its /metrics (always served, on a free port: the readiness report)
        agent.metric('ctrltower_collector_up')   # one sample from it, or None
        agent.collector_pid()    # the collector it supervises (its live child), or None
        agent.log_text()         # its output (stdout+stderr), for assertion messages
        assert agent.stop() == 0 # SIGTERM, its exit code (agent.wait(20): its own exit)
    # leaving the block stops it (SIGTERM; SIGKILL to its whole session after a bound)

Files go under `home`: the collector config `home/collector.yaml`, the state dir `home/state` and the
output `home/agent.log`, each overridable (`config=`, `state_dir=`, `log_path=`). Options are the
command line's: `labels`, `hostname`, `protocol`, `poll_interval`, `health_timeout`, `telemetry_port`,
`trust_keys`, `extra_args`. `collector_env={"APP_LOG_DIR": "/x"}` puts the variable in the agent's
environment and passes it on with `--collector-env APP_LOG_DIR` (the collector gets nothing else of
ours). `agent_only=True` (the default) blocks the server's packages (tests/agent/blocker), as on a host
where only the agent is installed.

`start()` returns once the agent serves its /metrics (it binds that socket first thing in its loop,
after parsing its options and building its parts), or fails with its output if it exits first: no fixed
sleep, only tests.support.ready's safety cap. `start()` again after `stop()` runs it again on the same
files (what a restart of the agent on a host does).

The agent runs in a session of its own, so teardown reaches the collector too even if the agent could
not stop it (the collector also dies with its parent: agent/supervisor.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import httpx

from tests.conftest import ROOT, free_port
from tests.support.procs import alive, children, descendants
from tests.support.ready import NotReady, patience, wait_ready

# sitecustomize.py there makes Flask, DuckDB, networkx, GitPython... unimportable (an agent-only host)
BLOCKER_DIR = ROOT / "tests" / "agent" / "blocker"


class AgentProcess:
    """`ctrltower agent --server URL --enroll-token T --collector BIN ...` as a subprocess."""

    def __init__(
        self,
        server: str,
        enroll_token: str,
        collector: Path,
        home: Path,
        *,
        config: Path | None = None,
        state_dir: Path | None = None,
        log_path: Path | None = None,
        labels: str = "",
        hostname: str | None = None,
        protocol: str | None = None,
        poll_interval: str = "0.5s",
        health_timeout: str | None = None,
        telemetry_port: int | None = None,
        collector_env: Mapping[str, str] | None = None,
        trust_keys: Sequence[Path] = (),
        agent_only: bool = True,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.server = server
        self.enroll_token = enroll_token
        self.collector = collector
        self.home = home
        self.config = config or home / "collector.yaml"
        self.state_dir = state_dir or home / "state"
        self.log_path = log_path or home / "agent.log"
        self.labels = labels
        self.hostname = hostname
        self.protocol = protocol
        self.poll_interval = poll_interval
        self.health_timeout = health_timeout
        self.telemetry_port = telemetry_port
        self.collector_env = dict(collector_env or {})
        self.trust_keys = tuple(trust_keys)
        self.agent_only = agent_only
        self.extra_args = tuple(extra_args)
        self.metrics_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    # --- lifecycle -----------------------------------------------------------------------------------

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "agent not started"
        return self.proc.pid

    def command(self) -> list[str]:
        cmd = [
            sys.executable, "-m", "ctrltower", "agent",
            "--server", self.server,
            "--enroll-token", self.enroll_token,
            "--collector", str(self.collector),
            "--config", str(self.config),
            "--state-dir", str(self.state_dir),
            "--metrics-listen", f"127.0.0.1:{self.metrics_port}",
            "--poll-interval", self.poll_interval,
        ]  # fmt: skip
        optional = {
            "--protocol": self.protocol,
            "--labels": self.labels or None,
            "--hostname": self.hostname,
            "--health-timeout": self.health_timeout,
            "--telemetry-port": None if self.telemetry_port is None else str(self.telemetry_port),
        }
        for flag, value in optional.items():
            if value is not None:
                cmd += [flag, value]
        for name in self.collector_env:
            cmd += ["--collector-env", name]
        for key in self.trust_keys:
            cmd += ["--trust-key", str(key)]
        return cmd + list(self.extra_args)

    def environment(self) -> dict[str, str]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.collector_env}
        if self.agent_only:
            env["PYTHONPATH"] = str(BLOCKER_DIR)
        return env

    def start(self) -> AgentProcess:
        """Start (or start again after `stop()`) and wait until the agent serves its /metrics."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("agent already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=ROOT,
                env=self.environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_ready(self.proc, self._serves_metrics, "ctrltower agent", self.log_text)
        except NotReady:
            self.kill()
            raise
        return self

    def _serves_metrics(self) -> bool:
        try:
            r = httpx.get(self.metrics_url, timeout=2)
        except httpx.HTTPError:
            return False
        # the agent's own metric names: not some other process that took the port meanwhile
        return r.status_code == 200 and "ctrltower_" in r.text

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout_s: float) -> int:
        """Wait until it exits by itself (e.g. after a `shutdown` command): its exit code. The bound is
        `patience(timeout_s)`; past it, subprocess.TimeoutExpired."""
        assert self.proc is not None, "agent not started"
        return self.proc.wait(patience(timeout_s))

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM (the agent stops its collector and exits 0) and wait; after `patience(timeout_s)`
        SIGKILL the whole session. Anything left in the session is killed too. Returns the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(patience(timeout_s))
            except subprocess.TimeoutExpired:
                self.kill()
        self._reap_session()
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL the agent and its collector at once."""
        proc = self.proc
        if proc is None:
            return
        self._reap_session()
        proc.wait(patience(10))

    def _reap_session(self) -> None:
        # the session's id is the agent's pid (start_new_session): its collector and any helper it ran
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def __enter__(self) -> AgentProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- what it shows -------------------------------------------------------------------------------

    def log_text(self, last: int = 8000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-last:]
        except FileNotFoundError:
            return ""

    def metric(self, sample: str) -> float | None:
        """The value of one sample on its /metrics (`name` or `name{labels}` as exposed), or None."""
        try:
            text = httpx.get(self.metrics_url, timeout=2).text
        except httpx.HTTPError:
            return None
        for line in text.splitlines():
            if line.startswith(sample + " "):
                return float(line.split()[-1])
        return None

    def collector_pid(self) -> int | None:
        """The live child the agent runs (its collector), or None."""
        pids = [p for p in children(self.pid) if alive(p)]
        return pids[0] if pids else None

    def collector_pids(self) -> set[int]:
        """Every live process below the agent that runs the collector binary (by its file name)."""
        name = os.fsencode(self.collector.name)
        found = set()
        for pid in descendants(self.pid):
            with contextlib.suppress(OSError):
                if name in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.add(pid)
        return {p for p in found if alive(p)}
