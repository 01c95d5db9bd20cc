"""The store's own errors: what went wrong in domain terms, with no HTTP in them.

The store raises these; the web layer (`webui/errors.py`) maps each type to its HTTP status and the
JSON `ErrorBody`, and the CLI prints them. `code` is the stable machine-readable code clients see
(e.g. `not_found`, `revision_conflict`, `validation_error`), `details` optional JSON data.
"""

from __future__ import annotations

from typing import Any

from schemas.errors import Permanent


class StoreError(Permanent):
    """A request the store refuses; retrying the same request will not help."""

    code = "bad_request"

    def __init__(self, message: str, *, details: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code


class NotFound(StoreError):
    """The agent, revision, group, token, rollout or build named does not exist."""

    code = "not_found"


class Conflict(StoreError):
    """The request contradicts the stored state (a stale previous revision, an instance already
    registered, an unsupported command, a rollout moved meanwhile)."""

    code = "conflict"


class Invalid(StoreError):
    """The input is well-formed JSON but breaks a rule of the data (duplicate names, bad hashes,
    bad signed statements)."""

    code = "validation_error"
