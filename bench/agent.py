"""Benchmark: what the agent costs next to the collector it supervises.

The real server, `ctrltower agent` (default poll interval of the server: 15 s), the real collector
tailing a log file at a steady rate and shipping with otlphttp to demo/sink.py. Over the measured
window, CPU seconds (user+system, /proc) of the agent process and of the collector process; the
collector is the baseline measured in the same run. Also checks every line written reached the sink
and that the agent's /metrics says so.

Target: the agent uses at most 0.5x the collector's CPU at 1,000 lines/s, and under 60 MB RSS.
Exit 1 when missed.

Run: `.venv/bin/python bench/agent.py [--seconds S] [--rate LINES_PER_S]`.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _record import Baseline, Run  # noqa: E402

from agent.collector_metrics import process_usage  # noqa: E402
from demo.sink import start_sink  # noqa: E402
from schemas.api import GroupRevision, RevisionPublish  # noqa: E402
from schemas.common import config_hash  # noqa: E402
from tests.agent.helpers import collector_config, wait_until  # noqa: E402
from tests.conftest import collector_path, free_port  # noqa: E402
from tests.support.procs import children  # noqa: E402
from tests.support.server import ServerProcess, auth  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=int, default=1000, help="log lines per second")
    args = parser.parse_args()
    run = Run("agent")
    tmp = Path(tempfile.mkdtemp(prefix="bench-agent-"))
    logs = tmp / "logs"
    logs.mkdir()
    metrics_port = free_port()
    with start_sink() as sink, ServerProcess(tmp / "server", poll_interval_s=15.0) as srv:
        text = collector_config(f"{logs}/*.log", sink.endpoint)
        body = RevisionPublish(
            commit_sha="be0c4001",
            previous_commit_sha=None,
            groups=[
                GroupRevision(
                    name="edge", selector={}, priority=0, config=text, config_hash=config_hash(text)
                )
            ],
            pipelines=[],
        )
        r = httpx.post(
            f"{srv.base_url}/api/v1/revisions",
            content=body.model_dump_json(by_alias=True),
            headers={**auth(srv.create_token("reconciler")), "Content-Type": "application/json"},
        )
        r.raise_for_status()
        agent = subprocess.Popen(
            [
                sys.executable, "-m", "ctrltower", "agent", "--server", srv.base_url,
                "--enroll-token", srv.enroll_token, "--collector", str(collector_path()),
                "--config", str(tmp / "collector.yaml"), "--state-dir", str(tmp / "state"),
                "--metrics-listen", f"127.0.0.1:{metrics_port}",
            ],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=(tmp / "agent.log").open("wb"),
        )  # fmt: skip
        try:
            collector = wait_until(lambda: children(agent.pid), 30, what="collector started")[0]
            time.sleep(3)  # settle: registration, first apply, health check
            a0, c0 = process_usage(agent.pid), process_usage(collector)
            assert a0 is not None and c0 is not None
            written = 0
            start = time.monotonic()
            with (logs / "app.log").open("a") as f:
                while (elapsed := time.monotonic() - start) < args.seconds:
                    due = int(elapsed * args.rate)
                    f.write("".join(f"bench line {i}\n" for i in range(written, due)))
                    f.flush()
                    written = due
                    time.sleep(0.05)
            a1, c1 = process_usage(agent.pid), process_usage(collector)
            assert a1 is not None and c1 is not None
            got = sink.wait_for("logs", written, timeout=30)

            def exposed() -> float:
                for line in httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text.splitlines():
                    if line.startswith('ctrltower_collector_items_total{outcome="sent",signal="logs"}'):
                        return float(line.split()[-1])
                return -1

            wait_until(lambda: exposed() >= written, 10, what="agent metrics caught up")
            sent = exposed()
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(30)
    agent_cpu, collector_cpu = a1.cpu_seconds - a0.cpu_seconds, c1.cpu_seconds - c0.cpu_seconds
    ratio = agent_cpu / collector_cpu if collector_cpu > 0 else float("inf")
    rss_mb = a1.rss_bytes / 1e6
    print(f"window {args.seconds:g} s at {args.rate} lines/s: {written} lines written, sink got {got}, "
          f"agent /metrics sent={sent:g}")  # fmt: skip
    print(f"collector (baseline) CPU {collector_cpu:.2f} s, RSS {c1.rss_bytes / 1e6:.0f} MB")
    print(f"agent CPU {agent_cpu:.2f} s, RSS {rss_mb:.0f} MB")
    print(f"ratio agent/collector CPU: {ratio:.2f}x (target <= 0.5x; load average {os.getloadavg()[0]:.1f})")
    if got != written or sent != written:
        run.fail(f"lines lost: {written} written, sink got {got}, agent /metrics says {sent:g} sent")
    run.figure(
        "agent_cpu", f"the agent beside its collector ({args.rate:,} lines/s)", round(agent_cpu, 3), "CPU s",
        baseline=Baseline("the collector's own CPU, same window", round(collector_cpu, 3), "CPU s"),
        target="<= 0.5x the collector's CPU", met=ratio <= 0.5, readme=True, seconds=args.seconds,
    )  # fmt: skip
    run.figure("agent_rss_mb", "the agent's RSS", round(rss_mb, 1), "MB", target="< 60 MB", met=rss_mb < 60,
               readme=True, collector_rss_mb=round(c1.rss_bytes / 1e6, 1))  # fmt: skip
    return run.save()


if __name__ == "__main__":
    raise SystemExit(main())
