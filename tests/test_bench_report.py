"""The README's cost table and docs/benchmarks.md's summary are what the committed results say.

scripts/bench_report.py generates both from bench/results/*.json; this fails when a figure was edited by
hand, a result was added without regenerating, or a result lacks what a reader needs to judge it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.support.scripts import load_script

RESULTS = sorted((ROOT / "bench" / "results").glob("*.json"))


def test_generated_tables_match_the_committed_results() -> None:
    report = load_script("bench_report")
    for path, text in report.generate(report.load_results()).items():
        assert path.read_text() == text, f"{path.name} is stale: run python scripts/bench_report.py"


@pytest.mark.parametrize("path", RESULTS, ids=[p.name for p in RESULTS])
def test_every_result_says_where_and_under_what_load(path: Path) -> None:
    data = json.loads(path.read_text())
    assert path.name.startswith(data["benchmark"] + "-")
    assert (ROOT / "bench" / f"{data['benchmark']}.py").exists(), "a result of a benchmark that is gone"
    assert data["machine"]["cpus"] and data["versions"]["python"]
    load = data["load"]
    assert len(load["loadavg_start"]) == 3 and len(load["loadavg_max"]) == 3
    assert "cpu_steal_fraction" in load and isinstance(load["under_load"], bool)
    assert data["figures"] or data["failed"], "a run with no figure must say why it failed"
    for fig in data["figures"]:
        assert fig["what"] and fig["unit"] is not None and isinstance(fig["value"], int | float)
        assert fig["met"] in (True, False, None)
        if fig["met"] is not None:
            assert fig["target"], f"{fig['key']}: a verdict without a target"
    assert data["met"] == (data["failed"] is None and all(f["met"] is not False for f in data["figures"]))


def test_the_readme_shows_only_recorded_figures() -> None:
    readme = (ROOT / "README.md").read_text()
    costs = readme[readme.index("- **Costs**") :]
    table = costs[costs.index("<!-- bench:table:begin") : costs.index("<!-- bench:table:end")]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert rows, "the cost table is empty"
    assert all("](bench/results/" in row for row in rows), "a cost row without the run that produced it"
    # nothing after the generated table claims a figure of its own
    assert "|" not in costs[costs.index("<!-- bench:table:end") :].split("\n## ")[0].replace(
        "<!-- bench:table:end -->", ""
    )
