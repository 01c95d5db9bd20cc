"""The rendered `edge` config RUNS in the real collector: it tails logs, ships them over OTLP/HTTP to a
sink on 127.0.0.1, and serves its own metrics on the port the agent chooses (CTRLTOWER_TELEMETRY_PORT)."""

from __future__ import annotations

import http.server
import os
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from compiler.api import compile_repo
from tests.compiler.helpers import EXAMPLE, read_repo
from tests.conftest import free_port


class _Sink(http.server.BaseHTTPRequestHandler):
    paths: list[str] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).paths.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def sink() -> Iterator[tuple[str, list[str]]]:
    class Handler(_Sink):
        paths: list[str] = []

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", Handler.paths
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.collector
@pytest.mark.parametrize("group", ["edge", "edge-canary"])
def test_edge_config_runs_ships_logs_and_serves_metrics(
    group: str, collector_bin: Path, tmp_path: Path, sink: tuple[str, list[str]]
) -> None:
    endpoint, received = sink
    config = tmp_path / "config.yaml"
    config.write_text(compile_repo(read_repo(EXAMPLE), only_groups=[group]).configs[group])
    logs = tmp_path / "logs"
    logs.mkdir()
    telemetry_port = free_port()
    env = {
        **os.environ,
        "APP_LOG_DIR": str(logs),
        "OTLP_HTTP_ENDPOINT": endpoint,
        "CTRLTOWER_TELEMETRY_PORT": str(telemetry_port),
    }
    out = (tmp_path / "collector.log").open("wb")
    proc = subprocess.Popen([str(collector_bin), "--config", str(config)], env=env, stdout=out, stderr=out)
    metrics = ""
    try:
        deadline = time.monotonic() + 45
        with (logs / "app.log").open("a") as fh:
            while time.monotonic() < deadline and not ("/v1/logs" in received and metrics):
                assert proc.poll() is None, (tmp_path / "collector.log").read_text()[-3000:]
                fh.write(f"{time.time()} level=info msg=hello\n")
                fh.flush()
                if not metrics:
                    try:
                        url = f"http://127.0.0.1:{telemetry_port}/metrics"
                        with urllib.request.urlopen(url, timeout=2) as resp:
                            metrics = resp.read().decode()
                    except OSError:
                        pass
                time.sleep(0.3)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()
    assert "/v1/logs" in received, (tmp_path / "collector.log").read_text()[-3000:]
    assert "otelcol_" in metrics
