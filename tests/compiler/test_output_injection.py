"""Diagnostics quote what a pull request wrote (file names, keys), and CI prints them: a newline there
started a line GitHub Actions reads as a workflow command (`::add-mask::`, a fake `::error`), an
escape sequence repainted the terminal, and Markdown in a message became a link or image in the PR
comment. Each output format now keeps such text on one line and inert.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from compiler.report import markdown_text
from ctrltower.cli import cli
from schemas.diagnostics import printable

GROUP = "kind: AgentGroup\nname: g\nselector: {a: b}\n"
# a key with a newline, a workflow command, an ANSI escape and Markdown in it (all legal YAML)
PIPELINE = (
    'kind: Pipeline\nname: p\ngroups: [g]\nsignals: [logs]\n"x\\n::error title=pwned::injected'
    '\\u001b[2J![img](https://evil.example/t.png) @someone": 1\nnodes: []\nedges: []\n'
)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "groups").mkdir()
    (tmp_path / "groups" / "g.yaml").write_text(GROUP)
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "p.yaml").write_text(PIPELINE)
    (tmp_path / "pipelines" / "bad\n::warning::named.yaml").write_text("kind: [\n")
    return tmp_path


@pytest.mark.parametrize("fmt", ["text", "github", "markdown"])
def test_no_injected_line_or_escape_reaches_the_output(repo: Path, fmt: str) -> None:
    out = CliRunner().invoke(cli, ["validate", "--repo", str(repo), "--format", fmt])
    assert out.exit_code == 1
    lines = out.output.splitlines()
    assert not any(line.startswith(("::error title=pwned", "::warning::named")) for line in lines)
    assert "\x1b" not in out.output
    if fmt == "github":
        assert all(line.startswith(("::error ", "::warning ")) for line in lines if line)
    if fmt == "markdown":
        assert "![img](" not in out.output and "@someone" not in out.output


def test_printable_and_markdown_text() -> None:
    assert printable("a\nb\r\x1b[0m\u202e\u2028") == "a\\nb\\r\\x1b[0m\\u202e\\u2028"
    assert printable("plain: é ü 中") == "plain: é ü 中"
    assert markdown_text("![x](http://e) [l](u) `c` | <b> @me\n") == (
        "\\!\\[x\\](http://e) \\[l\\](u) \\`c\\` \\| &lt;b&gt; &#64;me\\\\n"
    )
