"""reconciler.git against real repositories: refs, merges, force-push, deleted branch, subdirs,
GIT_* isolation, and credentials over a real HTTP server with Basic auth (Git's dumb protocol)."""

from __future__ import annotations

import base64
import os
import subprocess
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from compiler.files import is_repo_file
from reconciler.errors import GitNotFound, GitRefused, GitUnavailable
from reconciler.git import GitRepo, Source, changed_paths, default_cache_dir, redact
from tests.reconciler.gitutil import clean_env, commit, edit, git, head, init_repo


def mirror(src: Path | str, cache: Path, environ: dict[str, str] | None = None) -> GitRepo:
    return GitRepo.mirror(Source.parse(str(src)), cache, environ=environ or {}, timeout_s=30)


def test_source_parse_strips_credentials() -> None:
    s = Source.parse("https://bob:s3cret@git.example.com:8443/org/cfg.git")
    assert s.url == "https://git.example.com:8443/org/cfg.git"
    assert (s.username, s.password) == ("bob", "s3cret")
    assert "s3cret" not in repr(s) and "s3cret" not in s.display
    assert Source.parse("git@github.com:org/cfg.git").url == "git@github.com:org/cfg.git"
    assert Source.parse("file:///srv/cfg.git").url == "file:///srv/cfg.git"
    assert Source.parse("relative/dir").url.startswith("/")
    assert redact("fatal: https://x:tok@h/r.git failed") == "fatal: https://h/r.git failed"


def test_default_cache_dir_follows_xdg() -> None:
    assert default_cache_dir({"XDG_CACHE_HOME": "/c"}) == Path("/c/ctrltower")
    assert default_cache_dir({"HOME": "/home/u"}) == Path("/home/u/.cache/ctrltower")


def test_branch_tag_sha_and_files_from_object_db(tmp_path: Path) -> None:
    src = init_repo(tmp_path / "src")
    first = head(src)
    git(src, "tag", "v1")
    git(src, "tag", "main")  # a tag named like the branch: the branch wins
    second = commit(src, "tweak", pipelines__extra_note="not a repo file\n")
    with mirror(src, tmp_path / "cache") as repo:
        assert repo.resolve("main") == second
        assert repo.resolve("v1") == first
        assert repo.resolve(first[:10]) == first
        assert repo.resolve("refs/heads/main") == second
        assert repo.resolve_many(["v1", "main", first[:10]]) == [first, second, first]
        files = repo.read_files(first)
        assert files["groups/edge.yaml"] == (src / "groups/edge.yaml").read_bytes()
        listing_a, listing_b = repo.list_files(first), repo.list_files(second)
        assert changed_paths(listing_a, listing_b) == []  # not a repo file (.yaml): never listed
        info = repo.commit_info(second)
        assert info.message == "tweak" and info.author == "Test Author <author@example.com>"
        assert info.committed_at.tzinfo is not None
        with pytest.raises(GitNotFound, match="ref 'nope' not found"):
            repo.resolve("nope")
        with pytest.raises(GitNotFound, match="commit"):
            repo.resolve("deadbeefdeadbeef")
        with pytest.raises(GitNotFound):
            repo.resolve("main\nHEAD")  # one ref per line on git's stdin: never smuggle a second


def test_subdir_and_missing_subdir(tmp_path: Path) -> None:
    src = init_repo(tmp_path / "src", subdir="deploy/otel")
    with mirror(src, tmp_path / "cache") as repo:
        sha = repo.resolve("main")
        files = repo.read_files(sha, "deploy/otel")
        assert "groups/edge.yaml" in files and "README.md" not in files
        with pytest.raises(GitNotFound, match="path 'nope' not found"):
            repo.list_files(sha, "nope")
        with pytest.raises(GitNotFound, match="not a directory"):
            repo.list_files(sha, "README.md")


def test_merge_force_push_and_deleted_branch(tmp_path: Path) -> None:
    src = init_repo(tmp_path / "src")
    cache = tmp_path / "cache"
    git(src, "checkout", "-q", "-b", "feature")
    feature = commit(src, "feature work", **{"pipelines/notes.yaml": "feature\n"})
    git(src, "checkout", "-q", "main")
    commit(src, "main work", **{"groups/notes.yaml": "main\n"})
    git(src, "merge", "-q", "--no-ff", "-m", "merge feature", "feature")
    merged = head(src)
    with mirror(src, cache) as repo:
        assert repo.resolve("feature") == feature
        assert repo.resolve("main") == merged
        files = repo.read_files(merged)
        assert files["pipelines/notes.yaml"] == b"feature\n" and files["groups/notes.yaml"] == b"main\n"

    # force-push: main is rewritten to a commit that is not a descendant of the old one
    git(src, "reset", "-q", "--hard", "HEAD~1")
    rewritten = commit(src, "rewritten history", docs__other="x\n")
    git(src, "branch", "-D", "-q", "feature")
    with mirror(src, cache) as repo:  # same cache dir, reused
        assert repo.resolve("main") == rewritten
        with pytest.raises(GitNotFound, match="'feature' not found"):
            repo.resolve("feature")  # pruned


