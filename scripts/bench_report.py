"""Builds the README's cost table and docs/benchmarks.md's summary from bench/results/*.json.

Each benchmark writes its raw result there (bench/_record.py). The newest result of each benchmark is
the current one; every figure in the generated tables links to the file it came from, so a reader can
see the machine, the load average, the CPU steal and the versions behind it. Older results stay listed.

    python scripts/bench_report.py           # rewrite the generated parts of README.md and docs/benchmarks.md
    python scripts/bench_report.py --check   # exit 1 when they differ from what the results say

Only the text between the `<!-- bench:... -->` markers is generated; the rest is written by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"
DOCS = ROOT / "docs" / "benchmarks.md"


def load_results(directory: Path = RESULTS) -> list[dict[str, Any]]:
    results = []
    for path in sorted(directory.glob("*.json")):
        data = json.loads(path.read_text())
        data["_file"] = path.relative_to(ROOT).as_posix()
        results.append(data)
    return sorted(results, key=lambda r: (r["started"], r["benchmark"]))


def latest(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    newest: dict[str, dict[str, Any]] = {}
    for result in results:
        newest[result["benchmark"]] = result  # sorted by start time: the last one wins
    return sorted(newest.values(), key=lambda r: r["benchmark"])


def num(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def amount(value: float, unit: str) -> str:
    return f"{num(value)} {unit}".strip()


def baseline_text(fig: dict[str, Any]) -> str:
    base = fig.get("baseline")
    if not base:
        return ""
    text = f"{base['what']}: {amount(base['value'], base['unit'])}"
    if fig.get("ratio") is not None:
        text += f" (ratio {fig['ratio']:.3g})"
    return text


def met_text(fig: dict[str, Any]) -> str:
    if fig.get("met") is None:
        return "-"
    return ("yes" if fig["met"] else "**no**") + (f" ({fig['target']})" if fig.get("target") else "")


def run_link(result: dict[str, Any], prefix: str) -> str:
    load = result["load"]
    steal = load.get("cpu_steal_fraction")
    when = result["started"][:16].replace("T", " ")
    conditions = f"load {load['loadavg_max'][0]:.1f}" + ("" if steal is None else f", steal {steal:.1%}")
    if load.get("under_load"):
        conditions += ", under load"
    return f"[{result['benchmark']} {when}]({prefix}{result['_file']}) ({conditions})"


def readme_table(current: list[dict[str, Any]]) -> str:
    lines = [
        "| what | figure | same-run baseline | target met | run |",
        "| --- | --- | --- | --- | --- |",
    ]
    for result in current:
        for fig in result["figures"]:
            if fig.get("readme"):
                lines.append(
                    f"| {fig['what']} | {amount(fig['value'], fig['unit'])} | {baseline_text(fig)} "
                    f"| {met_text(fig)} | {run_link(result, '')} |"
                )
    return "\n".join(lines)


def docs_summary(results: list[dict[str, Any]]) -> str:
    current = latest(results)
    lines = [
        "Newest result of each benchmark (every figure it recorded):",
        "",
        "| benchmark | figure | value | same-run baseline | target met | run |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for result in current:
        if result.get("failed"):
            lines.append(
                f"| `bench/{result['benchmark']}.py` | run failed: {result['failed'][:120]} | | | **no** "
                f"| {run_link(result, '../')} |"
            )
        for fig in result["figures"]:
            lines.append(
                f"| `bench/{result['benchmark']}.py` | {fig['what']} | {amount(fig['value'], fig['unit'])} "
                f"| {baseline_text(fig)} | {met_text(fig)} | {run_link(result, '../')} |"
            )
    lines += [
        "",
        "Every committed run, oldest first:",
        "",
        "| run | commit | seconds | load average (start / max / end) | CPU steal | every target met |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for result in results:
        load = result["load"]
        steal = load.get("cpu_steal_fraction")
        commit = (result.get("git_commit") or "-")[:12]
        lines.append(
            f"| [{Path(result['_file']).name}](../{result['_file']}) | {commit} "
            f"| {result['seconds']:.0f} | {load['loadavg_start'][0]:.1f} / {load['loadavg_max'][0]:.1f} / "
            f"{load['loadavg_end'][0]:.1f} | {'-' if steal is None else f'{steal:.1%}'} "
            f"| {'yes' if result['met'] else 'no'} |"
        )
    return "\n".join(lines)


def replace_between(text: str, name: str, body: str, path: Path) -> str:
    begin = f"<!-- bench:{name}:begin (generated by scripts/bench_report.py) -->"
    end = f"<!-- bench:{name}:end -->"
    if begin not in text or end not in text:
        raise SystemExit(f"{path.relative_to(ROOT)}: markers {begin} ... {end} not found")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{body}\n{end}{tail}"


def generate(results: list[dict[str, Any]]) -> dict[Path, str]:
    return {
        README: replace_between(README.read_text(), "table", readme_table(latest(results)), README),
        DOCS: replace_between(DOCS.read_text(), "summary", docs_summary(results), DOCS),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 when the generated parts are stale")
    args = parser.parse_args(argv)
    stale = []
    for path, text in generate(load_results()).items():
        if path.read_text() != text:
            stale.append(path.relative_to(ROOT).as_posix())
            if not args.check:
                path.write_text(text)
    if args.check and stale:
        print(f"stale: {', '.join(stale)}: run python scripts/bench_report.py", file=sys.stderr)
        return 1
    print(f"updated: {', '.join(stale)}" if stale else "up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
