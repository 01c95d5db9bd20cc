"""nginx as a throwaway process: Debian's binary (`scripts/system-deps.sh`), unprivileged, every file it
writes (pid, logs, temp dirs) in one directory, listening on 127.0.0.1. The scale-out tests put it in
front of the server replicas (tests/support/cluster.py), the benchmarks use it as a balancer
(bench/scale.py) and as the static-file baseline (bench/poll.py).

    from tests.support import nginx
    conf = nginx.config(d, nginx.balancer(port, ["127.0.0.1:8001", "127.0.0.1:8002"]))
    proc = nginx.start(d, conf, f"http://127.0.0.1:{port}/api/health")
    ...
    nginx.stop(proc)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

import httpx

from tests.support.ready import NotReady, wait_ready

TEMP_DIRS = ("body", "proxy", "fastcgi", "uwsgi", "scgi")

CONF = """
worker_processes {workers};
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections {connections}; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
{http}
}}
"""

BALANCER = """  upstream ctrltower {{
{servers}
    keepalive {keepalive};
  }}
  server {{
    listen 127.0.0.1:{port};
    client_max_body_size 32m;
    location / {{
      proxy_pass http://ctrltower;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_connect_timeout 2s;
      proxy_next_upstream error timeout http_502 http_503 non_idempotent;
      proxy_next_upstream_tries 3;
    }}
  }}"""


def config(directory: Path, http: str, *, workers: int = 1, connections: int = 1024) -> str:
    """A whole nginx.conf whose files stay in `directory`; `http` is what goes inside `http { }`."""
    return CONF.format(dir=directory, http=http, workers=workers, connections=connections)


def balancer(port: int, servers: Sequence[str], *, keepalive: int = 16) -> str:
    """Round robin over `servers` (`host:port [parameters]`, one `server` line each); a request that
    fails on one (connection refused: a killed replica) is retried on the next."""
    lines = "\n".join(f"    server {s};" for s in servers)
    return BALANCER.format(servers=lines, keepalive=keepalive, port=port)


def start(directory: Path, conf: str, ready_url: str) -> subprocess.Popen[bytes]:
    """Write `conf`, start nginx in a session of its own and wait until `ready_url` answers 200 (or
    nginx exits: then NotReady with its error log)."""
    for sub in TEMP_DIRS:
        (directory / sub).mkdir(parents=True, exist_ok=True)
    path = directory / "nginx.conf"
    path.write_text(conf)
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    with (directory / "stdout.log").open("ab") as log:
        proc = subprocess.Popen(
            [binary, "-c", str(path), "-p", str(directory)], stdout=log, stderr=log, start_new_session=True
        )

    def answers() -> bool | None:
        try:
            return httpx.get(ready_url, timeout=2).status_code == 200 or None
        except httpx.HTTPError:
            return None

    def error_log() -> str:
        with contextlib.suppress(OSError):
            return (directory / "error.log").read_text(errors="replace")
        return ""

    try:
        wait_ready(proc, answers, "nginx", error_log)
    except NotReady:
        stop(proc)  # never leave an nginx behind
        raise
    return proc


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """SIGTERM nginx (master and workers); SIGKILL the group if it has not exited after `timeout_s`."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout_s)
            return
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(5)
