"""Benchmark: what signed configs cost the config poll, against an unsigned server in the same run.

Two real servers (`ctrltower server`, 2 workers x 2 threads) with the same N agents (default 25,000) in
10 groups, set up as bench/poll.py does: one publishes unsigned, one with a signed statement per group
(as `reconcile --signing-key`; the sample's 200s must carry a statement that verifies). `wrk` polls
each in turn (the 304 path, every request a different agent), in alternating rounds whose order flips
every round, so both see the same machine load. Medians of the rounds; the figure is the signed
server's CPU per poll against the unsigned one's. `--control` publishes unsigned on both: the ratio
two identical servers get on this machine, the noise floor of the figure.

Also printed and recorded: what one verification costs the agent (once per config it receives).

Target: signed CPU per poll <= 1.25x unsigned (the 304 path does not touch statements; the margin is
this shared machine's noise between two identical servers). Exit 1 when missed.

Run: `.venv/bin/python bench/poll_signing.py [--agents N] [--seconds S] [--rounds R] [--control]`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import poll  # bench/poll.py: server setup, wrk and CPU accounting
from _record import Baseline, Run, tool_version
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas.signing import Signer

TARGET = 1.25


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=25_000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--control", action="store_true", help="both servers unsigned (A/A: the noise floor)")
    args = ap.parse_args()
    run = Run("poll_signing", argv=sys.argv[1:])
    run.version("wrk", tool_version(["wrk", "--version"]))
    if not shutil.which("wrk"):
        run.fail("wrk is not installed (make system-deps)")
        return run.save()
    signer = Signer(Ed25519PrivateKey.generate())
    results: dict[str, list[dict[str, float]]] = {"unsigned": [], "signed": []}
    with tempfile.TemporaryDirectory(prefix="ct-poll-signing-") as tmp:
        work = Path(tmp)
        lua = work / "agents.lua"
        lua.write_text(poll.LUA_AGENTS)
        servers: dict[str, tuple[subprocess.Popen[bytes], str, Path]] = {}
        try:
            for name in results:
                (work / name).mkdir()
                key = signer if name == "signed" and not args.control else None
                servers[name] = poll.setup_server(work / name, args.agents, args.workers, args.threads, key)
            wrk = (args.wrk_threads, args.connections)
            for rnd in range(args.rounds):
                for name in list(results) if rnd % 2 == 0 else list(reversed(results)):
                    proc, base, agents_file = servers[name]
                    poll.run_wrk(base + "/", lua, [str(agents_file)], 2, *wrk)  # warm-up
                    r = poll.run_wrk(base + "/", lua, [str(agents_file)], args.seconds, *wrk, proc.pid)
                    results[name].append(r)
                    run.sample_load()
                    print(f"round {rnd + 1} {name:<8} {r['rps']:>8.0f} req/s p99 {r['p99_ms']:.2f} ms "
                          f"{r['cpu_us_per_req']:.1f} us/poll", flush=True)  # fmt: skip
        finally:
            for proc, _, _ in servers.values():
                poll.stop(proc)
    keys = ("rps", "p99_ms", "cpu_us_per_req", "non_3xx")
    med = {n: {k: median(r[k] for r in rs) for k in keys} for n, rs in results.items()}
    u, s = med["unsigned"], med["signed"]
    cpu_ratio = s["cpu_us_per_req"] / u["cpu_us_per_req"]
    all_304 = u["non_3xx"] == 0 and s["non_3xx"] == 0
    met = cpu_ratio <= TARGET and all_304
    label = "unsigned (control: A/A)" if args.control else "signed"
    print(f"{label}/unsigned: req/s {s['rps'] / u['rps']:.3f}, CPU per poll {cpu_ratio:.3f} "
          f"(medians of {args.rounds}, load average {os.getloadavg()[0]:.1f})")  # fmt: skip
    verify_us = poll.verify_cost_us(signer)
    print(f"agent: {verify_us:.0f} us to verify one ~3 KB config")
    what = "config poll CPU, second unsigned server (control)" if args.control else "config poll CPU, signed"
    run.figure(
        "poll_signed_cpu_us", f"{what}, {args.agents:,} agents", round(s["cpu_us_per_req"], 1), "us/poll",
        baseline=Baseline("unsigned server, same run", round(u["cpu_us_per_req"], 1), "us/poll"),
        target=f"<= {TARGET}x the unsigned CPU per poll, every answer 304", met=met,
        rounds=args.rounds, control=args.control, signed_rps=round(s["rps"]), unsigned_rps=round(u["rps"]),
        signed_p99_ms=s["p99_ms"], unsigned_p99_ms=u["p99_ms"],
        per_round={n: [round(r["cpu_us_per_req"], 1) for r in rs] for n, rs in results.items()},
    )  # fmt: skip
    run.figure("agent_verify_us", "the agent verifying one ~3 KB config (per config received)",
               round(verify_us), "us")  # fmt: skip
    when = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    print(
        f"target (signed CPU per poll <= {TARGET}x unsigned, all 304): {'met' if met else 'MISSED'} ({when})"
    )
    return run.save()


if __name__ == "__main__":
    sys.exit(main())
