"""Git access for the reconciler: the only module of ctrltower that uses GitPython.

Two ways in: `GitRepo.open(path)` reads a local repository as it is (the pull-request CI checkout
`plan` runs in), and `GitRepo.mirror(source, cache_dir)` fetches a local path or URL (https, ssh,
file) into a bare cache repository reused between runs (`reconcile`). Files are read straight from
the object database at a commit (tree blobs, no checkout), which also gives each file's blob SHA for
cheap change detection. Refs, trees and blobs all go through one `git cat-file --batch-command`
process per GitRepo (reconciler/objects.py), started on first use and ended by `close`.

Only what the compiler reads is touched (compiler/files.py): `ctrltower.yaml` and the kind
directories are listed, every blob's size is asked from git before its content, and a file over the
loader's limit or a symbolic link there is never read but reported (`refusals`: CT102, CT109).

Hygiene: credentials come from the environment (`CTRLTOWER_GIT_USERNAME`, `CTRLTOWER_GIT_PASSWORD`
or `CTRLTOWER_GIT_TOKEN`, or userinfo in the URL, which is stripped before git sees the URL) and
reach git only through a GIT_ASKPASS helper that reads them from its environment; they never appear
in a command line, a URL we print or report, or an error message. Inherited `GIT_*` variables
(GIT_DIR, GIT_INDEX_FILE, GIT_CONFIG_PARAMETERS, ...) are removed from every git call.

A source is data, never an option or a command: `Source.parse` refuses a leading `-` and the
`transport::address` forms, every URL or path is passed after `--`, and git may use only the
source's own transport (GIT_ALLOW_PROTOCOL), so `ext::` never runs and `file` only for a local path.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import git
from git.exc import GitCommandError, InvalidGitRepositoryError, NoSuchPathError

from compiler.files import (
    CONFIG_DIRS,
    MAX_FILE_BYTES,
    MAX_REPO_BYTES,
    MAX_REPO_FILES,
    SETTINGS_FILES,
    in_config_dirs,
    is_repo_file,
    repo_too_large_diagnostic,
    symlink_diagnostic,
    too_large_diagnostic,
)
from reconciler.errors import GitError, GitNotFound, GitRefused, GitUnavailable
from reconciler.objects import DIR, FILE, LINK, MAX_TREE_BYTES, GitObject, ObjectReader, ReaderDied, Trees
from schemas.diagnostics import Diagnostic

USERNAME_ENV = "CTRLTOWER_GIT_USERNAME"
PASSWORD_ENV = "CTRLTOWER_GIT_PASSWORD"
TOKEN_ENV = "CTRLTOWER_GIT_TOKEN"
SSH_COMMAND_ENV = "CTRLTOWER_GIT_SSH_COMMAND"

# The askpass helper: git runs it with the prompt as $1; it answers from its own environment, so
# the secret never appears in argv, in a file, or in .git/config.
_ASKPASS = """#!/bin/sh
# ctrltower: answers git's credential prompts from the environment (never stores them).
case "$1" in
  Username*) printf '%s\\n' "${CTRLTOWER_GIT_USERNAME:-x-access-token}" ;;
  *) printf '%s\\n' "${CTRLTOWER_GIT_PASSWORD:-$CTRLTOWER_GIT_TOKEN}" ;;
