"""Benchmark: the metrics scraper, DuckDB ingest and queries, against Prometheus in the same run.

1. Scrape: a simulated fleet on 127.0.0.1 (one asyncio server process, one URL per agent, each a
   realistic ~75-series page whose counters grow with time). The real metrics process
   (`metrics.service.run`, targets from a real state.db through the server's store) scrapes it at
   the production interval; then Prometheus (Debian package, loopback only, temp storage) scrapes the
   same fleet. CPU per scrape of both processes (from /proc) and their ratio are printed.
2. Ingest: 1,000 agents x 7 days at 15 s (40 M rows, 10 values each) bulk-inserted from NumPy;
   also the scraper's own path (Batch.add + insert) on smaller batches.
3. Queries on that store (after rollup): p50 of one agent over 24 h, a group aggregate over 7 d.
4. Against Prometheus' query_range: both backfilled with the same reduced data set (see SUBSET_*:
   backfilling Prometheus with 1,000 agents x 7 days takes far longer than this benchmark may run).

Run: `.venv/bin/python bench/scrape.py [--agents N] [--seconds S]`. Exit 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _record import Baseline, Run, tool_version  # noqa: E402

from metrics import query  # noqa: E402
from metrics.params import parse_range  # noqa: E402
from metrics.rates import COUNTER_COLUMNS  # noqa: E402
from metrics.settings import DAY, MetricsSettings  # noqa: E402
from metrics.store import RAW_COLUMNS, Batch, MetricsStore  # noqa: E402
from webui.metrics.client import MetricsClient  # noqa: E402
from webui.store.db import migrate  # noqa: E402

INTERVAL = 15.0
TICK = os.sysconf("SC_CLK_TCK")
STORE_AGENTS = 1000
STORE_DAYS = 7
GROUPS = 10
SUBSET_AGENTS = 10  # the data set both stores get for the query_range comparison
SUBSET_EVERY = 60.0
QUERY_REPEAT = 21
# The series our scraper turns into values (metrics/parse.py); Prometheus keeps the same ones.
KEPT_SERIES = "ctrltower_collector_(up|cpu_seconds_total|resident_memory_bytes|items_total)"
FLEET_PROCS = 3  # simulator processes sharing the port (SO_REUSEPORT), so the fleet keeps up

# --- the simulated fleet -----------------------------------------------------------------------------

FLEET_SERVER = r"""
import asyncio, sys, time
N = int(sys.argv[1]); PORT = int(sys.argv[2]); CLOSE = sys.argv[3] == "close"; T0 = time.time()
noise = []
for i in range(22):
    noise.append(f'otelcol_exporter_queue_size{{exporter="otlphttp/{i}",service_instance_id="c0ffee"}} {i}\n')
    noise.append(f'otelcol_processor_batch_send_size_bucket{{processor="batch",le="{2**i}"}} {i * 10}\n')
for g in range(3):
    noise.append(f'python_gc_objects_collected_total{{generation="{g}"}} {1000 + g}.0\n')
noise += ["process_virtual_memory_bytes 1.2e9\n", "process_resident_memory_bytes 5.1e7\n",
          "process_start_time_seconds 1.7e9\n", "process_cpu_seconds_total 12.5\n",
          "process_open_fds 17\n", "process_max_fds 1024\n", 'python_info{implementation="CPython"} 1\n',
          "ctrltower_collector_restarts_total 0\n", 'ctrltower_config_applies_total{result="applied"} 3\n',
          "ctrltower_last_successful_poll_timestamp_seconds 1.7e9\n"]
NOISE = "".join(noise)
OUTCOMES = ("accepted", "refused", "sent", "send_failed")
ITEMS = [(s, o) for s in ("logs", "metrics", "traces") for o in OUTCOMES]
RATES = {(s, o): r for (s, o), r in zip(ITEMS, [200, 0, 199, 1, 50, 0, 50, 0, 30, 0, 30, 0])}

def page(i):
    el = time.time() - T0 + i
    info = f'agent_version="0.1.0",group="g{i % 10}",instance_id="i{i}",revision="abc1234"'
    parts = [NOISE, f"ctrltower_agent_info{{{info}}} 1\n",
             "ctrltower_collector_up 1\n", f"ctrltower_collector_cpu_seconds_total {0.05 * el:.3f}\n",
             f"ctrltower_collector_resident_memory_bytes {8e7 + i}\n"]
    for (s, o) in ITEMS:
        value = RATES[(s, o)] * el
        parts.append(f'ctrltower_collector_items_total{{signal="{s}",outcome="{o}"}} {value:.1f}\n')
    return "".join(parts).encode()

