"""Real parts for the signing tests: `ctrltower server`, `ctrltower reconcile` (in-process CLI) on a real
Git repo, `ctrltower agent` as a subprocess (server packages blocked) with the real collector tailing
log files and shipping to demo/sink.py, and a small HTTP proxy between agent and server that can
rewrite what the server serves (the "someone between them" of the threat model)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

from ctrltower.cli import cli
from ctrltower.keyfiles import generate_keys
from demo.sink import SinkHandle, start_sink
from schemas.api import AgentView
from schemas.common import config_hash
from tests.agent.helpers import wait_until
from tests.reconciler.gitutil import git, init_repo
from tests.support.agent import AgentProcess
from tests.support.server import ServerProcess, auth

GROUP = """kind: AgentGroup
name: edge
selector: {{role: edge}}
priority: 10
vars:
  backend: {backend}
  batch_timeout: {batch_timeout}
"""
PIPELINE = """kind: Pipeline
name: logs
groups: [edge]
signals: [logs]
nodes:
  - {id: tail, class: receiver, type: filelog,
     config: {include: ["${env:APP_LOG_DIR}/*.log"], start_at: beginning, poll_interval: 100ms}}
  - {id: batch, class: processor, type: batch, config: {timeout: "{{ vars.batch_timeout }}"}}
  - {id: ship, class: exporter, type: otlphttp,
     config: {endpoint: "{{ vars.backend }}",
              retry_on_failure: {initial_interval: 100ms, max_interval: 500ms}}}
edges:
  - {from: tail, to: batch}
  - {from: batch, to: ship}
"""


class TamperProxy:
    """Forwards every request to the server. `mode` rewrites config answers on the way back:
    "pass" (nothing), "body" (append a line to the YAML, keep the server's headers), "body+headers"
    (append the line and announce the new hash, as a careful attacker would). While tampering it drops
    If-None-Match, so the agent gets a body instead of a 304."""

    INJECTED = b"# injected by the proxy\n"

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.mode = "pass"
        self.tampered = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                skip = ("host", "content-length")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
                is_config = self.path.endswith("/config") and self.command == "GET"
                if is_config and proxy.mode != "pass":
                    headers.pop("If-None-Match", None)
                r = httpx.request(self.command, proxy.upstream + self.path, content=body, headers=headers)
                data, out = r.content, dict(r.headers)
                if is_config and r.status_code == 200 and proxy.mode != "pass":
                    data = data + proxy.INJECTED
                    proxy.tampered += 1
                    if proxy.mode == "body+headers":
                        out["x-ctrltower-config-hash"] = config_hash(data)
                        out["etag"] = f'"{config_hash(data)}"'
                self.send_response(r.status_code)
                hop = ("content-length", "transfer-encoding", "connection", "date", "server")
                for k, v in out.items():
                    if k.lower() not in hop:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class SignedFleet:
    tmp: Path
    srv: ServerProcess
    sink: SinkHandle
    proxy: TamperProxy
    collector_bin: Path
    repo: Path = field(init=False)
    keys: dict[str, tuple[Path, Path]] = field(default_factory=dict)  # name -> (private, public)
    reconciler: str = ""
    admin: str = ""
    agent: AgentProcess | None = None

    def __post_init__(self) -> None:
        self.repo = init_repo(self.tmp / "cfg", from_dir=None)
        self.commit_config("100ms", "initial")
        for name in ("a", "b", "c"):
            self.keys[name] = generate_keys(self.tmp / "keys" / name)
        self.reconciler = self.srv.create_token("reconciler")
        self.admin = self.srv.admin_token
        (self.tmp / "logs").mkdir()

    @property
    def config_path(self) -> Path:
        return self.tmp / "etc" / "collector.yaml"

    def commit_config(self, batch_timeout: str, message: str, collector: str | None = None) -> str:
        (self.repo / "groups").mkdir(exist_ok=True)
        (self.repo / "pipelines").mkdir(exist_ok=True)
        group = GROUP.format(backend=self.sink.endpoint, batch_timeout=batch_timeout)
        if collector is not None:
            group += f"collector: {{version: {collector}}}\n"
        (self.repo / "groups" / "edge.yaml").write_text(group)
        (self.repo / "pipelines" / "logs.yaml").write_text(PIPELINE)
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "-q", "--allow-empty", "-m", message)
        return git(self.repo, "rev-parse", "HEAD")

    def reconcile(self, key: str | None) -> dict[str, Any]:
        import json

        args = ["reconcile", "--source", str(self.repo), "--server", self.srv.base_url]
        args += ["--cache-dir", str(self.tmp / "cache"), "--format", "json"]
        if key is not None:
            args += ["--signing-key", str(self.keys[key][0])]
        env = {"CTRLTOWER_TOKEN": self.reconciler}
        result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return dict(json.loads(result.output))

    def start_agent(self, trust: tuple[str, ...], *extra: str) -> None:
        """The agent, through the proxy, trusting the public keys named in `trust`."""
        self.agent = AgentProcess(
            self.proxy.url,
            self.srv.enroll_token,
            self.collector_bin,
            self.tmp,
            config=self.config_path,
            labels="role=edge",
            health_timeout="10s",
            collector_env={"APP_LOG_DIR": str(self.tmp / "logs")},
            trust_keys=[self.keys[name][1] for name in trust],
            extra_args=extra,
        ).start()

    def stop_agent(self) -> None:
        if self.agent is not None:
            self.agent.stop()

    def agent_log(self) -> str:
        return self.agent.log_text(8000) if self.agent is not None else ""

    def view(self) -> AgentView | None:
        r = httpx.get(f"{self.srv.base_url}/api/v1/agents", headers=auth(self.admin), timeout=10)
        items = r.json()["items"] if r.status_code == 200 else []
        return AgentView.model_validate(items[0]) if items else None

    def wait_view(self, what: str, check: Callable[[AgentView], bool], timeout: float = 30) -> AgentView:
        def probe() -> AgentView | None:
            v = self.view()
            return v if v is not None and check(v) else None

        try:
            return wait_until(probe, timeout, interval=0.2, what=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nlast view: {self.view()}\nagent log:\n{self.agent_log()}") from None

    def collector_pid(self) -> int | None:
        assert self.agent is not None
        return self.agent.collector_pid()

    def publish_collector(self, version: str, binary: Path, key: str | None) -> Any:
        args = ["collector", "publish", "--version", version, "--file", str(binary)]
        args += ["--server", self.srv.base_url]
        if key is not None:
            args += ["--signing-key", str(self.keys[key][0])]
        return CliRunner().invoke(cli, args, env={"CTRLTOWER_TOKEN": self.admin}, catch_exceptions=False)

    def db_execute(self, sql: str, args: tuple[Any, ...] = ()) -> None:
        """Write to the server's own SQLite database, as someone holding the server's disk would."""
        conn = sqlite3.connect(self.srv.data_dir / "state.db", timeout=10, isolation_level=None)
        try:
            conn.execute(sql, args)
            conn.execute("UPDATE meta SET config_gen = config_gen + 1")  # the workers' cache key
        finally:
            conn.close()


@contextmanager
def signed_fleet(tmp: Path, collector_bin: Path) -> Iterator[SignedFleet]:
    with start_sink("127.0.0.1", 0) as sink, ServerProcess(tmp / "server", poll_interval_s=0.5) as srv:
        proxy = TamperProxy(srv.base_url)
        fleet = SignedFleet(tmp, srv, sink, proxy, collector_bin)
        try:
            yield fleet
        finally:
            fleet.stop_agent()
            proxy.close()