esac
"""

# The transport git may use for a source, by URL scheme. Git is told to allow only the source's own
# (GIT_ALLOW_PROTOCOL), so neither a remote-helper address (`ext::sh -c ...` runs a command, `fd::`)
# nor a redirect or submodule can switch to another transport; `file` only for a local source.
_PROTOCOLS = {
    "https": "https",
    "http": "http",
    "ssh": "ssh",
    "git+ssh": "ssh",
    "ssh+git": "ssh",
    "git": "git",
    "file": "file",
}
_HELPER_ADDRESS = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*::")
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")
MAX_COMMIT_BYTES = 1024 * 1024  # a commit object: headers and message (the server keeps 64 KiB of it)
_HEX_SHA = re.compile(r"^[0-9a-f]{7,64}$")


def redact(text: str) -> str:
    """Remove userinfo from every URL in `text` (error messages, sources we report)."""
    return _URL_USERINFO.sub(r"\g<scheme>", text)


class BadSource(ValueError):
    """A source git must never be given: it would be read as an option, or names a transport that
    runs commands (`ext::`) or that ctrltower does not speak. A usage error, caught before git runs."""


@dataclass(frozen=True)
class Source:
    """Where the config repo lives: a URL or absolute local path without credentials, and the one
    transport git may use to reach it (https, http, ssh, git, or file for a local path)."""

    url: str
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    protocol: str = "file"

    @classmethod
    def parse(cls, raw: str) -> Source:
        """Split credentials out of a URL; resolve local paths (plain or relative) to absolute.

        Raises BadSource for what git could misread: a leading `-` (`--upload-pack=CMD` would run
        CMD), a `transport::address` remote-helper form, or a URL scheme other than those above.
        """
        if raw.startswith("-"):
            raise BadSource("a source may not start with '-' (git would read it as an option)")
        if _HELPER_ADDRESS.match(raw):
            raise BadSource(
                "'transport::address' sources (ext::, fd::, ...) are refused: they run commands or helpers"
            )
        if "://" in raw:
            parts = urlsplit(raw)
            protocol = _PROTOCOLS.get(parts.scheme.lower())
            if protocol is None:
                raise BadSource(
                    f"unsupported URL scheme {parts.scheme!r}: use https, http, ssh, git or file, "
                    "or a local path"
                )
            if parts.username is None and parts.password is None:
                return cls(url=raw, protocol=protocol)
            host = parts.hostname or ""
            if parts.port is not None:
                host = f"{host}:{parts.port}"
            clean = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
            return cls(url=clean, username=parts.username, password=parts.password, protocol=protocol)
        if re.match(r"^[^/\s]+@[^/:\s]+:", raw):  # scp-like ssh address: user@host:path
            return cls(url=raw, protocol="ssh")
        return cls(url=str(Path(raw).expanduser().resolve()), protocol="file")

    @property
    def display(self) -> str:
        """The source as printed and reported: never with credentials."""
        return redact(self.url)

    @property
    def cache_key(self) -> str:
        return sha256(self.url.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    message: str
    author: str
    committed_at: datetime


def default_cache_dir(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CACHE_HOME") or str(Path(environ.get("HOME", "~")).expanduser() / ".cache")
    return Path(base) / "ctrltower"


class _IsolatedGit(git.Git):
    """GitPython's command runner, minus every inherited GIT_* variable we did not set ourselves.

    GitPython always starts from a copy of os.environ and can only add to it, so the variables to
    drop are removed with `env -u` in front of the command.
    """

    def execute(self, command: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(command, list | tuple):
            ours = self.environment()
            leaked = sorted(k for k in os.environ if k.startswith("GIT_") and k not in ours)
            if leaked:
                unset = [arg for name in leaked for arg in ("-u", name)]
                command = ["env", *unset, *command]
        return super().execute(command, *args, **kwargs)


class _Repo(git.Repo):
    GitCommandWrapperType = _IsolatedGit


def _classify(exc: GitCommandError, what: str) -> GitError:
    stderr = redact(str(exc.stderr or "")).strip()
    if stderr.startswith("stderr: '") and stderr.endswith("'"):  # GitPython's framing
        stderr = stderr[len("stderr: '") : -1]
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    detail = "; ".join(lines[-3:]) or f"git exited with status {exc.status}"
    lowered = stderr.lower()
    message = f"{what}: {detail}"
    if any(
        s in lowered
        for s in ("authentication failed", "could not read username", "could not read password", "403", "401")
    ) or ("permission denied" in lowered and "publickey" in lowered):
        return GitRefused(message)
    if any(
        s in lowered
        for s in (
            "does not appear to be a git repository",
            "repository not found",
            "not found",
            "couldn't find remote ref",
            "not our ref",
        )
    ):
        return GitNotFound(message)
    return GitUnavailable(message)


class GitRepo:
    """Read-only view of one repository: resolve refs, list and read files at a commit."""

    def __init__(self, repo: _Repo, *, source: str) -> None:
        self._repo = repo
        self.source = source  # display form, safe to print
        self._blobs: dict[str, bytes] = {}
        self._sizes: dict[str, int] = {}
        self._read_bytes = 0
        self._objects = ObjectReader(self._start_cat_file)
        self._trees = Trees(self._objects)

    # --- opening -----------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path) -> GitRepo:
        """A local repository (or a directory inside one), read in place."""
        try:
            repo = _Repo(str(path), search_parent_directories=True)
        except (InvalidGitRepositoryError, NoSuchPathError) as exc:
            raise GitNotFound(f"{path} is not inside a Git repository") from exc
        repo.git.update_environment(GIT_TERMINAL_PROMPT="0")
        return cls(repo, source=str(Path(path).resolve()))

    @classmethod
    def mirror(
        cls,
        source: Source,
        cache_dir: Path,
        *,
        environ: Mapping[str, str],
        timeout_s: float = 120.0,
        fetch: bool = True,
    ) -> GitRepo:
        """Fetch every branch and tag of `source` into a bare repo under `cache_dir` (created once)."""
        git_dir = cache_dir / "git" / f"{source.cache_key}.git"
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            askpass = _write_askpass(cache_dir)
            if not (git_dir / "HEAD").exists():
                # not Repo.init: that runs git with the inherited environment (GIT_DIR would win)
                _IsolatedGit().execute(["git", "init", "--quiet", "--bare", "--", str(git_dir)])
            repo = _Repo(str(git_dir))
        except (OSError, InvalidGitRepositoryError, GitCommandError) as exc:
            raise GitUnavailable(f"cannot use the Git cache at {git_dir}: {exc}") from exc
        repo.git.update_environment(**_git_env(source, askpass, environ))
        mirror = cls(repo, source=source.display)
        if fetch:
            mirror.fetch(source, timeout_s=timeout_s)
        return mirror

    def fetch(self, source: Source, *, timeout_s: float = 120.0) -> None:
        """Fetch branches and tags; forced updates are taken, deleted refs are pruned."""
        self._objects.close()  # a reader started before the fetch could answer with the old refs
        try:
            self._repo.git.execute(
                [
                    "git",
                    "fetch",
                    "--quiet",
                    "--prune",
                    "--no-tags",
                    "--no-write-fetch-head",
                    "--",  # whatever the URL says, it is never an option
                    source.url,
                    "+refs/heads/*:refs/heads/*",
                    "+refs/tags/*:refs/tags/*",
                ],
                kill_after_timeout=timeout_s,
            )
        except GitCommandError as exc:
            raise _classify(exc, f"git fetch from {source.display} failed") from exc

    def close(self) -> None:
        try:
            self._objects.close()
        finally:
            self._repo.close()

    def __enter__(self) -> GitRepo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- refs and commits ------------------------------------------------------------------------------

    def resolve(self, ref: str) -> str:
        """A branch, tag, full ref name or (abbreviated) SHA -> the commit's full SHA."""
        return self.resolve_many([ref])[0]

    def resolve_many(self, refs: list[str]) -> list[str]:
        """Resolve several refs in one round trip to the cat-file process; a branch wins over a tag
        of the same name, then any other name git understands (a SHA, HEAD~1, origin/main)."""
        lines: list[str] = []
        for ref in refs:
            if not ref or any(c.isspace() or ord(c) < 32 for c in ref):
                raise GitNotFound(f"ref {ref!r} not found in {self.source}")
            names = [ref] if ref.startswith("refs/") else [f"refs/heads/{ref}", f"refs/tags/{ref}", ref]
            lines.extend(f"{name}^{{commit}}" for name in names)
        answers = self._info(lines)  # sha and type only: a commit's body is not read to resolve it
        out: list[str] = []
        pos = 0
        for ref in refs:
            count = 1 if ref.startswith("refs/") else 3
            found = [a[0] for a in answers[pos : pos + count] if a is not None and a[1] == "commit"]
            pos += count
            if not found:
                kind = "commit" if _HEX_SHA.match(ref) else "ref"
                raise GitNotFound(f"{kind} {ref!r} not found in {self.source}")
            out.append(found[0])
        return out

    def _start_cat_file(self) -> subprocess.Popen[bytes]:
        command = ["git", "cat-file", "--batch-command"]  # `info` and `contents` on one process
        try:
            wrapper = self._repo.git.execute(command, istream=subprocess.PIPE, as_process=True)
        except GitCommandError as exc:
            raise _classify(exc, f"reading from {self.source} failed") from exc
        proc = wrapper.proc
        assert proc is not None
        wrapper.proc = None  # ours to end and reap (ObjectReader.close), not GitPython's finaliser's
        return proc

    def _read(self, names: list[str]) -> list[GitObject | None]:
        try:
            return self._objects.read(names)
        except ReaderDied as exc:
            failed = GitCommandError(["git", "cat-file", "--batch-command"], exc.status or 128, exc.stderr)
            raise _classify(failed, f"reading from {self.source} failed") from exc

    def first_parent_depth(self, sha: str) -> int:
        """How many commits the first-parent chain up to `sha` has: the revision sequence a signed
        statement carries (it grows with every merge to the branch, whatever the server's database)."""
        try:
            out = self._repo.git.execute(["git", "rev-list", "--count", "--first-parent", sha])
        except GitCommandError as exc:
            raise _classify(exc, f"counting the history of {sha[:12]} failed") from exc
        return int(str(out).strip())

    def commit_info(self, sha: str) -> CommitInfo:
        """Message, author and date of a commit; a commit object over MAX_COMMIT_BYTES (a message of
        megabytes is a bomb, not a message) is refused by its size before it is read."""
        (header,) = self._info([sha])
        if header is not None and header[2] > MAX_COMMIT_BYTES:
            # retry later, not permanent: the loop must pick up the next (fixed) commit
            raise GitUnavailable(
                f"commit {sha[:12]} is {header[2]:,} bytes (over {MAX_COMMIT_BYTES:,}): not read"
            )
        commit = self._repo.commit(sha)
        message = commit.message if isinstance(commit.message, str) else commit.message.decode()
        return CommitInfo(
            sha=commit.hexsha,
            message=message.strip(),
            author=f"{commit.author.name} <{commit.author.email}>",
            committed_at=commit.committed_datetime.astimezone(UTC),
        )

    # --- files -------------------------------------------------------------------------------------------

    def list_files(self, sha: str, subdir: str = "") -> dict[str, str]:
        """{path relative to subdir: blob SHA} of the repo files at the commit: `ctrltower.yaml` and
        the YAML files below the kind directories (compiler/files.py), regular files only, in `git
        ls-tree -r` order, without reading any blob. Other directories are never read: a tree of a
        million entries beside the config costs nothing.

        Trees are read through the cat-file process and kept by SHA: listing a second commit (the
        base of a plan) reads and parses only the trees the two commits do not share.
        """
        out: dict[str, str] = {}
        for kind, name, entry in self._root_entries(sha, subdir):
            if kind == FILE and name in SETTINGS_FILES:
                out[name] = entry
            elif kind == DIR and name in CONFIG_DIRS:
                below = self._walk(sha, self._trees.files, entry)
                out.update((f"{name}/{p}", b) for p, b in below.items() if is_repo_file(f"{name}/{p}"))
        return out

    def list_links(self, sha: str, subdir: str = "") -> list[str]:
        """Paths (relative to subdir) of the symbolic links where repo files would be: a settings
        file or a kind directory that is a link, or any link below a kind directory. Never read."""
        out: list[str] = []
        for kind, name, entry in self._root_entries(sha, subdir):
            if kind == LINK and in_config_dirs(name):
                out.append(name)
            elif kind == DIR and name in CONFIG_DIRS:
                below = self._walk(sha, self._trees.links, entry)
                out.extend(f"{name}/{p}" for p in below)
        return sorted(out)

    def _root_entries(self, sha: str, subdir: str) -> list[tuple[int, str, str]]:
        prefix = subdir.strip("/")
        if prefix and ("\n" in prefix or "\r" in prefix):
            raise GitNotFound(f"path {prefix!r} not found at commit {sha[:12]}")
        name = f"{sha}:{prefix}" if prefix else f"{sha}^{{tree}}"
        (header,) = self._info([name])
        if header is not None and header[1] == "tree" and header[2] > MAX_TREE_BYTES:  # before reading
            raise GitUnavailable(
                f"listing commit {sha[:12]} failed: its tree is {header[2]:,} bytes (over {MAX_TREE_BYTES:,})"
            )
        (root,) = self._read([name])
        if root is None:
            if prefix:
                raise GitNotFound(f"path {prefix!r} not found at commit {sha[:12]}")
            raise GitNotFound(f"commit {sha[:12]} not found in {self.source}")
        if root.type != "tree":
            raise GitNotFound(f"path {prefix!r} at commit {sha[:12]} is not a directory")
        try:
            self._trees.add(root)
        except ValueError as exc:
            raise GitUnavailable(f"listing commit {sha[:12]} in {self.source} failed: {exc}") from exc
        return self._trees.entries(root.sha)

    def _walk(self, sha: str, listing: Callable[[str], dict[str, str]], tree: str) -> dict[str, str]:
        try:
            return listing(tree)
        except ReaderDied as exc:
            failed = GitCommandError(["git", "cat-file", "--batch-command"], exc.status or 128, exc.stderr)
            raise _classify(failed, f"listing commit {sha[:12]} failed") from exc
        except (LookupError, ValueError) as exc:
            raise GitUnavailable(f"listing commit {sha[:12]} in {self.source} failed: {exc}") from exc
        except RecursionError as exc:
            raise GitUnavailable(f"commit {sha[:12]} nests directories too deeply to list") from exc

    def sizes(self, shas: Iterable[str]) -> dict[str, int]:
        """{blob SHA: size in bytes} from git's object headers (`info`): no content is read."""
        missing = sorted({sha for sha in shas if sha not in self._sizes})
        if missing:
            for sha, header in zip(missing, self._info(missing), strict=True):
                if header is None or header[1] != "blob":
                    raise GitNotFound(f"object {sha} missing from {self.source}")
                self._sizes[sha] = header[2]
        return self._sizes

    def oversized(self, listing: Mapping[str, str]) -> dict[str, int]:
        """{path: size} of the listed files larger than the loader's limit: never read."""
        sizes = self.sizes(listing.values())
        return {p: sizes[sha] for p, sha in listing.items() if sizes[sha] > MAX_FILE_BYTES}

    def refusals(self, sha: str, listing: Mapping[str, str], subdir: str = "") -> list[Diagnostic]:
        """What the compiler must be told about the files read_blobs will not give it: symbolic
        links (CT109), files over the size limit (CT102), and the files past MAX_REPO_BYTES in all
        (CT114, once, at the first file over; read_blobs then reads none of the listing)."""
        found = [symlink_diagnostic(p) for p in self.list_links(sha, subdir)]
        found += [too_large_diagnostic(p, n) for p, n in sorted(self.oversized(listing).items())]
        over = self._over_total(listing)
        if over is not None:
            found.append(repo_too_large_diagnostic(*over))
        return found

    def readable(self, listing: Mapping[str, str]) -> Mapping[str, str]:
        """The listing, or nothing when its files pass MAX_REPO_BYTES or MAX_REPO_FILES (CT114)."""
        return {} if self._over_total(listing) is not None else listing

    def _over_total(self, listing: Mapping[str, str]) -> tuple[str, int, int] | None:
        """(first path, in path order, at which the readable files pass MAX_REPO_BYTES or
        MAX_REPO_FILES, the bytes and the files up to it)."""
        sizes = self.sizes(listing.values())
        total = count = 0
        for path in sorted(listing):
            size = sizes[listing[path]]
            if size <= MAX_FILE_BYTES:
                total += size
                count += 1
                if total > MAX_REPO_BYTES or count > MAX_REPO_FILES:
                    return path, total, count
        return None

    def read_blobs(self, listing: Mapping[str, str]) -> dict[str, bytes]:
        """Contents for a listing from list_files, in one `git cat-file` round trip; blobs already
        read (same SHA, e.g. the files base and head share) are not read again. A file over the
        size limit is left out unread (`refusals` reports it)."""
        listing = self.readable(listing)
        self.prefetch(listing.values())
        return {path: self._blobs[sha] for path, sha in listing.items() if sha in self._blobs}

    def prefetch(self, shas: Iterable[str]) -> None:
        """Read the blobs not read yet and within the size limit (sizes asked first, in one round
        trip, then the contents in another)."""
        missing = sorted({sha for sha in shas if sha not in self._blobs})
        if missing:
            sizes = self.sizes(missing)
            wanted = [sha for sha in missing if sizes[sha] <= MAX_FILE_BYTES]
            # base and head of a plan each pass the total check: never more than both together
            if self._read_bytes + sum(sizes[sha] for sha in wanted) > 2 * MAX_REPO_BYTES:
                return
            self._read_bytes += sum(sizes[sha] for sha in wanted)
            if wanted:
                self._blobs.update(self._cat_blobs(wanted))

    def _info(self, names: list[str]) -> list[tuple[str, str, int] | None]:
        try:
            return self._objects.info(names)
        except ReaderDied as exc:
            failed = GitCommandError(["git", "cat-file", "--batch-command"], exc.status or 128, exc.stderr)
            raise _classify(failed, f"reading from {self.source} failed") from exc

    def _cat_blobs(self, shas: list[str]) -> dict[str, bytes]:
        blobs: dict[str, bytes] = {}
        for sha, obj in zip(shas, self._read(shas), strict=True):
            if obj is None or obj.type != "blob":
                raise GitNotFound(f"object {sha} missing from {self.source}")
            blobs[sha] = obj.data
        return blobs

    def grep_paths(
        self, shas: list[str], needles: list[str], subdir: str = "", *, skip: Iterable[str] = ()
    ) -> dict[str, set[str]]:
        """{sha: paths (relative to subdir) of files containing any of the fixed strings}, for several
        commits in one `git grep -F` over the object database (no checkout, no blob read by us).

        Git searches only the settings files and the kind directories, minus `skip` (the files
        over the size limit, which git would otherwise read in full)."""
        found: dict[str, set[str]] = {sha: set() for sha in shas}
        if not needles or not shas:
            return found
        prefix = subdir.strip("/")
        # one thread: for a few MB of small blobs, starting threads costs more than it saves
        # fixed strings: git's regex engine is twenty times slower with bounded alternatives
        args = ["git", "grep", "-l", "-z", "-F", "--threads=1", "--no-color", "--no-recurse-submodules"]
        for needle in needles:
            args += ["-e", needle]
        base = f"{prefix}/" if prefix else ""
        where = [f":(literal){base}{name}" for name in SETTINGS_FILES]
        where += [f":(literal){base}{name}/" for name in CONFIG_DIRS]
        where += [f":(exclude,literal){base}{path}" for path in sorted(skip)]
        args += [*shas, "--", *where]
        try:
            out = self._repo.git.execute(
                args, stdout_as_string=False, with_extended_output=True, with_exceptions=False
            )
        except GitCommandError as exc:  # pragma: no cover - with_exceptions=False
            raise _classify(exc, f"searching {self.source} failed") from exc
        status, stdout, stderr = out
        if status not in (0, 1):  # 1: nothing matched
            raise GitError(f"git grep in {self.source} failed: {redact(str(stderr)).strip()}")
        cut = len(prefix) + 1 if prefix else 0
        for entry in bytes(stdout).split(b"\0"):
            if not entry:
                continue
            sha, _, path = entry.decode("utf-8", errors="surrogateescape").partition(":")
            if sha in found:
                found[sha].add(path[cut:])
        return found

    def read_files(self, sha: str, subdir: str = "") -> dict[str, bytes]:
        return self.read_blobs(self.list_files(sha, subdir))


