"""Reading Git objects through one long-lived `git cat-file --batch-command` process.

`reconciler/git.py` starts the process (through GitPython's isolated runner) and hands it to an
`ObjectReader`; every ref it resolves, tree it lists and blob it reads is then one request line
on that process's stdin instead of one process start per call (a start costs ~3 ms of CPU, more
than reading the 40 blobs or parsing the 1,000-entry tree a plan needs).

`info` asks for an object's type and size without its content (`info <name>`), so a blob can be
refused by its size before a byte of it is read; `read` asks for the content (`contents <name>`).

`parse_tree` decodes a raw tree object; `Trees` lists every file below a tree the way `git ls-tree
-r` does (regular files only: no submodules; symlinks separately, in `links`), parsing each tree
object once, so two commits that share subtrees (base and head of a change) pay for the shared
parts only once.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# Requests written before their answers are read, in bytes: at most one page, the smallest pipe
# buffer Linux gives. Git reads requests while it still can write answers, so as long as one batch
# of requests fits in the (empty) pipe, neither side can wait on the other forever.
_BATCH_BYTES = 4096

FILE, DIR, OTHER, LINK = 0, 1, 2, 3
# One directory of a config repo: ~300,000 entries. A bigger tree is a bomb, never a config.
MAX_TREE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class GitObject:
    sha: str
    type: str  # blob, tree, commit, tag
    data: bytes


class ReaderDied(Exception):
    """The cat-file process ended or stopped answering; `stderr` says why (git's own words)."""

    def __init__(self, status: int | None, stderr: str) -> None:
        super().__init__(stderr or f"git exited with status {status}")
        self.status = status
        self.stderr = stderr


class ObjectReader:
    """Objects by name (a SHA, `ref^{commit}`, `sha:path`) from one `git cat-file --batch`.

    The process is started on first use (`start` returns it with stdin, stdout and stderr piped)
    and ended by `close`, which waits for it, so its CPU time is accounted to us like any other
    git call's.
    """

    def __init__(self, start: Callable[[], subprocess.Popen[bytes]]) -> None:
        self._start = start
        self._proc: subprocess.Popen[bytes] | None = None

    def read(self, names: Sequence[str]) -> list[GitObject | None]:
        """One object per name, in order; None where git answers `missing` or `ambiguous`."""
        found: list[GitObject | None] = []
        for header, data in self._ask("contents", names, with_data=True):
            found.append(None if header is None else GitObject(header[0], header[1], data))
        return found

    def info(self, names: Sequence[str]) -> list[tuple[str, str, int] | None]:
        """(sha, type, size) per name, in order, without reading any content; None where missing."""
        return [header for header, _ in self._ask("info", names, with_data=False)]

    def _ask(
        self, command: str, names: Sequence[str], *, with_data: bool
    ) -> list[tuple[tuple[str, str, int] | None, bytes]]:
        for name in names:
            if "\n" in name or "\r" in name or not name:
                raise ValueError(f"object name {name!r} cannot be sent on one line")
        proc = self._process()
        assert proc.stdin is not None and proc.stdout is not None
        answers: list[tuple[tuple[str, str, int] | None, bytes]] = []
        prefix = command.encode() + b" "
        pos = 0
        while pos < len(names):
            batch: list[bytes] = []
            size = 0
            while pos < len(names):
                line = prefix + names[pos].encode("utf-8", errors="surrogateescape") + b"\n"
                if batch and size + len(line) > _BATCH_BYTES:
                    break
                batch.append(line)
                size += len(line)
                pos += 1
            try:
                proc.stdin.write(b"".join(batch))
                proc.stdin.flush()
            except OSError:
                self._died()
            for _ in batch:
                header = proc.stdout.readline()
                if not header.endswith(b"\n"):
                    self._died()
                # "<sha> <type> <size>", or "<name> missing" / "<name> ambiguous" (a name may hold spaces)
                parts = header.split()
                if len(parts) != 3 or not parts[2].isdigit():
                    answers.append((None, b""))
                    continue
                length = int(parts[2])
                data = b""
                if with_data:
                    data = proc.stdout.read(length + 1)
                    if len(data) != length + 1:
                        self._died()
                    data = data[:length]
                answers.append(((parts[0].decode(), parts[1].decode(), length), data))
        return answers

    def _process(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            self._proc = self._start()
        return self._proc

    def _died(self) -> None:
        proc, self._proc = self._proc, None
        assert proc is not None
        status, stderr = _end(proc, wait_s=5.0)
        raise ReaderDied(status, stderr)

    def close(self) -> None:
        """End the process (EOF on its stdin) and reap it; a later read starts a new one."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _end(proc, wait_s=10.0)


def _end(proc: subprocess.Popen[bytes], *, wait_s: float) -> tuple[int | None, str]:
    """Close stdin, wait (kill after wait_s), close the pipes; (exit status, stderr)."""
    if proc.stdin is not None:
        with contextlib.suppress(OSError):  # already gone: nothing left to flush
            proc.stdin.close()
    try:
        proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    stderr = b""
    if proc.stderr is not None:
        stderr = proc.stderr.read()
        proc.stderr.close()
    if proc.stdout is not None:
        proc.stdout.close()
    return proc.returncode, stderr.decode("utf-8", errors="replace").strip()


def _kind(mode: bytes) -> int:
    """What `git ls-tree` calls the entry: a blob of a regular file, a tree, a symlink, or anything
    else (a submodule). Modes are canonicalised the way git does (any 100xxx is a file)."""
    if mode == b"100644" or mode == b"100755":
        return FILE
    if mode == b"40000":
        return DIR
    fmt = int(mode, 8) & 0o170000
    return {0o100000: FILE, 0o040000: DIR, 0o120000: LINK}.get(fmt, OTHER)


def parse_tree(data: bytes, width: int) -> list[tuple[int, str, str]]:
    """A raw tree object -> [(kind, name, hex SHA)] in tree order; `width` is the hash length in
    bytes (20 for SHA-1, 32 for SHA-256). Each entry is `<octal mode> <name>\\0<hash>`."""
    entries: list[tuple[int, str, str]] = []
    pos, end = 0, len(data)
    find = data.find
    while pos < end:
        space = find(b" ", pos)
        nul = find(b"\0", space)
        if space < 0 or nul < 0 or nul + 1 + width > end:
            raise ValueError("malformed tree object")
        name = data[space + 1 : nul].decode("utf-8", errors="surrogateescape")
        entries.append((_kind(data[pos:space]), name, data[nul + 1 : nul + 1 + width].hex()))
        pos = nul + 1 + width
    return entries


def check_tree_sizes(reader: ObjectReader, names: Sequence[str]) -> None:
    """Refuse (ValueError) a tree over MAX_TREE_BYTES by its header, before its content is read."""
    if not names:
        return
    for name, header in zip(names, reader.info(names), strict=True):
        if header is not None and header[1] == "tree" and header[2] > MAX_TREE_BYTES:
            raise ValueError(f"tree {name} is {header[2]:,} bytes (over {MAX_TREE_BYTES:,})")


class Trees:
    """Recursive file listings of tree objects, read through an ObjectReader and kept by SHA."""

    def __init__(self, reader: ObjectReader) -> None:
        self._reader = reader
        self._entries: dict[str, list[tuple[int, str, str]]] = {}
        self._files: dict[str, dict[str, str]] = {}
        self._links: dict[str, dict[str, str]] = {}

    def entries(self, tree: str) -> list[tuple[int, str, str]]:
        """The (kind, name, sha) entries of a tree already added."""
        return self._entries[tree]

    def add(self, tree: GitObject) -> None:
        """A tree object already read (e.g. the answer to `<commit>:<subdir>`)."""
        if tree.sha not in self._entries:
            self._entries[tree.sha] = parse_tree(tree.data, len(tree.sha) // 2)

    def files(self, tree: str) -> dict[str, str]:
        """{path below the tree: blob SHA} of every regular file, in `git ls-tree -r` order.

        Subtrees not seen yet are read one level at a time, each level in one batch of requests.
        """
        self._load(tree)
        return self._flatten(tree, FILE, self._files)

    def links(self, tree: str) -> dict[str, str]:
        """{path below the tree: blob SHA} of every symbolic link (the blob holds the target path)."""
        self._load(tree)
        return self._flatten(tree, LINK, self._links)

    def _load(self, tree: str) -> None:
        pending = [tree]
        while pending:
            wanted = list(dict.fromkeys(t for t in pending if t not in self._entries))
            check_tree_sizes(self._reader, wanted)
            for name, obj in zip(wanted, self._reader.read(wanted), strict=True):
                if obj is None or obj.type != "tree":
                    raise LookupError(f"tree {name} is missing")
                self.add(obj)
            pending = [sha for t in pending for kind, _, sha in self._entries[t] if kind == DIR]
            pending = [sha for sha in pending if sha not in self._files]

    def _flatten(self, tree: str, want: int, memo: dict[str, dict[str, str]]) -> dict[str, str]:
        done = memo.get(tree)
        if done is not None:
            return done
        out: dict[str, str] = {}
        for kind, name, sha in self._entries[tree]:
            if kind == want:
                out[name] = sha
            elif kind == DIR:
                prefix = name + "/"
                for path, blob in self._flatten(sha, want, memo).items():
                    out[prefix + path] = blob
        memo[tree] = out
        return out