async def handle(reader, writer):
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            path = line.split(b" ")[1]
            keep = True
            while True:
                h = await reader.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                if h.lower().startswith(b"connection:") and b"close" in h.lower():
                    keep = False
            try:
                body = page(int(path.rsplit(b"/", 1)[1]))
            except ValueError:
                body = b""
            keep = keep and not CLOSE
            head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n"
            writer.write(head % (len(body), b"" if keep else b"Connection: close\r\n") + body)
            await writer.drain()
            if not keep:
                break
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", PORT, backlog=4096, reuse_port=True)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_for(cond: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if cond():
                return
        time.sleep(0.2)
    raise RuntimeError("timed out waiting")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def bench_ours(tmp: Path, agents: int, port: int, warm: float, seconds: float) -> dict[str, float]:
    data = tmp / "ours"
    data.mkdir()
    db = data / "state.db"
    migrate(db)
    now = time.time()
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO agents (id, instance_id, hostname, metrics_url, group_name, token_hash,"
            " registered_at, last_seen) VALUES (?, ?, ?, ?, ?, 'x', ?, ?)",
            [
                (
                    f"agent-{i:05d}",
                    f"i{i}",
                    f"h{i}",
                    f"http://127.0.0.1:{port}/metrics/{i}",
                    f"g{i % 10}",
                    now,
                    now,
                )
                for i in range(agents)
            ],
        )
    settings = MetricsSettings(data_dir=data, interval_s=INTERVAL, online_within_s=1e9)
    code = (  # the wiring of webui/metrics/process.py, with the benchmark's settings
        "import sys; from metrics.settings import MetricsSettings as M; from metrics.service import run; "
        "from webui.metrics.process import StoreTargets; from webui.store import Store; "
        "m = M.model_validate_json(sys.argv[1]); run(m, StoreTargets(Store.open(m.data_dir / 'state.db')))"
    )
    log = (tmp / "ours.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", code, settings.model_dump_json()], cwd=ROOT, stdout=log, stderr=log
    )
    try:
        wait_for(settings.socket_path.exists, 30)
        with MetricsClient(settings.socket_path, timeout_s=30) as client:
            time.sleep(warm)
            c0, s0, t0 = cpu_seconds(proc.pid), client.get("/stats")[1], time.monotonic()
            time.sleep(seconds)
            c1, s1, t1 = cpu_seconds(proc.pid), client.get("/stats")[1], time.monotonic()
            rss = rss_mb(proc.pid)
    finally:
        stop(proc)
        log.close()
    scrapes = s1["scrapes_ok"] - s0["scrapes_ok"]
    failed = s1["scrapes_failed"] - s0["scrapes_failed"]
    return {
        "scrapes_per_s": scrapes / (t1 - t0),
        "failed": failed,
        "skipped": s1["skipped"] - s0["skipped"],
        "cores": (c1 - c0) / (t1 - t0),
        "cpu_ms_per_scrape": 1000 * (c1 - c0) / max(1, scrapes),
        "rss_mb": rss,
    }


def start_prometheus(
    tmp: Path, name: str, config: dict[str, Any], storage: Path
) -> tuple[subprocess.Popen[bytes], str]:
    prom = shutil.which("prometheus")
    if prom is None:
        raise RuntimeError("prometheus is not installed (make system-deps)")
    cfg = tmp / f"{name}.yml"
    cfg.write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    log = (tmp / f"{name}.log").open("wb")
    proc = subprocess.Popen(
        [prom, f"--config.file={cfg}", f"--storage.tsdb.path={storage}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=30d", "--log.level=warn"],
        stdout=log, stderr=log,
    )  # fmt: skip
    log.close()
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: httpx.get(url + "/-/ready", timeout=2).status_code == 200, 60)
    return proc, url


