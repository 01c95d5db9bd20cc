"""Benchmark: a cold `make install`, and `make demo` from a fresh clone to the first Synced agent.

Both start from a fresh `git clone` of this repository's committed HEAD (uncommitted changes are not
measured), with a new virtualenv and pip's cache disabled, so every package is downloaded and its hash
checked against requirements/*.txt. By default pip reads no local configuration (no local wheel
directories or mirrors): only the package registry, as on a fresh machine.

- `make install`: the dev set (requirements/dev.txt) plus the project, editable;
- `make demo`: in a second clone, the demo set (requirements/demo.txt: runtime + [full] + the test
  collector), then the demo itself, until `GET /api/v1/agents?sync=Synced` lists an agent.

Targets: install < 300 s; demo to the first Synced agent < 180 s. There is no baseline to run in the
same benchmark; the network is part of the figure (see the result's notes). Exit 1 when missed.

    .venv/bin/python bench/install.py [--only install|demo] [--keep-local-config]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _record import ROOT, Run, tool_version

INSTALL_TARGET_S = 300.0
DEMO_TARGET_S = 180.0


def clean_env(keep_local_config: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    env["PIP_NO_CACHE_DIR"] = "1"
    if not keep_local_config:
        env["PIP_CONFIG_FILE"] = os.devnull  # pip then reads no config file at all
        for key in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL"):
            env.pop(key, None)
    return env


def clone(dest: Path) -> None:
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(dest)], check=True)


def cold_install(tmp: Path, env: dict[str, str], run: Run) -> None:
    repo = tmp / "install"
    clone(repo)
    t0 = time.monotonic()
    done = subprocess.run(["make", "install"], cwd=repo, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - t0
    run.sample_load()
    if done.returncode != 0:
        run.fail(f"make install exited {done.returncode}: {done.stderr[-2000:]}")
        return
    check = subprocess.run([str(repo / ".venv/bin/pip"), "check"], capture_output=True, text=True)
    packages = subprocess.run(
        [str(repo / ".venv/bin/pip"), "list", "--format=freeze"], capture_output=True, text=True
    ).stdout.count("\n")
    if check.returncode != 0:
        run.fail(f"pip check after make install: {check.stdout[-1000:]}")
    print(f"cold make install: {seconds:.1f} s, {packages} packages")
    run.figure(
        "make_install_s", "cold `make install` (fresh clone, new venv, no pip cache)", round(seconds, 1), "s",
        target=f"< {INSTALL_TARGET_S:.0f} s", met=seconds < INSTALL_TARGET_S, readme=True, packages=packages,
    )  # fmt: skip


def demo_to_synced(tmp: Path, env: dict[str, str], run: Run) -> None:
    repo = tmp / "demo"
    clone(repo)
    # the demo reconciles example-config-repo/ from its own Git repository: the clone has it
    env = dict(env, DEMO_DIR=str(tmp / "demo-data"))
    with socket.socket() as probe:  # a free port for the demo's server
        probe.bind(("127.0.0.1", 0))
        env["DEMO_PORT"] = str(probe.getsockname()[1])
    log = (tmp / "demo.log").open("w+")
    t0 = time.monotonic()
    proc = subprocess.Popen(["make", "demo"], cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    try:
        token = url = None
        synced_at = installed_at = None
        deadline = t0 + 900  # bounded: a broken install or demo ends the run, not the machine
        with httpx.Client(timeout=5) as client:
            while time.monotonic() < deadline and proc.poll() is None:
                text = Path(log.name).read_text()
                if installed_at is None and "ctrltower demo:" in text:
                    installed_at = time.monotonic()
                if token is None and (m := re.search(r"Admin token:\s+(\S+)", text)):
                    token = m[1]
                    url = re.search(r"Web UI:\s+(\S+?)/?\n", text)[1]  # type: ignore[index]
                if token and url:
                    try:
                        r = client.get(f"{url}/api/v1/agents", params={"sync": "Synced", "limit": 1},
                                       headers={"Authorization": f"Bearer {token}"})  # fmt: skip
                        if r.status_code == 200 and r.json()["items"]:
                            synced_at = time.monotonic()
                            break
                    except httpx.HTTPError:
                        pass
                time.sleep(0.5)
        run.sample_load()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, as a user stops the demo
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
    if synced_at is None:
        run.fail(f"no Synced agent; demo output: {Path(log.name).read_text()[-2000:]}")
        return
    total = synced_at - t0
    install = (installed_at or synced_at) - t0
    print(f"make demo: installed in {install:.1f} s, first Synced agent after {total:.1f} s")
    run.figure(
        "make_demo_synced_s", "`make demo` (fresh clone) to the first Synced agent", round(total, 1), "s",
        target=f"< {DEMO_TARGET_S:.0f} s", met=total < DEMO_TARGET_S, readme=True,
        install_s=round(install, 1),
    )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", choices=["install", "demo"])
    parser.add_argument(
        "--keep-local-config", action="store_true", help="let pip use this machine's pip config"
    )
    args = parser.parse_args()
    run = Run("install")
    env = clean_env(args.keep_local_config)
    run.version("pip (fresh venv)", tool_version(["python3.11", "-m", "pip", "--version"]))
    run.note("network-bound: downloads every locked package from the registry with hashes checked")
    if args.keep_local_config:
        run.note("pip used this machine's configuration (local wheel directories and mirrors)")
    with tempfile.TemporaryDirectory(prefix="ctrltower-bench-install-") as name:
        tmp = Path(name)
        if args.only in (None, "install"):
            cold_install(tmp, env, run)
        if args.only in (None, "demo"):
            demo_to_synced(tmp, env, run)
    return run.save()


if __name__ == "__main__":
    raise SystemExit(main())
