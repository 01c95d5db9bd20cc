"""Bad input never raises: every way a file can be broken ends as a diagnostic (and exit 1 in the CLI)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler.api import compile_repo
from compiler.loader import MAX_FILE_BYTES
from tests.compiler.helpers import ROOT

BOMB = 'a: &a ["x","x","x","x","x","x","x","x","x","x"]\n' + "".join(
    f"{c}: &{c} [{','.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)

CASES: dict[str, tuple[bytes | str, str]] = {
    "empty": (b"", "CT103"),
    "whitespace": (b"   \n\n  \n", "CT103"),
    "comment-only": (b"# nothing here\n", "CT103"),
    "null": (b"null\n", "CT103"),
    "scalar": (b"42\n", "CT103"),
    "binary-junk": (bytes(range(256)) * 8, "CT100"),
    "nul-in-utf8": ("kind: Pipeline\x00\n", "CT100"),
    "control-chars": ("kind: Pipeline\nname: \x07\x1b\n", "CT101"),
    "latin-1": ("kind: Pipeline\nname: caf\xe9\n".encode("latin-1"), "CT100"),
    "utf-16": ("kind: Pipeline\n".encode("utf-16"), "CT100"),
    "huge": (b"# " + b"x" * (MAX_FILE_BYTES + 10) + b"\n", "CT102"),
    "deep-flow": (b"a: " + b"[" * 5000 + b"]" * 5000, "CT101"),
    "deep-300": (b"a: " + b"[" * 300 + b"]" * 300, "CT107"),
    "alias-bomb": (BOMB.encode(), "CT107"),
    "python-tag": (b"kind: !!python/object:os.system {}\n", "CT101"),
    "unknown-tag": (b"kind: !vault |\n  abc\n", "CT101"),
    "tabs": (b"kind: Pipeline\n\tname: x\n", "CT101"),
    "unclosed-quote": (b'kind: "Pipeline\n', "CT101"),
    "two-docs": (b"kind: Pipeline\n---\nkind: Pipeline\n", "CT108"),
    "complex-key": (b"? [a, b]\n: c\n", "CT101"),
    "list-root": (b"- a\n- b\n", "CT103"),
    "wrong-types": (b"kind: Pipeline\nname: [x]\ngroups: 3\nsignals: {}\nnodes: x\n", "CT104"),
    "huge-numbers": (b"kind: Pipeline\nname: x\ngroups: [g]\nsignals: [logs]\nnodes: 1e999999\n", "CT104"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_file_gives_diagnostic_not_traceback(name: str) -> None:
    content, code = CASES[name]
    result = compile_repo({"pipelines/bad.yaml": content, "groups/g.yaml": "kind: AgentGroup\nname: g\n"})
    assert not result.ok
    assert result.configs == {}
    codes = {d.code for d in result.diagnostics}
    assert code in codes, [d.format_text() for d in result.diagnostics]
    for d in result.diagnostics:
        assert d.location.file in {"pipelines/bad.yaml", "groups/g.yaml"}


def test_bad_settings_and_group_files_too() -> None:
    for path in ("ctrltower.yaml", "groups/x.yaml"):
        for content, _ in CASES.values():
            result = compile_repo({path: content})
            assert not result.ok or all(d.severity == "warning" for d in result.diagnostics)


def test_cli_on_junk_exits_1_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "groups").mkdir()
    (tmp_path / "pipelines" / "junk.yaml").write_bytes(os.urandom(4096) + b"\x00")
    (tmp_path / "pipelines" / "bomb.yaml").write_text(BOMB)
    (tmp_path / "groups" / "deep.yaml").write_bytes(b"a: " + b"[" * 3000)
    proc = subprocess.run(
        [sys.executable, "-m", "ctrltower", "validate", "--repo", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "pipelines/junk.yaml:" in proc.stdout
    assert "CT107" in proc.stdout


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=8)
    | st.sampled_from(["{{ x }}", "{% if %}", "logs"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=12,
)
_node = st.fixed_dictionaries(
    {
        "id": st.sampled_from(["a", "b", "c", "bad id", ""]),
        "class": st.sampled_from(["receiver", "processor", "exporter", "connector", "extension"]),
        "type": st.sampled_from(["filelog", "otlp", "batch", "debug", "spanmetrics", "count", "nope"]),
    },
    optional={"config": _json, "name": st.sampled_from(["x", "a/b", None])},
)
_pipeline = st.fixed_dictionaries(
    {
        "kind": st.just("Pipeline"),
        "name": st.sampled_from(["p", "q", "Bad"]),
        "groups": st.lists(st.sampled_from(["g", "h"]), max_size=2),
        "signals": st.lists(st.sampled_from(["logs", "metrics", "traces", "spans"]), max_size=3),
        "nodes": st.lists(_node, max_size=5),
        "edges": st.lists(
            st.fixed_dictionaries(
                {"from": st.sampled_from(["a", "b", "c", "z"]), "to": st.sampled_from(["a", "b", "c", "z"])},
                optional={"signals": st.lists(st.sampled_from(["logs", "metrics", "traces"]), max_size=2)},
            ),
            max_size=6,
        ),
    }
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_pipeline, max_size=3), st.binary(max_size=64))
def test_random_repos_never_raise(pipelines: list[dict[str, object]], junk: bytes) -> None:
    files: dict[str, bytes | str] = {
        "groups/g.yaml": "kind: AgentGroup\nname: g\nvars: {x: 1}\n",
        "pipelines/junk.yaml": junk,
    }
    for i, p in enumerate(pipelines):
        files[f"pipelines/p{i}.yaml"] = yaml.safe_dump(p)
    result = compile_repo(files)
    assert result.ok == (not any(d.severity == "error" for d in result.diagnostics))
    if result.ok:
        assert set(result.configs) == {"g"}