def changed_paths(base: Mapping[str, str], head: Mapping[str, str]) -> list[str]:
    """Paths added, removed or modified between two listings (by blob SHA), sorted."""
    return sorted(p for p in set(base) | set(head) if base.get(p) != head.get(p))


def _write_askpass(cache_dir: Path) -> Path:
    path = cache_dir / "askpass.sh"
    if not path.exists() or path.read_text() != _ASKPASS:
        tmp = cache_dir / f".askpass.{os.getpid()}.tmp"
        tmp.write_text(_ASKPASS)
        tmp.chmod(0o700)
        tmp.replace(path)
    return path


def _git_env(source: Source, askpass: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """The only GIT_* variables our git calls see, plus the credentials for the askpass helper."""
    env = {
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": str(askpass),
        "GIT_SSH_COMMAND": environ.get(SSH_COMMAND_ENV, "ssh -o BatchMode=yes"),
        # only the source's own transport: never ext:: (runs commands), fd::, or file for a URL
        "GIT_ALLOW_PROTOCOL": source.protocol,
    }
    username = source.username or environ.get(USERNAME_ENV)
    password = source.password or environ.get(PASSWORD_ENV) or environ.get(TOKEN_ENV)
    if username:
        env[USERNAME_ENV] = username
    if password:
        env[PASSWORD_ENV] = password
    return env
