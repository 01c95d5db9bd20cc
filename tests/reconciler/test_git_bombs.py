"""Git bombs (issue 10, items 4 and 7): `reconcile` and `plan` read only ctrltower.yaml and the kind
directories, ask every blob's size before its content, and refuse files over the loader's limit
(CT102) and symbolic links (CT109) unread, against real repositories and the real server.

"Unread" is observed, not assumed: every object name sent to the `git cat-file` process is
recorded (a wrapper around the real ObjectReader, which still does the reading), and no request for
a refused blob's content may appear.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from compiler.loader import MAX_FILE_BYTES
from reconciler.client import ControlClient, make_http_client
from reconciler.git import GitRepo
from reconciler.objects import GitObject, ObjectReader
from reconciler.plan import build_plan
from reconciler.run import ReconcileSettings, reconcile_once
from tests.reconciler.gitutil import commit, git, head, init_repo
from tests.support.server import ServerProcess

pytestmark = pytest.mark.slow

HUGE = 48 * 1024 * 1024  # outside the kind directories: must never be listed or read


@pytest.fixture
def contents_requests(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names whose content was asked from git (the real reader answers them)."""
    asked: list[str] = []
    real = ObjectReader.read

    def read(self: ObjectReader, names: Sequence[str]) -> list[GitObject | None]:
        asked.extend(names)
        return real(self, names)

    monkeypatch.setattr(ObjectReader, "read", read)
    return asked


def _blob(repo: Path, rel: str) -> str:
    return git(repo, "rev-parse", f"HEAD:{rel}")


def _bomb_commit(src: Path) -> tuple[str, str, str]:
    """Adds a huge blob outside the config, an oversized pipeline file and a link out of the repo."""
    (src / "assets").mkdir()
    with (src / "assets" / "huge.bin").open("wb") as fh:
        fh.write(b"\0" * HUGE)
    (src / "pipelines" / "big.yaml").write_bytes(b"# padding\n" * (MAX_FILE_BYTES // 10 + 1))
    (src / "pipelines" / "leak.yaml").symlink_to("../../../../etc/passwd")
    sha = commit(src, "bombs")
    return sha, _blob(src, "assets/huge.bin"), _blob(src, "pipelines/big.yaml")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("srv") / "data", poll_interval_s=0.5) as srv:
        yield srv


def test_reconcile_refuses_oversized_and_links_unread(
    tmp_path: Path, server: ServerProcess, contents_requests: list[str]
) -> None:
    src = init_repo(tmp_path / "src")
    good = head(src)
    settings = ReconcileSettings(source=str(src), ref="main", cache_dir=tmp_path / "cache")
    token = server.create_token("reconciler", "bombs")
    with ControlClient(make_http_client(server.base_url, token)) as client:
        first = reconcile_once(settings, client, environ={})
        assert first.outcome == "published", first
        bad, huge, big = _bomb_commit(src)
        result = reconcile_once(settings, client, environ={})
        assert result.outcome == "invalid" and result.commit_sha == bad
        errors = [(d.code, d.location.file) for d in result.diagnostics if d.severity == "error"]
        assert errors == [("CT102", "pipelines/big.yaml"), ("CT109", "pipelines/leak.yaml")]
        assert "root:" not in str(result.diagnostics)
        current = client.current_revision()
        assert current is not None and current.commit_sha == good  # the server keeps the last good one
    asked = " ".join(contents_requests)
    assert huge not in asked and big not in asked


def test_plan_refuses_oversized_and_links_unread(tmp_path: Path, contents_requests: list[str]) -> None:
    src = init_repo(tmp_path / "src")
    base = head(src)
    bad, huge, big = _bomb_commit(src)
    for full in (False, True):
        with GitRepo.open(src) as repo:
            plan = build_plan(repo, base, bad, full=full)
        assert not plan.valid and plan.changes == ()
        errors = [(d.code, d.location.file) for d in plan.diagnostics if d.severity == "error"]
        assert ("CT102", "pipelines/big.yaml") in errors and ("CT109", "pipelines/leak.yaml") in errors
        assert "assets/huge.bin" not in [f.path for f in plan.files]
    asked = " ".join(contents_requests)
    assert huge not in asked and big not in asked
    # reversed: the bombs in base only make base count as invalid; head is planned as usual
    git(src, "rm", "-q", "pipelines/big.yaml", "pipelines/leak.yaml")
    fixed = commit(src, "remove the bombs")
    with GitRepo.open(src) as repo:
        plan = build_plan(repo, bad, fixed)
    assert plan.valid and plan.base_diagnostics >= 2


def test_repo_files_over_the_total_limit_are_ct114_and_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, contents_requests: list[str]
) -> None:
    """Thousands of files each under 4 MiB are a bomb too (the limit is lowered for the test)."""
    import reconciler.git as git_module

    monkeypatch.setattr(git_module, "MAX_REPO_BYTES", 20_000)
    src = init_repo(tmp_path / "src")
    base = head(src)
    for i in range(10):
        (src / "pipelines" / f"pad-{i}.yaml").write_text("# padding\n" * 300)
    padded = commit(src, "many files")
    pads = {_blob(src, f"pipelines/pad-{i}.yaml") for i in range(10)}
    with GitRepo.open(src) as repo:
        listing = repo.list_files(padded)
        assert [d.code for d in repo.refusals(padded, listing)] == ["CT114"]
        assert repo.read_blobs(listing) == {}
    for full in (False, True):
        with GitRepo.open(src) as repo:
            plan = build_plan(repo, base, padded, full=full)
        assert not plan.valid and "CT114" in [d.code for d in plan.diagnostics]
    assert not pads & set(contents_requests)


