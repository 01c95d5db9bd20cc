"""Benchmark: agents polling their config on the 304 path, against nginx serving the same file with ETag.

1. Start the real server (`ctrltower server`, granian workers) on a fresh data dir; register N agents
   (default 25,000, BindPlane's published per-node figure) through the store (the setup, not what is
   measured), publish a revision of 10 groups over the API, and check a sample of agents gets 304.
2. `wrk` with a Lua script: each request is one agent (its own id and token, round robin over all N)
   sending `If-None-Match` with its group's ETag: the production hot path, auth included.
3. nginx (Debian package, loopback, same number of worker processes) serves the same rendered file with
   ETag on; wrk sends its ETag back, so it answers 304 too.

Prints req/s, p50 and p99 of both and the ratio. Target: >= 10,000 req/s with p99 < 50 ms (25,000
agents polling every 15 s is 1,667 req/s; the rest is headroom). Exit 1 when the target is missed.

`--signed` publishes each group with a signed statement (schemas/signing.py), as `reconcile
--signing-key` does: the sample's 200s must carry one that verifies; the 304 path must cost the same.
It also prints what one verification costs the agent (per config received, not per poll).

What signing costs the poll is measured against a same-run unsigned server by bench/poll_signing.py.

Run: `.venv/bin/python bench/poll.py [--agents N] [--seconds S] [--workers W] [--threads T] [--signed]`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _record import Baseline, Run, tool_version  # noqa: E402
from scrape import FLEET_PROCS, FLEET_SERVER  # noqa: E402

from schemas.api import AgentRegistration  # noqa: E402
from schemas.common import config_hash  # noqa: E402
from schemas.signing import STATEMENT_HEADER, Signer, key_id, verify_config  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.support import nginx as ngx  # noqa: E402
from webui.metrics.client import MetricsClient  # noqa: E402
from webui.serve import prepare  # noqa: E402
from webui.settings import ServerSettings  # noqa: E402
from webui.store import Store  # noqa: E402

GROUPS = 10
SCRAPE_INTERVAL_S = 15.0
TICK = os.sysconf("SC_CLK_TCK")

LUA_AGENTS = r"""
local agents = {}
local n = 0
local i = 0
function init(args)
  for line in io.lines(args[1]) do
    local id, token, etag = line:match("([^ ]+) ([^ ]+) ([^ ]+)")
    n = n + 1
    agents[n] = {"/api/agent/v1/agents/" .. id .. "/config",
                 {["Authorization"] = "Bearer " .. token, ["If-None-Match"] = etag}}
  end
  i = math.random(n)
end
function request()
  i = i % n + 1
  local a = agents[i]
  return wrk.format("GET", a[1], a[2])
end
"""

LUA_STATIC = r"""
function init(args)
  wrk.headers["If-None-Match"] = args[1]
end
"""

# the static-file baseline: nginx serves the rendered config with ETag on (so it answers 304 too)
STATIC = """  server {{
    listen 127.0.0.1:{port};
    location /config.yaml {{ root {dir}/www; etag on; default_type text/yaml; }}
  }}"""


def wait_http(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {timeout_s} s")


def parse_wrk(text: str) -> dict[str, float]:
    def dur(value: str, unit: str) -> float:
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    pct = {
        m.group(1): dur(m.group(2), m.group(3))
        for m in re.finditer(r"\s(50|99)%\s+([\d.]+)(us|ms|s|m)\b", text)
    }
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors:.*", text)
    return {
        "rps": rps,
        "p50_ms": pct.get("50", float("nan")),
        "p99_ms": pct.get("99", float("nan")),
        "non_3xx": float(bad.group(1)) if bad else 0.0,
        "socket_errors": 1.0 if errors else 0.0,
    }


def group_cpu_s(pgid: int) -> float:
    """user+system CPU seconds of every live process in the process group (from /proc)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:  # after "comm)": state ppid pgrp ...; utime and stime are 11 and 12
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def run_wrk(
    url: str, script: Path, args: list[str], seconds: int, threads: int, conns: int, pgid: int | None = None
) -> dict[str, float]:
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", str(script), url]
    cmd += ["--", *args]
    cpu0 = group_cpu_s(pgid) if pgid else 0.0
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    cpu1 = group_cpu_s(pgid) if pgid else 0.0
    result = parse_wrk(out)
    requests = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    result["cpu_us_per_req"] = (cpu1 - cpu0) / requests * 1e6 if pgid and requests else float("nan")
    if result["non_3xx"]:
        print(out)
    return result


