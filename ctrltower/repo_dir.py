"""Read a config repo from a directory (`validate`, `render`, `import --repo`) the way the reconciler
reads it from Git: only `ctrltower.yaml` and the kind directories, never through a symbolic link,
never a file over the loader's limit (compiler/files.py says which, and what to report).

Each file is checked with lstat, then opened with O_NOFOLLOW and checked again on the open
descriptor, so a file swapped for a link (or a FIFO) between the two is still refused, and at most
the limit plus one byte is ever read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from compiler.files import (
    CONFIG_DIRS,
    MAX_FILE_BYTES,
    MAX_REPO_BYTES,
    MAX_REPO_FILES,
    in_config_dirs,
    is_repo_file,
    repo_too_large_diagnostic,
    symlink_diagnostic,
    too_large_diagnostic,
)
from schemas.diagnostics import Diagnostic

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def scan_repo_dir(root: Path) -> tuple[dict[str, bytes], list[Diagnostic]]:
    """({posix path relative to root: bytes} of the repo files, diagnostics for files refused unread)."""
    files: dict[str, bytes] = {}
    refused: list[Diagnostic] = []
    total = count = 0
    for dirpath, dirnames, filenames in os.walk(root):  # never enters a linked directory
        here = Path(dirpath)
        rel_dir = here.relative_to(root).as_posix()
        keep: list[str] = []
        for name in sorted(dirnames):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if not in_config_dirs(rel) or (rel_dir == "." and name not in CONFIG_DIRS):
                continue
            if (here / name).is_symlink():
                refused.append(symlink_diagnostic(rel))
            else:
                keep.append(name)
        dirnames[:] = keep
        for name in sorted(filenames):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if not in_config_dirs(rel):
                continue
            if total > MAX_REPO_BYTES or count > MAX_REPO_FILES:
                continue  # said once, at the file that went over
            problem, data = _read(here / name, rel)
            if problem is not None:
                refused.append(problem)
            elif data is not None:
                total += len(data)
                count += 1
                if total > MAX_REPO_BYTES or count > MAX_REPO_FILES:
                    refused.append(repo_too_large_diagnostic(rel, total, count))
                else:
                    files[rel] = data
    return files, refused


def _read(path: Path, rel: str) -> tuple[Diagnostic | None, bytes | None]:
    try:
        info = os.lstat(path)
    except OSError:
        return None, None  # gone since the listing
    if stat.S_ISLNK(info.st_mode):
        return symlink_diagnostic(rel), None
    if not is_repo_file(rel) or not stat.S_ISREG(info.st_mode):
        return None, None  # not read by the compiler (README, a FIFO, a device)
    if info.st_size > MAX_FILE_BYTES:
        return too_large_diagnostic(rel, info.st_size), None
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if os.path.islink(path):  # ELOOP: swapped for a link since the lstat
            return symlink_diagnostic(rel), None
        raise exc
    with os.fdopen(fd, "rb") as fh:
        opened = os.fstat(fh.fileno())
        if not stat.S_ISREG(opened.st_mode):
            return None, None
        data = fh.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        return too_large_diagnostic(rel, max(opened.st_size, len(data))), None
    return None, data


def read_repo_dir(root: Path) -> dict[str, bytes]:
    """The repo files only, for callers that report refusals another way."""
    return scan_repo_dir(root)[0]