def bench_prometheus(tmp: Path, agents: int, port: int, warm: float, seconds: float) -> dict[str, float]:
    config = {
        "global": {"scrape_interval": f"{INTERVAL:g}s", "scrape_timeout": "5s"},
        "scrape_configs": [
            {
                "job_name": "fleet",
                "static_configs": [
                    {"targets": [f"127.0.0.1:{port}"], "labels": {"agent": str(i)}} for i in range(agents)
                ],
                "relabel_configs": [
                    {
                        "source_labels": ["agent"],
                        "target_label": "__metrics_path__",
                        "replacement": "/metrics/$1",
                    }
                ],
                # store only what ours stores: the collector's cpu, memory, up and item counters
                "metric_relabel_configs": [
                    {"source_labels": ["__name__"], "regex": KEPT_SERIES, "action": "keep"}
                ],
            }
        ],
    }
    proc, url = start_prometheus(tmp, "prom-scrape", config, tmp / "prom-scrape-data")
    try:
        time.sleep(warm)
        c0, t0, w0 = cpu_seconds(proc.pid), time.monotonic(), time.time()
        time.sleep(seconds)
        c1, t1, w1 = cpu_seconds(proc.pid), time.monotonic(), time.time()
        rss = rss_mb(proc.pid)
        window = int(w1 - w0)

        def promql(expr: str) -> float:
            r = httpx.get(url + "/api/v1/query", params={"query": expr, "time": w1}, timeout=60)
            result = r.json()["data"]["result"]
            return float(result[0]["value"][1]) if result else 0.0

        attempts = promql(f"sum(count_over_time(up[{window}s]))")
        scrapes = promql(f"sum(sum_over_time(up[{window}s]))")  # up is 1 for a successful scrape
        kept = promql('count({__name__=~"' + KEPT_SERIES + '"})')
    finally:
        stop(proc)
    return {
        "scrapes_per_s": scrapes / (t1 - t0),
        "failed": attempts - scrapes,
        "series_kept": kept,
        "cores": (c1 - c0) / (t1 - t0),
        "cpu_ms_per_scrape": 1000 * (c1 - c0) / max(1.0, scrapes),
        "rss_mb": rss,
    }


# --- ingest and queries ------------------------------------------------------------------------------


def day_arrays(
    agents: int,
    start: float,
    every: float,
    days: float,
    rng: np.random.Generator,
    ids: list[str] | None = None,
    group_of: list[str] | None = None,
) -> dict[str, Any]:
    """Columns of `days` of scrapes of `agents` agents (ids and groups generated unless given)."""
    steps = int(days * DAY / every)
    names = np.array(ids or [f"agent-{i:05d}" for i in range(agents)], dtype=object)
    groups = np.array(group_of or [f"g{i % GROUPS}" for i in range(agents)], dtype=object)
    n = steps * agents
    cols: dict[str, Any] = {
        "agent": np.tile(names, steps),
        "grp": np.tile(groups, steps),
        "ts": np.repeat(start + every * np.arange(steps), agents)
        + np.tile(np.linspace(0, every, agents, endpoint=False), steps),
        "dt": np.full(n, every),
        "memory": 8e7 + rng.random(n) * 1e6,
        "up": np.ones(n),
    }
    base = {"cpu": 0.05, "logs_in": 200, "logs_out": 199, "metrics_in": 50, "metrics_out": 50,
            "traces_in": 30, "traces_out": 30, "send_failed": 1, "refused": 0.5}  # fmt: skip
    for c in COUNTER_COLUMNS:
        cols[c] = base[c] * every * (0.9 + 0.2 * rng.random(n))
    return {c: cols[c] for c in RAW_COLUMNS}


CPU_MS: dict[str, float] = {}  # name -> mean CPU ms per call (this process), filled by p50_ms


def p50_ms(fn: Callable[[], Any], name: str = "", cpu_of: int | None = None) -> float:
    """Median wall ms of QUERY_REPEAT calls; the mean CPU ms per call (of this process, or of the
    process `cpu_of`) goes to CPU_MS[name]: on a shared machine wall time swings with the load."""
    fn()  # warm
    times = []
    c0 = time.process_time() if cpu_of is None else cpu_seconds(cpu_of)
    for _ in range(QUERY_REPEAT):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    c1 = time.process_time() if cpu_of is None else cpu_seconds(cpu_of)
    CPU_MS[name] = 1000 * (c1 - c0) / QUERY_REPEAT
    return 1000 * statistics.median(times)


