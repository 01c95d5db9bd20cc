"""The reconciler's errors, each a `schemas.errors` kind so loops can tell "retry later" from "permanent".

The CLI maps each family to one exit code (ctrltower/cmd_reconcile.py): GitError -> GIT_ERROR,
ServerError -> SERVER_ERROR, ConflictError -> CONFLICT.
"""

from __future__ import annotations

from schemas.errors import CtrlTowerError, Permanent, RetryLater


class GitError(CtrlTowerError):
    """Git could not give us the commit: unreachable remote, missing ref or path, refused credentials."""


class GitUnavailable(GitError, RetryLater):
    """The remote could not be reached (network, DNS, timeout): the next run may succeed."""


class GitRefused(GitError, Permanent):
    """The remote answered but refused: authentication failed, no such repository."""


class GitNotFound(GitError, Permanent):
    """The ref, commit or subdirectory does not exist."""


class ServerError(CtrlTowerError):
    """The control plane refused the request or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class ServerUnavailable(ServerError, RetryLater):
    """Connection refused, timeout, or a 5xx answer."""


class ServerRefused(ServerError, Permanent):
    """A 4xx answer other than a compare-and-set conflict (bad token, bad payload)."""


class ConflictError(RetryLater):
    """Another reconciler got there first; this run did nothing and says why."""


class LockHeld(ConflictError):
    """Another reconcile of the same source holds the cache lock."""


class RevisionConflict(ConflictError):
    """The server's current revision moved between our read and our publish (compare-and-set)."""