def setup_server(
    work: Path,
    agents: int,
    workers: int,
    threads: int,
    signer: Signer | None = None,
    metrics_url: Callable[[int], str | None] = lambda i: None,
) -> tuple[subprocess.Popen[bytes], str, Path]:
    data = work / "server"
    settings = ServerSettings(data_dir=data, poll_interval_s=15.0, metrics=False)
    prepare(settings)
    store = Store.from_settings(settings)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "ctrltower", "server", "--data-dir", str(data)]
    cmd += ["--listen", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads)]
    cmd += ["--no-metrics", "--log-level", "warning"]
    with open(work / "server.log", "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http(base + "/api/health")
        admin = (data / "admin.token").read_text().strip()
        groups = []
        for g in range(GROUPS):
            text = (
                f"# group g{g}\n" + (ROOT / "bench" / "poll.py").read_text()[:3000]
            )  # ~3 KB of YAML-ish text
            groups.append(
                {
                    "name": f"g{g}",
                    "selector": {"shard": str(g)},
                    "priority": 0,
                    "config": text,
                    "config_hash": config_hash(text),
                }
            )
            if signer is not None:
                groups[-1]["statement"] = signer.sign_config(
                    group=f"g{g}",
                    selector={"shard": str(g)},
                    commit="b" * 40,
                    seq=1,
                    sha256=config_hash(text),
                    now=int(time.time()),
                    valid_for_s=86400,
                )
        r = httpx.post(
            base + "/api/v1/revisions",
            headers={"Authorization": f"Bearer {admin}"},
            timeout=60,
            json={"commit_sha": "b" * 40, "previous_commit_sha": None, "groups": groups, "pipelines": []},
        )
        r.raise_for_status()
        t0 = time.monotonic()
        lines = []
        for i in range(agents):
            shard = i % GROUPS
            reg = store.register_agent(
                AgentRegistration(
                    instance_id=f"bench-agent-{i:06d}",
                    hostname=f"host-{i:06d}",
                    labels={"shard": str(shard)},
                    metrics_url=metrics_url(i),
                )
            )
            lines.append(f'{reg.agent_id} {reg.agent_token} "{groups[shard]["config_hash"]}"')
        store.close()
        print(f"registered {agents} agents in {time.monotonic() - t0:.1f} s")
        agents_file = work / "agents.txt"
        agents_file.write_text("\n".join(lines) + "\n")
        for line in lines[:: max(1, agents // 20)]:  # a sample must get 304 (and the body path works)
            agent_id, token, etag = line.split(" ")
            headers = {"Authorization": f"Bearer {token}"}
            full = httpx.get(f"{base}/api/agent/v1/agents/{agent_id}/config", headers=headers)
            assert full.status_code == 200 and f'"{config_hash(full.content)}"' == etag, full.status_code
            if signer is not None:
                public = signer.private.public_key()
                shard = {"shard": str(int(full.headers["X-Ctrltower-Group"][1:]))}
                verify_config(
                    full.headers[STATEMENT_HEADER],
                    {key_id(public): public},
                    data=full.content,
                    labels=shard,
                    now=time.time(),
                )
            cached = httpx.get(
                f"{base}/api/agent/v1/agents/{agent_id}/config", headers={**headers, "If-None-Match": etag}
            )
            assert cached.status_code == 304, cached.status_code
    except BaseException:
        stop(proc)  # never leave a server behind
        raise
    return proc, base, agents_file


def start_server_with_metrics(work: Path, workers: int, threads: int) -> tuple[subprocess.Popen[bytes], str]:
    """The same data dir, now with the metrics process scraping every agent that has a metrics URL at
    the production interval. Agents are told to poll hourly only so that the registered (silent)
    agents stay online, i.e. scrape targets, for the whole run; the wrk polls are the same."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "ctrltower", "server", "--data-dir", str(work / "server")]
    cmd += ["--listen", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads)]
    cmd += [
        "--poll-interval",
        "3600",
        "--metrics-interval",
        f"{SCRAPE_INTERVAL_S:g}",
        "--log-level",
        "warning",
    ]
    with open(work / "server-metrics.log", "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http(base + "/api/health")
        deadline = time.monotonic() + 60
        while not (work / "server" / "metrics.sock").exists():
            if time.monotonic() > deadline:
                raise RuntimeError("the metrics process did not start")
            time.sleep(0.2)
    except BaseException:
        stop(proc)
        raise
    return proc, base


def start_fleet(agents: int) -> tuple[list[subprocess.Popen[bytes]], int]:
    """bench/scrape.py's simulated fleet: agent-like metrics pages, one URL per agent."""
    port = free_port()
    procs = [
        subprocess.Popen([sys.executable, "-c", FLEET_SERVER, str(agents), str(port), "close"],
                         stdout=subprocess.PIPE, start_new_session=True)
        for _ in range(FLEET_PROCS)
    ]  # fmt: skip
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    return procs, port


def scrape_stats(work: Path) -> dict[str, float]:
    with MetricsClient(work / "server" / "metrics.sock", timeout_s=30) as client:
        stats = client.get("/stats")[1]
    return {k: float(stats[k]) for k in ("scrapes_ok", "scrapes_failed", "skipped")}


def setup_nginx(work: Path, workers: int, body: bytes) -> tuple[subprocess.Popen[bytes], str, str]:
    ndir = work / "nginx"
    (ndir / "www").mkdir(parents=True)
    (ndir / "www" / "config.yaml").write_bytes(body)
    port = free_port()
    conf = ngx.config(ndir, STATIC.format(dir=ndir, port=port), workers=workers, connections=4096)
    url = f"http://127.0.0.1:{port}/config.yaml"
    proc = ngx.start(ndir, conf, url)
    try:
        etag = httpx.get(url).headers["ETag"]
        assert httpx.get(url, headers={"If-None-Match": etag}).status_code == 304
    except BaseException:
        stop(proc)  # never leave an nginx behind
        raise
    return proc, url, etag


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, 15)
        proc.wait(15)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait(5)


def verify_cost_us(signer: Signer, rounds: int = 2000) -> float:
    """What the agent pays per config it receives: sha256 of ~3 KB + ed25519 verify + parsing."""
    data = (ROOT / "bench" / "poll.py").read_bytes()[:3000]
    token = signer.sign_config(
        group="g0", selector={}, commit="b" * 40, seq=1, sha256=config_hash(data), now=int(time.time()),
        valid_for_s=3600,
    )  # fmt: skip
    public = signer.private.public_key()
    keys = {key_id(public): public}
    t0 = time.perf_counter()
    for _ in range(rounds):
        verify_config(token, keys, data=data, labels={}, now=time.time())
    return (time.perf_counter() - t0) / rounds * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=25_000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2, help="granian workers (and nginx worker_processes)")
    ap.add_argument(
        "--threads", type=int, default=2, help="granian blocking threads per worker (server default)"
    )
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--signed", action="store_true", help="publish signed statements (as --signing-key)")
    ap.add_argument("--scraped", type=int, default=10_000, help="agents scraped in the second run (0: skip)")
    args = ap.parse_args()
    signer = None
    if args.signed:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        signer = Signer(Ed25519PrivateKey.generate())
        print(f"signed: {verify_cost_us(signer):.0f} us to verify one ~3 KB config in the agent")
    if not shutil.which("wrk"):
        print("wrk is not installed (make system-deps)", file=sys.stderr)
        return 2
    run = Run("poll")
    run.version("nginx", tool_version(["nginx", "-v"]))
    run.version("wrk", tool_version(["wrk", "--version"]))
    scraping: dict[str, float] | None = None
    fleet = start_fleet(args.scraped) if args.scraped else None
    with tempfile.TemporaryDirectory(prefix="ct-poll-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)  # nginx workers run as an unprivileged user
        nginx = None
        try:
            fleet_url = f"http://127.0.0.1:{fleet[1] if fleet else 0}/metrics/"
            server, base, agents_file = setup_server(
                work, args.agents, args.workers, args.threads, signer,
                metrics_url=lambda i: f"{fleet_url}{i}" if i < args.scraped else None,
            )  # fmt: skip
            lua = work / "agents.lua"
            lua.write_text(LUA_AGENTS)
            run_wrk(base + "/", lua, [str(agents_file)], 2, args.wrk_threads, args.connections)  # warm-up
            ours = run_wrk(
                base + "/",
                lua,
                [str(agents_file)],
                args.seconds,
                args.wrk_threads,
                args.connections,
                server.pid,
            )
            body = httpx.get(
                base + "/api/agent/v1/agents/" + agents_file.read_text().split(" ", 2)[0] + "/config",
                headers={"Authorization": "Bearer " + agents_file.read_text().split(" ", 2)[1]},
            ).content
            stop(server)
            if args.scraped:
                # the same polls while the metrics process scrapes `scraped` agents every 15 s
                server, base = start_server_with_metrics(work, args.workers, args.threads)
                time.sleep(SCRAPE_INTERVAL_S + 5)  # warm-up: every target scraped once
                run_wrk(base + "/", lua, [str(agents_file)], 2, args.wrk_threads, args.connections)
                s0, t0 = scrape_stats(work), time.monotonic()
                window = max(args.seconds, int(SCRAPE_INTERVAL_S))  # a whole scrape interval at least
                scraping = run_wrk(base + "/", lua, [str(agents_file)], window, args.wrk_threads,
                                   args.connections, server.pid)  # fmt: skip
                s1, t1 = scrape_stats(work), time.monotonic()
                scraping["scrapes_per_s"] = (s1["scrapes_ok"] - s0["scrapes_ok"]) / (t1 - t0)
                scraping["scrapes_failed"] = s1["scrapes_failed"] - s0["scrapes_failed"]
                scraping["skipped"] = s1["skipped"] - s0["skipped"]
                stop(server)
            nginx, url, etag = setup_nginx(work, args.workers, body)
            static = work / "static.lua"
            static.write_text(LUA_STATIC)
            run_wrk(url, static, [etag], 2, args.wrk_threads, args.connections)
            theirs = run_wrk(url, static, [etag], args.seconds, args.wrk_threads, args.connections, nginx.pid)
        finally:
            if "server" in locals():
                stop(server)
            if nginx is not None:
                stop(nginx)
            if fleet is not None:
                for proc in fleet[0]:
                    stop(proc)
    load = os.getloadavg()[0]
    print(f"\n{'':<10} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'non-304':>8} {'CPU us/req':>11}")
    for name, r in (("ctrltower", ours), ("nginx", theirs)):
        print(
            f"{name:<10} {r['rps']:>10.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['non_3xx']:>8.0f} "
            f"{r['cpu_us_per_req']:>11.1f}"
        )
    idle = 2e6 / ours["cpu_us_per_req"]
    print(f"CPU-bound capacity of 2 idle cores at this cost: ~{idle:,.0f} req/s (server processes only)")
    ratio = ours["rps"] / theirs["rps"]
    shape = f"{args.workers} workers x {args.threads} threads"
    wrk = f"wrk -t{args.wrk_threads} -c{args.connections} -d{args.seconds}s"
    print(
        f"\nratio ctrltower/nginx: {ratio:.3f} "
        f"({args.agents} agents, {shape}, {wrk}, load average {load:.1f})"
    )
    when = time.strftime("%Y-%m-%d %H:%M", time.gmtime()) + (" signed" if args.signed else "")
    print(
        f"| {when} | {args.agents} | {args.workers}x{args.threads} | {ours['rps']:.0f} | "
        f"{ours['p50_ms']:.2f} | {ours['p99_ms']:.2f} | {ours['cpu_us_per_req']:.0f} | {theirs['rps']:.0f} | "
        f"{theirs['p99_ms']:.2f} | {theirs['cpu_us_per_req']:.0f} | {ratio:.3f} | {load:.1f} |"
    )
    met = ours["rps"] >= 10_000 and ours["p99_ms"] < 50 and ours["non_3xx"] == 0
    print("target (>= 10,000 req/s, p99 < 50 ms, all 304):", "met" if met else "MISSED")
    run.figure(
        "poll_rps", f"config polls (304 path), {args.agents:,} agents", round(ours["rps"]), "req/s",
        baseline=Baseline("nginx serving the file with ETag", round(theirs["rps"]), "req/s"),
        target=">= 10,000 req/s, p99 < 50 ms, every answer 304", met=met, readme=True,
        p50_ms=ours["p50_ms"], p99_ms=ours["p99_ms"], non_304=ours["non_3xx"],
        cpu_us_per_req=round(ours["cpu_us_per_req"], 1), nginx_p99_ms=theirs["p99_ms"],
        nginx_cpu_us_per_req=round(theirs["cpu_us_per_req"], 1), shape=shape, wrk=wrk,
    )  # fmt: skip
    run.figure("poll_p99_ms", "config poll p99 latency", ours["p99_ms"], "ms",
               baseline=Baseline("nginx p99", theirs["p99_ms"], "ms"))  # fmt: skip
    if scraping is not None:
        wanted = args.scraped / SCRAPE_INTERVAL_S
        print(
            f"while scraping {args.scraped} agents every {SCRAPE_INTERVAL_S:g} s: "
            f"{scraping['rps']:.0f} req/s, "
            f"p99 {scraping['p99_ms']:.2f} ms; {scraping['scrapes_per_s']:.0f} scrapes/s (of {wanted:.0f}), "
            f"{scraping['scrapes_failed']:.0f} failed, {scraping['skipped']:.0f} skipped"
        )
        met_s = (
            scraping["rps"] >= 10_000 and scraping["p99_ms"] < 50 and scraping["non_3xx"] == 0
            and scraping["scrapes_per_s"] >= 0.95 * wanted and scraping["scrapes_failed"] == 0
        )  # fmt: skip
        run.figure(
            "poll_rps_scraping",
            f"config polls, {args.agents:,} agents, while {args.scraped:,} are scraped every 15 s",
            round(scraping["rps"]), "req/s",
            baseline=Baseline("the same polls with the metrics process off", round(ours["rps"]), "req/s"),
            target=">= 10,000 req/s, p99 < 50 ms, scrapes keep up, none fail", met=met_s, readme=True,
            **{k: round(v, 2) for k, v in scraping.items()},
        )  # fmt: skip
    return run.save()


if __name__ == "__main__":
    sys.exit(main())
