"""Fast tests of the demo's parts: the log generator, cleanup of what a killed demo left behind, and
refusing a busy port (the whole demo runs for real in test_demo.py)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from demo.loggen import LogGenerator
from demo.run import PIDS_FILE, main, stop_leftovers
from tests.support.procs import alive

SLEEPER = (
    "import subprocess, sys, time; "
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
)


def test_loggen_writes_json_lines_at_its_rate_and_truncates(tmp_path: Path) -> None:
    dirs = [tmp_path / "a", tmp_path / "b"]
    gen = LogGenerator(dirs, rate=40.0, max_bytes=2000).start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and min(gen.lines_written.values()) < 30:
            time.sleep(0.05)
    finally:
        gen.stop()
    for d in dirs:
        assert gen.lines_written[d] >= 30
        lines = (d / "app.log").read_text().splitlines()
        assert lines and all(json.loads(line)["service"] == d.name for line in lines)
        assert (d / "app.log").stat().st_size < 2000 + 40 * 300  # truncated once past max_bytes


def test_stop_leftovers_stops_only_our_process_groups(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    data_dir.mkdir()
    ours = subprocess.Popen([sys.executable, "-c", SLEEPER, str(data_dir)], start_new_session=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        time.sleep(0.5)  # let `ours` start its grandchild
        (data_dir / PIDS_FILE).write_text(f"{ours.pid} server\n{other.pid} not-ours\n99999999 gone\n")
        assert stop_leftovers(data_dir, timeout_s=5) == [ours.pid]
        assert ours.wait(timeout=5) is not None
        assert alive(other.pid)  # its command line does not name the data dir: untouched
        assert not (data_dir / PIDS_FILE).exists()
    finally:
        for proc in (ours, other):
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=5)


def test_demo_refuses_a_busy_port(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["--port", str(port), "--dir", str(tmp_path / "demo")]) == 2
    assert main(["--port", "0", "--dir", str(tmp_path / "demo")]) == 2
