"""Which files of a config repo ctrltower reads, and what it says about those it refuses unread.

Both ways in, a directory (`validate`, `render`, `import`: ctrltower/repo_dir.py) and a Git commit
(`reconcile`, `plan`: reconciler/git.py), read only `ctrltower.yaml` and the kind directories of
`compiler/repo.py` (`KIND_DIRS`: groups/, pipelines/, rollouts/, and whatever later kinds add), and
refuse, before reading a byte:

- a symbolic link there (CT109): followed, `pipelines/x.yaml -> ../.git/config` or `/etc/passwd`
  would print the target's lines in diagnostics; and Git stores a link, not its target, so the
  reconciler would never see what `validate` saw in the checkout;
- a file larger than the loader's limit (CT102), by the size the filesystem or Git's tree reports;
- files beyond MAX_REPO_BYTES or MAX_REPO_FILES in all (CT114): thousands of files each under the
  limit are a bomb too.

Nothing here touches a file; the callers do the I/O and ask these functions.
"""

from __future__ import annotations

from compiler.loader import MAX_FILE_BYTES, LoadError
from compiler.repo import KIND_DIRS, SETTINGS_FILES, is_repo_file
from schemas.diagnostics import Diagnostic

__all__ = [
    "CONFIG_DIRS",
    "MAX_FILE_BYTES",
    "MAX_REPO_BYTES",
    "MAX_REPO_FILES",
    "SETTINGS_FILES",
    "in_config_dirs",
    "is_repo_file",
    "repo_too_large_diagnostic",
    "symlink_diagnostic",
    "too_large_diagnostic",
]

MAX_REPO_BYTES = 256 * 1024 * 1024  # all repo files together (a 10,000-pipeline fleet is ~50 MB)
MAX_REPO_FILES = 100_000
CONFIG_DIRS = tuple(d.rstrip("/") for d in KIND_DIRS.values())  # ("groups", "pipelines", ...)


def in_config_dirs(path: str) -> bool:
    """A path ctrltower may need to look at: a settings file, a kind directory, or below one."""
    return path in SETTINGS_FILES or path.split("/", 1)[0] in CONFIG_DIRS


def symlink_diagnostic(path: str) -> Diagnostic:
    return LoadError(
        "CT109",
        "this is a symbolic link; ctrltower reads regular files only and never follows a link "
        "(one could point outside the repository), so nothing was read",
        hint="replace the link with the file itself",
    ).diagnostic(path)


def too_large_diagnostic(path: str, size: int) -> Diagnostic:
    return LoadError(
        "CT102",
        f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB ({size:,} bytes); not read",
    ).diagnostic(path)


def repo_too_large_diagnostic(path: str, total: int, count: int) -> Diagnostic:
    """At the file that takes the repo files past MAX_REPO_BYTES or MAX_REPO_FILES (in path order)."""
    return LoadError(
        "CT114",
        f"the repo files add up to more than {MAX_REPO_BYTES // (1024 * 1024)} MiB or "
        f"{MAX_REPO_FILES:,} files ({total:,} bytes in {count:,} files with this one); this file and "
        "the ones after it were not read",
    ).diagnostic(path)
