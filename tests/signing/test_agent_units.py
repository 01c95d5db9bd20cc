"""Agent-side pieces without a server: --trust-key usage errors, reading the wanted build from config
bytes, and the builds directory (current.json checked against the file, at most two builds kept)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from agent.upgrade import Build, Builds, wanted_version
from ctrltower import exit_codes
from ctrltower.cli import cli
from ctrltower.keyfiles import generate_keys


def _agent(tmp_path: Path, *extra: str) -> tuple[int, str]:
    binary = tmp_path / "otelcol"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    args = ["agent", "--server", "http://127.0.0.1:9", "--enroll-token", "t", "--collector", str(binary)]
    args += ["--config", str(tmp_path / "c.yaml"), "--state-dir", str(tmp_path / "s"), *extra]
    result = CliRunner().invoke(cli, args)
    return result.exit_code, result.output


def test_trust_key_usage_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pub"
    junk.write_text("not a key")
    code, out = _agent(tmp_path, "--trust-key", str(junk))
    assert code == exit_codes.USAGE and "not a PEM public key" in out
    code, out = _agent(tmp_path, "--trust-key", str(tmp_path / "missing.pub"))
    assert code == exit_codes.USAGE and "cannot read trust key" in out
    private, public = generate_keys(tmp_path / "k")
    code, out = _agent(tmp_path, "--trust-key", str(private))
    assert code == exit_codes.USAGE and "--trust-key" in out
    code, out = _agent(tmp_path, "--trust-key", str(public), "--protocol", "opamp")
    assert code == exit_codes.USAGE and "works with --protocol http only" in out


def test_wanted_version_is_the_rendered_header_line() -> None:
    head = b"# ctrltower: group edge; rendered from the config repo, do not edit\n"
    wanted = wanted_version(head + b"# ctrltower: collector 0.135.0-acme.1\nreceivers: {}\n")
    assert wanted == "0.135.0-acme.1"
    assert wanted_version(head + b"receivers: {}\n") is None
    # only the header: a line further down (e.g. inside a value) is not a request
    assert wanted_version(head + b"a: 1\nb: 2\n# ctrltower: collector x\n") is None
    # a version is a file name and a URL path: anything else is ignored
    assert wanted_version(head + b"# ctrltower: collector ../../bin/sh\n") is None


def test_builds_keep_two_and_refuse_a_changed_current(tmp_path: Path) -> None:
    initial = Build("0.135.0-dev", tmp_path / "otelcol")
    builds = Builds(tmp_path / "collectors", initial)
    assert builds.current() == initial
    one = builds.store("1.0", b"one")
    two = builds.store("2.0", b"two")
    three = builds.store("3.0", b"three")
    assert builds.find("2.0") == two and builds.find("9.9") is None
    builds.set_current(three)
    assert builds.current() == three
    builds.prune([three, two])
    assert sorted(p.name for p in (tmp_path / "collectors").glob("*.bin")) == sorted(
        [two.path.name, three.path.name]
    )
    assert not one.path.exists()
    # someone swaps the bytes of the running build: it is not trusted at the next start
    three.path.write_bytes(b"evil")
    assert builds.current() == initial
    # a current.json naming a file outside the directory is ignored too
    (tmp_path / "collectors" / "current.json").write_text(
        json.dumps({"version": "x", "file": "../otelcol", "sha256": "0" * 64})
    )
    assert builds.current() == initial