def bench_store(tmp: Path, now: float) -> dict[str, float]:
    rng = np.random.default_rng(1)
    settings = MetricsSettings(data_dir=tmp / "store")
    settings.data_dir.mkdir()
    store = MetricsStore(settings.db_path, memory_limit=settings.duckdb_memory_limit)
    rows = 0
    insert_s = rollup_s = 0.0
    start = now - STORE_DAYS * DAY
    for d in range(STORE_DAYS):
        arrays = day_arrays(STORE_AGENTS, start + d * DAY, INTERVAL, 1, rng)
        t = time.perf_counter()
        rows += store.insert_arrays(arrays)
        insert_s += time.perf_counter() - t
        t = time.perf_counter()
        store.rollup(start + (d + 1) * DAY, settings.rollup_lag_s)  # a day at a time (the server: every 30 s)
        rollup_s += time.perf_counter() - t
    out: dict[str, float] = {"rows": rows, "bulk_samples_per_s": rows * 10 / insert_s}
    # the scraper's own path: Batch.add per scrape, one insert per flush (10,000 rows here)
    t = time.perf_counter()
    added = 0
    incs: list[float | None] = [1.0] * len(COUNTER_COLUMNS)
    for _ in range(10):
        batch = Batch()
        for i in range(10000):
            batch.add(f"agent-x{i}", "gx", now + 1 + i * 1e-4, 15.0, incs, 8e7, 1.0)
        added += store.insert(batch)
    out["scraper_path_samples_per_s"] = added * 10 / (time.perf_counter() - t)
    t = time.perf_counter()
    store.rollup(now, settings.rollup_lag_s)
    out["rollup_s"] = rollup_s + time.perf_counter() - t
    out["db_mb"] = settings.db_path.stat().st_size / 1e6

    def q(**kw: str) -> Callable[[], Any]:
        req = parse_range({k: [v] for k, v in kw.items()}, now)
        return lambda: query.range_query(store, req, now, settings)

    out["q_agent_24h_ms"] = p50_ms(q(agent="agent-00042", metric="logs_in", start="-24h"), "q_agent_24h_ms")
    out["q_group_7d_ms"] = p50_ms(q(group="g3", metric="logs_in", start="-7d"), "q_group_7d_ms")
    out["q_fleet_7d_ms"] = p50_ms(q(metric="cpu", start="-7d"), "q_fleet_7d_ms")
    out["q_agent_6h_raw_ms"] = p50_ms(q(agent="agent-00042", metric="cpu", start="-6h"), "q_agent_6h_raw_ms")
    ids = [f"agent-{i:05d}" for i in range(100)]
    out["latest_100_ms"] = p50_ms(lambda: query.latest(store, now, 35.0, agents=ids), "latest_100_ms")
    out["top10_ms"] = p50_ms(lambda: query.top(store, "logs_in", 10, now, 35.0), "top10_ms")
    store.close()
    return out


def bench_vs_prometheus_queries(tmp: Path, now: float) -> dict[str, float]:
    """Both systems get the same SUBSET_AGENTS agents x 7 days at SUBSET_EVERY s; same queries."""
    promtool = shutil.which("promtool")
    if promtool is None:
        raise RuntimeError("promtool is not installed")
    start = now - STORE_DAYS * DAY
    steps = int(STORE_DAYS * DAY / SUBSET_EVERY)
    ts = start + SUBSET_EVERY * np.arange(steps)
    rates = 100 + 10 * np.arange(SUBSET_AGENTS)
    om = tmp / "subset.om"
    with om.open("w") as fh:
        fh.write("# TYPE ctrltower_collector_items counter\n")
        for a in range(SUBSET_AGENTS):
            lbl = f'agent="agent-{a:05d}",grp="g{a % 2}",signal="logs",outcome="accepted"'
            vals = rates[a] * SUBSET_EVERY * np.arange(1, steps + 1)
            fh.writelines(
                f"ctrltower_collector_items_total{{{lbl}}} {v:.1f} {t:.3f}\n"
                for v, t in zip(vals, ts, strict=True)
            )
        fh.write("# EOF\n")
    blocks = tmp / "prom-q-data"
    subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(om), str(blocks)],
                   check=True, capture_output=True)  # fmt: skip
    settings = MetricsSettings(data_dir=tmp / "subset")
    settings.data_dir.mkdir()
    store = MetricsStore(settings.db_path, memory_limit=settings.duckdb_memory_limit)
    n = steps * SUBSET_AGENTS
    arrays: dict[str, Any] = {
        "agent": np.repeat(np.array([f"agent-{a:05d}" for a in range(SUBSET_AGENTS)], dtype=object), steps),
        "grp": np.repeat(np.array([f"g{a % 2}" for a in range(SUBSET_AGENTS)], dtype=object), steps),
        "ts": np.tile(ts, SUBSET_AGENTS),
        "dt": np.full(n, SUBSET_EVERY),
        "memory": np.full(n, np.nan),
        "up": np.ones(n),
    }
    for c in COUNTER_COLUMNS:
        arrays[c] = np.zeros(n)
    arrays["logs_in"] = np.repeat(rates * SUBSET_EVERY, steps).astype(float)
    store.insert_arrays({c: arrays[c] for c in RAW_COLUMNS})
    store.rollup(now, settings.rollup_lag_s)
    proc, url = start_prometheus(
        tmp, "prom-query", {"global": {"scrape_interval": "15s"}, "scrape_configs": []}, blocks
    )
    out: dict[str, float] = {}
    try:
        sel = 'ctrltower_collector_items_total{agent="agent-00003",signal="logs",outcome="accepted"}'
        cases = {
            "agent_24h": (
                f"rate({sel}[12m])",
                now - DAY,
                360.0,
                {"agent": "agent-00003", "start": "-24h", "step": "360"},
            ),
            "group_7d": (
                'sum(rate(ctrltower_collector_items_total{grp="g1",signal="logs",outcome="accepted"}[1h]))',
                now - 7 * DAY, 3600.0, {"group": "g1", "start": "-7d", "step": "3600"},
            ),
        }  # fmt: skip
        client = httpx.Client(base_url=url, timeout=60)
        for name, (promql, qstart, step, ours) in cases.items():
            params = {"query": promql, "start": qstart, "end": now, "step": step}
            r = client.get("/api/v1/query_range", params=params)
            assert r.status_code == 200 and r.json()["data"]["result"], r.text
            prom_ms = p50_ms(
                lambda params=params: client.get("/api/v1/query_range", params=params),
                f"{name}_prom",
                proc.pid,
            )
            req = parse_range({k: [v] for k, v in (ours | {"metric": "logs_in"}).items()}, now)
            ours_ms = p50_ms(lambda req=req: query.range_query(store, req, now, settings), f"{name}_ours")
            out[f"{name}_ours_ms"] = ours_ms
            out[f"{name}_prom_ms"] = prom_ms
        client.close()
    finally:
        stop(proc)
        store.close()
    return out


