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
import subprocess
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from tests.conftest import free_port
from tests.support import nginx
from tests.support.ready import patience, wait_until
from tests.support.server import ServerProcess, auth


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
        servers = [f"127.0.0.1:{r.port} max_fails=1 fail_timeout=1s" for r in self.replicas]
        conf = nginx.config(d, nginx.balancer(self.lb_port, servers))
        self.nginx = nginx.start(d, conf, self.lb_url + "/api/health")

    def stop(self) -> None:
        if self.nginx is not None:
            nginx.stop(self.nginx)
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
    """Poll until `predicate()` is truthy (tests.support.ready.wait_until, in this module's argument
    order); `patience(seconds)` is a safety cap, not a timing claim."""
    return wait_until(predicate, seconds, what=what)
