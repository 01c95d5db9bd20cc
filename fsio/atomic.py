"""Replace a file so readers see the old bytes or the new ones, never half a file.

`atomic_write` writes a staging file beside the target (owner-only unless `mode` says otherwise:
tokens and configs may hold credentials), fsyncs it, renames it over the target and fsyncs the
directory, so a crash or a power cut leaves one whole version. A symlink planted at the staging path is
refused, never followed (following it would write over the link's target); the staging file is removed
when anything fails. Users: the agent's state, token and collector builds; the server's bootstrap tokens
and `server.ready`; the CLI's rendered configs and repo files.
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE = 0o600  # configs and tokens may hold credentials: only the owner reads them


def create_private(path: Path, mode: int = PRIVATE) -> int:
    """Open a new file for writing (`mode`, owner-only by default), never through a symlink at `path`.

    A leftover regular file (a crash between create and rename) is replaced; a symlink is refused
    (OSError), whoever put it there.
    """
    if path.is_symlink():
        raise OSError(f"refusing to follow the symlink at {path}")
    path.unlink(missing_ok=True)
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def staging_path(path: Path) -> Path:
    """Where `atomic_write` stages `path`: beside it (same file system, so the rename is atomic), per
    process, hidden."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def atomic_write(path: Path, data: bytes, mode: int = PRIVATE) -> None:
    """Replace `path` with `data` atomically and durably (see the module docstring)."""
    tmp = staging_path(path)
    fd = create_private(tmp, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