def run_scrape(tmp: Path, agents: int, seconds: float, run: Run) -> bool:
    warm = INTERVAL + 5
    port = free_port()
    fleet = [
        subprocess.Popen(
            [sys.executable, "-c", FLEET_SERVER, str(agents), str(port), "close"], stdout=subprocess.PIPE
        )
        for _ in range(FLEET_PROCS)
    ]
    try:
        for f in fleet:
            assert f.stdout is not None and f.stdout.readline().strip() == b"ready"
        print(f"== scrape: {agents} agents every {INTERVAL:g} s, {seconds:g} s measured", end=" ")
        print(f"after {warm:g} s warm-up; load average {os.getloadavg()[0]:.1f}")
        results = {}
        for name, fn in (("ctrltower", bench_ours), ("prometheus", bench_prometheus)):
            f0, t0 = sum(cpu_seconds(f.pid) for f in fleet), time.monotonic()
            results[name] = fn(tmp, agents, port, warm, seconds)
            results[name]["fleet_cores"] = (sum(cpu_seconds(f.pid) for f in fleet) - f0) / (
                time.monotonic() - t0
            )
    finally:
        for f in fleet:
            stop(f)
    ours, prom = results["ctrltower"], results["prometheus"]
    for name, r in results.items():
        print(f"{name:>11}: {r['scrapes_per_s']:7.1f} scrapes/s  {r['cores']:.3f} cores  "
              f"{r['cpu_ms_per_scrape']:.3f} ms CPU/scrape  RSS {r['rss_mb']:.0f} MB  "
              f"(fleet simulator {r['fleet_cores']:.2f} cores)")  # fmt: skip
    print(f"  ctrltower: failed scrapes {ours['failed']:.0f}, skipped (previous still running) ", end="")
    print(f"{ours['skipped']:.0f}; prometheus: failed scrapes {prom['failed']:.0f}, ", end="")
    print(f"series kept {prom['series_kept']:.0f}")
    ratio = ours["cpu_ms_per_scrape"] / max(1e-9, prom["cpu_ms_per_scrape"])
    print(f"  CPU per scrape, ctrltower / prometheus: {ratio:.2f}")
    target = agents / INTERVAL
    met = ours["scrapes_per_s"] >= 0.95 * target and ours["cores"] <= 1.0
    run.figure(
        "scrape_cores", f"scraping {agents:,} agents every {INTERVAL:g} s", round(ours["cores"], 3), "cores",
        baseline=Baseline("Prometheus, same fleet, same series kept, no keep-alive", round(prom["cores"], 3),
                          "cores"),
        ratio=ratio, target=f">= {0.95 * target:.0f} scrapes/s within one core", met=met, readme=True,
        ratio_is="CPU per successful scrape, ours / Prometheus", ours=ours, prometheus=prom,
    )  # fmt: skip
    if not met:
        print(f"  GOAL MISSED: {target:.0f} scrapes/s within one core")
    return met