def _ls_tree(repo: Path, sha: str, subdir: str = "") -> dict[str, str]:
    """The oracle: what `git ls-tree -r` lists (regular files; no symlinks, no submodules)."""
    spec = f"{sha}:{subdir}" if subdir else sha
    out = subprocess.run(
        ["git", "ls-tree", "-r", "-z", "--full-tree", spec],
        cwd=repo,
        env=clean_env(),
        capture_output=True,
        check=True,
    ).stdout
    listing: dict[str, str] = {}
    for entry in out.split(b"\0"):
        if entry:
            meta, _, path = entry.partition(b"\t")
            mode, kind, blob = meta.split(b" ")
            if kind == b"blob" and mode != b"120000":
                listing[path.decode("utf-8", errors="surrogateescape")] = blob.decode()
    return listing


def _repo_files(repo: Path, sha: str, subdir: str = "") -> dict[str, str]:
    """The oracle for list_files: `git ls-tree -r` narrowed to the files the compiler reads."""
    return {p: b for p, b in _ls_tree(repo, sha, subdir).items() if is_repo_file(p)}


def test_list_files_equals_ls_tree(tmp_path: Path) -> None:
    """Trees read and parsed through the cat-file process list exactly the repo files `git ls-tree
    -r` does, in the same order, for both commits of a change (which share most subtrees)."""
    src = init_repo(tmp_path / "src", subdir="cfg")
    base = head(src)
    git(src, "rm", "-q", "cfg/groups/edge.yaml")
    (src / "cfg" / "pipelines" / "app-logs.yaml").write_text("changed\n")
    (src / "cfg" / "pipelines" / "new.yaml").write_text("new\n")
    (src / "cfg" / "new.yaml").write_text("not in a kind directory\n")
    (src / "outside.txt").write_text("outside\n")
    (src / "cfg" / "link.yaml").symlink_to("pipelines/new.yaml")
    (src / "cfg" / "pipelines" / "link.yaml").symlink_to("new.yaml")
    odd = src / "cfg" / "pipelines" / "deep" / "a b" / "tab\there" / "new\nline é.yaml"
    odd.parent.mkdir(parents=True)
    odd.write_text("odd\n")
    tool = src / "cfg" / "pipelines" / "tool.sh"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    git(src, "add", "-A")
    # a submodule entry (a commit in the tree), without a .gitmodules: ls-tree lists it as a commit
    git(src, "update-index", "--add", "--cacheinfo", f"160000,{base},cfg/pipelines/vendored")
    new = commit(src, "add, remove, modify, symlink, submodule, odd names")
    with GitRepo.open(src) as repo:
        for subdir in ("", "cfg", "cfg/pipelines"):
            for sha in (new, base, new):
                listing = repo.list_files(sha, subdir)
                assert list(listing.items()) == list(_repo_files(src, sha, subdir).items())
        assert repo.list_files(new, "") == {}  # the config lives in cfg/
        listing = repo.list_files(new, "cfg")
        assert "pipelines/link.yaml" not in listing and "pipelines/vendored" not in listing
        assert "pipelines/tool.sh" not in listing and "new.yaml" not in listing
        assert "pipelines/deep/a b/tab\there/new\nline é.yaml" in listing
        assert repo.list_links(new, "cfg") == ["pipelines/link.yaml"]  # cfg/link.yaml: not a repo path
        listing["extra"] = "x"  # a caller's copy: the kept listing is unchanged
        assert "extra" not in repo.list_files(new, "cfg")
        assert changed_paths(repo.list_files(base, "cfg"), repo.list_files(new, "cfg")) == sorted(
            set(_repo_files(src, base, "cfg")) ^ set(_repo_files(src, new, "cfg"))
            | {"pipelines/app-logs.yaml"}
        )
        with pytest.raises(GitNotFound, match="not a directory"):
            repo.list_files(new, "cfg/link.yaml")
        with pytest.raises(GitNotFound, match="not found"):
            repo.list_files(new, "cfg/\nHEAD")


def _child_processes() -> list[str]:
    """Our child processes (zombies included), as `pid (comm) state`."""
    me = os.getpid()
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)
        except OSError:  # ended while we looked
            continue
        rest = fields[1].split()
        if int(rest[1]) == me:
            found.append(f"{fields[0]}) {rest[0]}")
    return found


