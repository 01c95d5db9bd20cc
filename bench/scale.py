"""Benchmark: the scale-out mode against the embedded default, in the same run.

1. Polls (304 path), N agents (default 25,000), each request one agent with its own token and ETag
   (bench/poll.py's wrk script): 1 replica on SQLite (the baseline), then 1, 2 and 3 replicas on one
   PostgreSQL (2 and 3 behind nginx, round robin). Reported: req/s, p99, CPU of the server processes
   per request, and PostgreSQL's CPU per request (the hot path should cost it nothing).
2. Status reports through one replica, SQLite vs PostgreSQL: server CPU and database CPU per report
   (the database load per agent in docs/scale-out.md's capacity model).
3. Scrapes: the real metrics process scraping a simulated fleet (bench/scrape.py's) into the local
   DuckDB file, then into DuckLake (catalog in PostgreSQL, data in a local directory): scrapes/s and
   CPU per scrape of the metrics process, plus PostgreSQL's CPU per scrape (baselines, catalog).

This machine has 2 cores shared by everything here (wrk, nginx, PostgreSQL, the replicas): throughput
cannot grow with replicas, so the targets are on CPU per request and per scrape: within 1.5x of the
SQLite / DuckDB figures. Exit 1 when a target is missed.

Run: `.venv/bin/python bench/scale.py [--agents N] [--seconds S] [--scraped N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _record import Baseline, Run, tool_version  # noqa: E402
from poll import (  # noqa: E402
    LUA_AGENTS,
    free_port,
    group_cpu_s,
    run_wrk,
    setup_server,
    start_fleet,
    stop,
    wait_http,
)

from schemas.api import AgentRegistration, RevisionPublish  # noqa: E402
from schemas.common import config_hash  # noqa: E402
from tests.support import nginx as ngx  # noqa: E402
from tests.support.pg import PgCluster  # noqa: E402
from webui.metrics.client import MetricsClient  # noqa: E402
from webui.store import Store  # noqa: E402

GROUPS = 10
TICK = os.sysconf("SC_CLK_TCK")


PG_DATA: list[Path] = []  # the benchmark's own cluster (other PostgreSQL clusters may run here too)


def pg_cpu_s() -> float:
    """CPU seconds of the benchmark's PostgreSQL: the postmaster (with its exited children's time, which
    the kernel adds to it when it reaps them) and its live children (backends, helpers)."""
    pid = int((PG_DATA[0] / "postmaster.pid").read_text().split()[0])
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat.parent.name) == pid:
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        elif int(fields[1]) == pid:
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def populate_pg(url: str, agents: int, metrics_url: Any = lambda i: None) -> Path:
    """The same fleet as poll.py's setup_server, in PostgreSQL: one revision of 10 groups, N agents."""
    store = Store.open(database_url=url)
    try:
        store.ensure_bootstrap_tokens()
        groups = []
        for g in range(GROUPS):
            text = f"# group g{g}\n" + (ROOT / "bench" / "poll.py").read_text()[:3000]
            groups.append(
                {"name": f"g{g}", "selector": {"shard": str(g)}, "priority": 0, "config": text,
                 "config_hash": config_hash(text)}
            )  # fmt: skip
        store.publish(
            RevisionPublish.model_validate(
                {"commit_sha": "b" * 40, "previous_commit_sha": None, "groups": groups, "pipelines": []}
            )
        )

        def register(i: int) -> str:
            shard = i % GROUPS
            reg = store.register_agent(
                AgentRegistration(
                    instance_id=f"bench-agent-{i:06d}", hostname=f"host-{i:06d}",
                    labels={"shard": str(shard)}, metrics_url=metrics_url(i),
                )
            )  # fmt: skip
            return f'{reg.agent_id} {reg.agent_token} "{groups[shard]["config_hash"]}"'

        t0 = time.monotonic()
        with ThreadPoolExecutor(6) as pool:
            lines = list(pool.map(register, range(agents)))
        print(f"registered {agents} agents in PostgreSQL in {time.monotonic() - t0:.1f} s")
    finally:
        store.close()
    path = Path(tempfile.mkdtemp(prefix="ct-scale-agents-")) / "agents.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def start_replica(
    work: Path, name: str, url: str, *extra: str, workers: int = 2
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "ctrltower", "server", "--data-dir", str(work / name), "--database-url", url]
    cmd += [
        "--listen",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--threads",
        "2",
        "--log-level",
        "warning",
    ]
    cmd += list(extra) or ["--no-metrics"]
    with open(work / f"{name}.log", "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http(base + "/api/health", 60)
    except BaseException:
        stop(proc)
        raise
    return proc, base


def start_lb(work: Path, bases: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    d = work / f"nginx{len(bases)}"
    port = free_port()
    # two nginx workers; enough idle upstream connections that no poll opens a new one to a replica
    upstream = ngx.balancer(port, [b.removeprefix("http://") for b in bases], keepalive=128)
    base = f"http://127.0.0.1:{port}"
    return ngx.start(d, ngx.config(d, upstream, workers=2), base + "/api/health"), base


def polls(base: str, lua: Path, agents_file: Path, seconds: int, pgids: list[int]) -> dict[str, float]:
    """wrk through `base`; CPU of the given server process groups and of PostgreSQL per request."""
    run_wrk(base + "/", lua, [str(agents_file)], 2, 2, 64)  # warm-up: every worker's cache loaded
    cpu0, pg0 = sum(group_cpu_s(p) for p in pgids), pg_cpu_s()
    r = run_wrk(base + "/", lua, [str(agents_file)], seconds, 2, 64)
    cpu1, pg1 = sum(group_cpu_s(p) for p in pgids), pg_cpu_s()
    n = r["rps"] * seconds
    r["cpu_us_per_req"] = (cpu1 - cpu0) / n * 1e6 if n else float("nan")
    r["pg_us_per_req"] = (pg1 - pg0) / n * 1e6 if n else float("nan")
    return r


def status_reports(base: str, agents_file: Path, n: int, pgid: int) -> dict[str, float]:
    """n status reports (one per agent, round robin): server and PostgreSQL CPU per report."""
    lines = agents_file.read_text().split("\n")[:n]
    body = json.dumps({"collector_state": "running", "uptime_s": 10.0, "collector_pid": 1234})
    with httpx.Client(base_url=base, timeout=30) as c:
        cpu0, pg0, t0 = group_cpu_s(pgid), pg_cpu_s(), time.monotonic()
        for line in lines:
            agent_id, token, _ = line.split(" ")
            h = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            r = c.post(f"/api/agent/v1/agents/{agent_id}/status", content=body, headers=h)
            assert r.status_code == 200, r.text
        cpu1, pg1, t1 = group_cpu_s(pgid), pg_cpu_s(), time.monotonic()
    return {"server_us": (cpu1 - cpu0) / n * 1e6, "pg_us": (pg1 - pg0) / n * 1e6, "per_s": n / (t1 - t0)}


def scrapes(sock: Path, proc_pgid: int, seconds: float) -> dict[str, float]:
    """Scrapes/s and CPU per scrape of a server's metrics process (the server's whole process group:
    its workers idle meanwhile) and PostgreSQL's CPU per scrape."""

    def ok() -> float:
        with MetricsClient(sock, timeout_s=30) as c:
            return float(c.get("/stats")[1]["scrapes_ok"])

    s0, cpu0, pg0, t0 = ok(), group_cpu_s(proc_pgid), pg_cpu_s(), time.monotonic()
    time.sleep(seconds)
    s1, cpu1, pg1, t1 = ok(), group_cpu_s(proc_pgid), pg_cpu_s(), time.monotonic()
    n = s1 - s0
    return {
        "per_s": n / (t1 - t0),
        "cpu_us": (cpu1 - cpu0) / n * 1e6 if n else float("nan"),
        "pg_us": (pg1 - pg0) / n * 1e6 if n else float("nan"),
    }


def wait_socket(path: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the metrics process did not start ({path})")
        time.sleep(0.2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=25_000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--scraped", type=int, default=2_000, help="agents scraped in part 3")
    ap.add_argument("--scrape-interval", type=float, default=5.0)
    ap.add_argument("--reports", type=int, default=2_000)
    args = ap.parse_args()
    run = Run("scale")
    run.version("nginx", tool_version(["nginx", "-v"]))
    run.version("wrk", tool_version(["wrk", "--version"]))
    run.version("postgresql", tool_version(["/usr/lib/postgresql/15/bin/postgres", "--version"]))
    procs: list[subprocess.Popen[bytes]] = []
    res: dict[str, Any] = {}
    fleet = start_fleet(args.scraped)
    fleet_url = f"http://127.0.0.1:{fleet[1]}/metrics/"

    def murl(i: int) -> str | None:
        return f"{fleet_url}{i}" if i < args.scraped else None

    with tempfile.TemporaryDirectory(prefix="ct-scale-") as tmp, PgCluster.start() as pg:
        PG_DATA.append(pg.data)
        work = Path(tmp)
        os.chmod(work, 0o755)
        lua = work / "agents.lua"
        lua.write_text(LUA_AGENTS)
        try:
            # 1a. the baseline: one server on SQLite (bench/poll.py's setup)
            (work / "sqlite").mkdir()
            server, base, sqlite_agents = setup_server(work / "sqlite", args.agents, 2, 2, metrics_url=murl)
            procs.append(server)
            res["sqlite"] = polls(base, lua, sqlite_agents, args.seconds, [server.pid])
            # the same server behind the same nginx: the baseline for the balanced runs
            lb, lb_base = start_lb(work, [base])
            procs.append(lb)
            res["sqlite_lb"] = polls(lb_base, lua, sqlite_agents, args.seconds, [server.pid])
            stop(lb)
            res["sqlite_status"] = status_reports(base, sqlite_agents, args.reports, server.pid)
            stop(server)
            # 1b. replicas on PostgreSQL
            url = pg.new_schema_url("bench")
            pg_agents = populate_pg(url, args.agents, murl)
            # one worker each: 3 replicas already run 3 worker processes on this machine's 2 cores
            replicas = [start_replica(work, f"r{i}", url, workers=1) for i in range(3)]
            procs += [p for p, _ in replicas]
            res["pg1"] = polls(replicas[0][1], lua, pg_agents, args.seconds, [replicas[0][0].pid])
            res["pg_status"] = status_reports(replicas[0][1], pg_agents, args.reports, replicas[0][0].pid)
            for k in (2, 3):
                lb, lb_base = start_lb(work, [b for _, b in replicas[:k]])
                procs.append(lb)
                res[f"pg{k}"] = polls(lb_base, lua, pg_agents, args.seconds, [p.pid for p, _ in replicas[:k]])
                stop(lb)
            for p, _ in replicas:
                stop(p)
            # 3. scrapes: local DuckDB (the SQLite server's data dir) vs DuckLake
            wait = args.scrape_interval * 4
            extra = ["--poll-interval", "3600", "--metrics-interval", f"{args.scrape_interval:g}"]
            cmd = [sys.executable, "-m", "ctrltower", "server", "--data-dir", str(work / "sqlite" / "server"),
                   "--listen", f"127.0.0.1:{free_port()}", "--log-level", "warning", *extra]  # fmt: skip
            with open(work / "duckdb.log", "wb") as log:
                local = subprocess.Popen(
                    cmd, cwd=ROOT, start_new_session=True, stdout=log, stderr=subprocess.STDOUT
                )
            procs.append(local)
            sock = work / "sqlite" / "server" / "metrics.sock"
            wait_socket(sock, local)
            time.sleep(args.scrape_interval * 2)  # every target scraped once (warm)
            res["duckdb"] = scrapes(sock, local.pid, wait)
            stop(local)
            lake, _ = start_replica(work, "lake", url, "--metrics-lake", str(work / "lake"), *extra)
            procs.append(lake)
            lsock = work / "lake" / "metrics.sock"
            wait_socket(lsock, lake)
            time.sleep(args.scrape_interval * 2)
            res["ducklake"] = scrapes(lsock, lake.pid, wait)
            stop(lake)
        finally:
            for p in procs:
                stop(p)
            for p in fleet[0]:
                stop(p)
    return report(run, res, args)


def report(run: Run, res: dict[str, Any], args: argparse.Namespace) -> int:
    load = os.getloadavg()[0]
    base = res["sqlite"]
    print(f"\n{'polls (304)':<22} {'req/s':>8} {'p99 ms':>8} {'server us/req':>14} {'PG us/req':>10}")
    for key, name in (("sqlite", "1 replica, SQLite"), ("sqlite_lb", "1 SQLite (nginx)"),
                      ("pg1", "1 replica, PostgreSQL"),
                      ("pg2", "2 replicas (nginx)"), ("pg3", "3 replicas (nginx)")):  # fmt: skip
        r = res[key]
        print(
            f"{name:<22} {r['rps']:>8.0f} {r['p99_ms']:>8.2f} {r['cpu_us_per_req']:>14.1f}"
            f" {r['pg_us_per_req']:>10.1f}"
        )
    for s, name in (("sqlite_status", "SQLite"), ("pg_status", "PostgreSQL")):
        r = res[s]
        print(
            f"status report, {name}: server {r['server_us']:.0f} us, database {r['pg_us']:.0f} us,"
            f" {r['per_s']:.0f}/s (one client)"
        )
    for s, name in (("duckdb", "local DuckDB"), ("ducklake", "DuckLake")):
        r = res[s]
        print(
            f"scrapes into {name}: {r['per_s']:.0f}/s, {r['cpu_us']:.0f} us CPU each,"
            f" PostgreSQL {r['pg_us']:.0f} us each"
        )
    print(f"load average {load:.1f}")
    poll_ratio = res["pg1"]["cpu_us_per_req"] / base["cpu_us_per_req"]
    poll_ratio3 = res["pg3"]["cpu_us_per_req"] / res["sqlite_lb"]["cpu_us_per_req"]
    scrape_ratio = res["ducklake"]["cpu_us"] / res["duckdb"]["cpu_us"]
    wanted = args.scraped / args.scrape_interval
    for key, what, value, unit, bl, target, met in (
        ("scale_poll_cpu", f"server CPU per 304 poll, 1 replica on PostgreSQL, {args.agents:,} agents",
         res["pg1"]["cpu_us_per_req"], "us", Baseline("1 replica on SQLite", base["cpu_us_per_req"], "us"),
         "<= 1.5x SQLite's", poll_ratio <= 1.5),
        ("scale_poll_cpu_3", "server CPU per 304 poll, 3 replicas behind nginx",
         res["pg3"]["cpu_us_per_req"], "us",
         Baseline("1 replica on SQLite behind the same nginx", res["sqlite_lb"]["cpu_us_per_req"], "us"),
         "<= 1.5x SQLite's", poll_ratio3 <= 1.5),
        ("scale_scrape_cpu", "metrics process CPU per scrape into DuckLake", res["ducklake"]["cpu_us"], "us",
         Baseline("into the local DuckDB file", res["duckdb"]["cpu_us"], "us"), "<= 1.5x DuckDB's, keeps up",
         scrape_ratio <= 1.5 and res["ducklake"]["per_s"] >= 0.9 * wanted),
    ):  # fmt: skip
        run.figure(key, what, round(value, 1), unit, baseline=bl, target=target, met=met)
    for k in ("pg1", "pg2", "pg3"):
        run.figure(f"scale_poll_rps_{k}", f"304 polls/s, {k[2]} replica(s) on PostgreSQL",
                   round(res[k]["rps"]), "req/s",
                   baseline=Baseline("1 replica on SQLite", round(base["rps"]), "req/s"),
                   p99_ms=res[k]["p99_ms"], pg_us_per_req=round(res[k]["pg_us_per_req"], 2))  # fmt: skip
    run.figure("scale_status_pg_us", "PostgreSQL CPU per status report",
               round(res["pg_status"]["pg_us"], 1), "us",
               server_us=round(res["pg_status"]["server_us"], 1),
               sqlite_server_us=round(res["sqlite_status"]["server_us"], 1))  # fmt: skip
    run.figure("scale_scrape_pg_us", "PostgreSQL CPU per scrape into DuckLake (baselines, catalog)",
               round(res["ducklake"]["pg_us"], 1), "us",
               scrapes_per_s=round(res["ducklake"]["per_s"], 1))  # fmt: skip
    print(
        f"ratios: poll CPU {poll_ratio:.2f}x (3 replicas {poll_ratio3:.2f}x), scrape CPU {scrape_ratio:.2f}x"
    )
    return run.save()


if __name__ == "__main__":
    sys.exit(main())