def run_store(tmp: Path, run: Run) -> bool:
    ok = True
    now = float(int(time.time() // 3600) * 3600)
    load = os.getloadavg()[0]
    print(f"== store: {STORE_AGENTS} agents x {STORE_DAYS} days at {INTERVAL:g} s; load average {load:.1f}")
    s = bench_store(tmp, now)
    print(f"  {s['rows'] / 1e6:.1f} M rows, bulk ingest {s['bulk_samples_per_s'] / 1e6:.2f} M samples/s, "
          f"scraper path {s['scraper_path_samples_per_s'] / 1e6:.2f} M samples/s, "
          f"rollup {s['rollup_s']:.1f} s, file {s['db_mb']:.0f} MB")  # fmt: skip
    for k in (
        "q_agent_24h_ms",
        "q_group_7d_ms",
        "q_fleet_7d_ms",
        "q_agent_6h_raw_ms",
        "latest_100_ms",
        "top10_ms",
    ):
        print(f"  p50 {k[:-3]:<16} {s[k]:8.1f} ms wall, {CPU_MS[k]:8.1f} ms CPU")
    if s["bulk_samples_per_s"] < 1e6 or s["q_agent_24h_ms"] > 50 or s["q_group_7d_ms"] > 50:
        print("  GOAL MISSED: ingest >= 1 M samples/s, p50 < 50 ms")
        ok = False
    run.figure(
        "bulk_ingest", f"bulk ingest, {STORE_AGENTS:,} agents x {STORE_DAYS} days",
        round(s["bulk_samples_per_s"]), "samples/s", target=">= 1,000,000 samples/s",
        met=s["bulk_samples_per_s"] >= 1e6, **s,
    )  # fmt: skip
    run.figure(
        "store_query_agent_24h_ms", "metrics query in-process (no HTTP), one agent 24 h",
        round(s["q_agent_24h_ms"], 1), "ms", target="p50 < 50 ms",
        met=s["q_agent_24h_ms"] <= 50 and s["q_group_7d_ms"] <= 50,
        group_7d_ms=round(s["q_group_7d_ms"], 1), cpu_ms={k: round(v, 2) for k, v in CPU_MS.items()},
    )  # fmt: skip
    print(f"== query_range: same {SUBSET_AGENTS} agents x {STORE_DAYS} days at {SUBSET_EVERY:g} s in both")
    qp = bench_vs_prometheus_queries(tmp, now)
    for name in ("agent_24h", "group_7d"):
        o, p = qp[f"{name}_ours_ms"], qp[f"{name}_prom_ms"]
        oc, pc = CPU_MS[f"{name}_ours"], CPU_MS[f"{name}_prom"]
        print(f"  {name}: p50 wall ctrltower {o:.1f} ms, prometheus {p:.1f} ms, ratio {o / p:.2f}; ", end="")
        print(f"CPU ctrltower {oc:.1f} ms, prometheus {pc:.1f} ms, ratio {oc / max(pc, 1e-9):.2f}")
        run.figure(
            f"query_range_{name}_ms", f"query_range {name.replace('_', ' ')} ({SUBSET_AGENTS} agents x 7 d)",
            round(o, 1), "ms", baseline=Baseline("Prometheus query_range, same data", round(p, 1), "ms"),
            cpu_ms=round(oc, 2), prometheus_cpu_ms=round(pc, 2),
        )  # fmt: skip
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agents", type=int, default=10000)
    ap.add_argument("--seconds", type=float, default=30.0, help="measurement window of each scraper")
    ap.add_argument("--only", choices=("all", "scrape", "store"), default="all")
    args = ap.parse_args()
    run = Run("scrape")
    run.version("prometheus", tool_version(["prometheus", "--version"]))
    with tempfile.TemporaryDirectory(prefix="ct-bench-scrape-") as d:
        if args.only in ("all", "scrape"):
            run_scrape(Path(d), args.agents, args.seconds, run)
        if args.only in ("all", "store"):
            run_store(Path(d), run)
    return run.save()


if __name__ == "__main__":
    sys.exit(main())
