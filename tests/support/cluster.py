"""Scale-out in tests: N real `ctrltower server` replicas on one PostgreSQL, behind a real nginx.

    from tests.support.cluster import ScaleOut
    with ScaleOut(tmp_path, database_url, replicas=3) as so:
        so.lb_url                 # nginx, round robin over the replicas
        so.replicas[1].base_url   # one replica directly
        so.admin_token            # written by whichever replica created the bootstrap tokens
        so.replicas[2].kill()     # SIGKILL: nginx passes its share to the others

The replicas start at the same moment (they race to migrate and to create the bootstrap tokens: exactly
one must do each). nginx is Debian's (`scripts/system-deps.sh`), on 127.0.0.1 and a free port; a request
that fails on one replica (connection refused: killed) is retried on the next (`proxy_next_upstream`).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from tests.conftest import free_port
from tests.support.ready import patience, wait_ready
from tests.support.server import ServerProcess, auth

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  upstream ctrltower {{
{servers}
    keepalive 16;
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
  }}
}}
"""


class ScaleOut:
    def __init__(
        self,
        root: Path,
        database_url: str,
        *,
        replicas: int = 3,
        poll_interval_s: float = 0.5,
        metrics: bool = False,
        metrics_interval_s: float | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.root = root
        self.database_url = database_url
        self.replicas = [
            ServerProcess(
                root / f"replica{i}",
                poll_interval_s=poll_interval_s,
                metrics=metrics,
                metrics_interval_s=metrics_interval_s,
                extra_args=("--database-url", database_url, *extra_args),
            )
            for i in range(replicas)
        ]
        self.lb_port = free_port()
        self.nginx: subprocess.Popen[bytes] | None = None

    @property
    def lb_url(self) -> str:
        return f"http://127.0.0.1:{self.lb_port}"

    def start(self) -> ScaleOut:
        errors: list[BaseException] = []

        def start_one(srv: ServerProcess) -> None:
            try:
                srv.start()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=start_one, args=(r,)) for r in self.replicas]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        self._start_nginx()
        return self

    def _start_nginx(self) -> None:
        d = self.root / "nginx"
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        servers = "\n".join(
            f"    server 127.0.0.1:{r.port} max_fails=1 fail_timeout=1s;" for r in self.replicas
        )
        conf = d / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=d, port=self.lb_port, servers=servers))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        log = (d / "stdout.log").open("ab")
        self.nginx = subprocess.Popen([nginx, "-c", str(conf), "-p", str(d)], stdout=log, stderr=log)
        log.close()

        def answers() -> bool | None:
            try:
                return httpx.get(self.lb_url + "/api/health", timeout=2).status_code == 200 or None
            except httpx.HTTPError:
                return None

        wait_ready(self.nginx, answers, "nginx", lambda: (d / "error.log").read_text(errors="replace"))

    def stop(self) -> None:
        if self.nginx is not None and self.nginx.poll() is None:
            self.nginx.terminate()
            try:
                self.nginx.wait(10)
            except subprocess.TimeoutExpired:
                self.nginx.kill()
                self.nginx.wait(5)
        for r in self.replicas:
            with contextlib.suppress(Exception):
                r.stop()
            r._reap_group()

    def __enter__(self) -> ScaleOut:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- tokens ------------------------------------------------------------------------------------

    def _token(self, role: str) -> str:
        holders = [r for r in self.replicas if (r.data_dir / f"{role}.token").exists()]
        assert len(holders) == 1, f"{len(holders)} replicas wrote {role}.token (exactly one must)"
        return (holders[0].data_dir / f"{role}.token").read_text().strip()

    @property
    def admin_token(self) -> str:
        return self._token("admin")

    @property
    def enroll_token(self) -> str:
        return self._token("enroll")

    def create_token(self, role: str) -> str:
        r = httpx.post(
            self.lb_url + "/api/v1/tokens", json={"role": role}, headers=auth(self.admin_token), timeout=10
        )
        r.raise_for_status()
        return str(r.json()["secret"])

    def client(self, token: str, base_url: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=base_url or self.lb_url, headers=auth(token), timeout=patience(10))

    def logs(self) -> str:
        return "\n".join(f"--- replica {i}\n{r.log_text()[-3000:]}" for i, r in enumerate(self.replicas))


def wait_for(predicate: Any, what: str, seconds: float) -> Any:
    """Poll until `predicate()` is truthy; `patience(seconds)` is a safety cap, not a timing claim."""
    import time

    deadline = time.monotonic() + patience(seconds)
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {patience(seconds)} s: {what}"
        time.sleep(0.05)