def test_one_cat_file_process_reaped_on_close(tmp_path: Path) -> None:
    src = init_repo(tmp_path / "src")
    before = _child_processes()
    with GitRepo.open(src) as repo:
        sha = repo.resolve("main")
        repo.read_files(sha)
        assert any("(git)" in p for p in _child_processes())  # the reader, kept between calls
    assert _child_processes() == before  # ended and waited for: no process, no zombie left
    with GitRepo.open(src) as repo, pytest.raises(GitNotFound, match="not found"):
        repo.list_files("0" * 40)


def test_unreachable_and_not_a_repo(tmp_path: Path) -> None:
    with pytest.raises(GitNotFound):
        mirror(tmp_path / "missing", tmp_path / "cache")
    with pytest.raises(GitUnavailable, match=r"127\.0\.0\.1"):
        mirror("http://127.0.0.1:9/nothing.git", tmp_path / "cache")
    with pytest.raises(GitNotFound, match="not inside a Git repository"):
        GitRepo.open(tmp_path)


def test_inherited_git_variables_do_not_leak(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = init_repo(tmp_path / "src")
    decoy = init_repo(tmp_path / "decoy", from_dir=None)
    # Each of these would redirect or break git if it reached our git calls.
    monkeypatch.setenv("GIT_DIR", str(decoy / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(decoy))
    monkeypatch.setenv("GIT_INDEX_FILE", str(tmp_path / "nope" / "index"))
    monkeypatch.setenv("GIT_OBJECT_DIRECTORY", str(decoy / ".git" / "objects"))
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", "'core.bare=notabool'")
    with mirror(src, tmp_path / "cache") as repo:
        sha = repo.resolve("main")
        assert sha == head(src)
        assert "groups/edge.yaml" in repo.read_files(sha)
    with GitRepo.open(src) as local:
        assert local.resolve("HEAD") == head(src)


# --- credentials: a real HTTP server with Basic auth serving the repo over Git's dumb protocol ---------


class _AuthHandler(SimpleHTTPRequestHandler):
    expected = ""
    seen: list[str] = []

    def do_GET(self) -> None:
        got = self.headers.get("Authorization", "")
        self.seen.append(got)
        if got != self.expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="cfg"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def auth_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    src = init_repo(tmp_path / "src")
    served = tmp_path / "www"
    served.mkdir()
    git(served, "clone", "-q", "--bare", str(src), "cfg.git")
    git(served / "cfg.git", "update-server-info")
    handler = type("H", (_AuthHandler,), {"seen": []})
    handler.expected = "Basic " + base64.b64encode(b"robot:hunter2").decode()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/cfg.git", src
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_credentials_from_environment(auth_server: tuple[str, Path], tmp_path: Path) -> None:
    url, src = auth_server
    env = {"CTRLTOWER_GIT_USERNAME": "robot", "CTRLTOWER_GIT_PASSWORD": "hunter2"}
    with mirror(url, tmp_path / "cache", env) as repo:
        assert repo.resolve("main") == head(src)
    # the cache repo's config never holds the secret
    config = next((tmp_path / "cache" / "git").glob("*.git")) / "config"
    assert "hunter2" not in config.read_text()


def test_credentials_in_url_are_used_but_never_shown(auth_server: tuple[str, Path], tmp_path: Path) -> None:
    url, src = auth_server
    with_creds = url.replace("http://", "http://robot:hunter2@")
    with mirror(with_creds, tmp_path / "cache") as repo:
        assert repo.resolve("main") == head(src)
        assert "hunter2" not in repo.source
    bad = url.replace("http://", "http://robot:wrong-pw@")
    with pytest.raises(GitRefused) as info:
        mirror(bad, tmp_path / "cache2")
    assert "wrong-pw" not in str(info.value) and "robot:" not in str(info.value)


def test_token_variable_and_refused(auth_server: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = auth_server
    with pytest.raises(GitRefused, match=r"[Aa]uthentication failed"):
        mirror(url, tmp_path / "cache", {"CTRLTOWER_GIT_TOKEN": "not-it"})
    edit_env = {"CTRLTOWER_GIT_USERNAME": "robot", "CTRLTOWER_GIT_TOKEN": "hunter2"}
    with mirror(url, tmp_path / "cache", edit_env) as repo:
        assert repo.resolve("main")


def test_edit_helper_roundtrip(tmp_path: Path) -> None:
    src = init_repo(tmp_path / "src")
    edit(src, "groups/edge.yaml", "priority: 10", "priority: 11")
    sha = commit(src, "bump priority")
    with GitRepo.open(src / "groups") as repo:  # a directory inside the repo works too
        assert b"priority: 11" in repo.read_files(sha)["groups/edge.yaml"]