def test_too_many_files_is_ct114(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import reconciler.git as git_module

    monkeypatch.setattr(git_module, "MAX_REPO_FILES", 5)
    src = init_repo(tmp_path / "src")
    with GitRepo.open(src) as repo:
        sha = repo.resolve("main")
        listing = repo.list_files(sha)
        assert len(listing) > 5
        assert [d.code for d in repo.refusals(sha, listing)] == ["CT114"]
        assert "5 files" not in repo.refusals(sha, listing)[0].message  # the count with the file: 6
        assert repo.read_blobs(listing) == {}


@pytest.mark.parametrize("limit", [100, 250])  # the root tree, then a kind directory's tree
def test_a_huge_tree_is_refused_by_its_size_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, contents_requests: list[str], limit: int
) -> None:
    """A tree of a million entries is a bomb too: its size is asked first (the limit is lowered for
    the test: 16 MiB of tree would only make it slow)."""
    import reconciler.git as git_module
    import reconciler.objects as objects_module
    from reconciler.errors import GitUnavailable

    monkeypatch.setattr(objects_module, "MAX_TREE_BYTES", limit)
    monkeypatch.setattr(git_module, "MAX_TREE_BYTES", limit)
    src = init_repo(tmp_path / "src")
    root = git(src, "rev-parse", "HEAD^{tree}")
    pipelines = _blob(src, "pipelines")
    with GitRepo.open(src) as repo, pytest.raises(GitUnavailable, match="bytes \\(over"):
        repo.list_files(repo.resolve("main"))
    asked = " ".join(contents_requests)
    assert pipelines not in asked and (limit > 100 or ("^{tree}" not in asked and root not in asked))


def test_a_huge_commit_message_is_refused_by_size(tmp_path: Path, server: ServerProcess) -> None:
    src = init_repo(tmp_path / "src")
    message = tmp_path / "message.txt"
    message.write_text("subject\n\n" + "x" * (2 * 1024 * 1024))
    git(src, "commit", "-q", "--allow-empty", "-F", str(message))
    settings = ReconcileSettings(source=str(src), ref="main", cache_dir=tmp_path / "cache")
    token = server.create_token("reconciler", "huge message")
    with ControlClient(make_http_client(server.base_url, token)) as client:
        result = reconcile_once(settings, client, environ={})
    assert result.outcome == "error" and "over 1,048,576" in str(result.error)
