"""Who is calling: bearer tokens, roles, and the `require_role` decorator for API routes.

Roles: viewer < operator < admin (each includes the one before); reconciler (publish revisions, report
runs, and read) and enroll (register agents only) stand apart. admin passes every role check.

A request's principal comes from, in order:
1. `flask.g.principal`, if a `before_request` hook put a `Principal` there (the UI's session-cookie
   login does this: look the session up, then `g.principal = Principal(...)`). `require_role` checks
   that principal's role exactly like a token's;
2. the `Authorization: Bearer <token>` header, looked up in the store (sha256, constant-time compare).

Agent tokens (issued by registration) are not principals here: the agent API checks them per agent.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from flask import g, request

from schemas.api import LabelScope
from webui.context import get_store
from webui.errors import Forbidden, Unauthorized

P = ParamSpec("P")
R = TypeVar("R")

# What each role may do, as the set of role names a route can require.
ROLE_GRANTS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"viewer"}),
    "operator": frozenset({"viewer", "operator"}),
    "admin": frozenset({"viewer", "operator", "admin", "reconciler", "enroll"}),
    "reconciler": frozenset({"reconciler", "viewer"}),
    "enroll": frozenset({"enroll"}),
}


@dataclass(frozen=True)
class Principal:
    token_id: int | None
    name: str
    role: str
    label_scope: LabelScope | None = None  # enroll tokens: the labels a registration may claim

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        if self.name:
            return self.name
        return f"token:{self.token_id}" if self.token_id is not None else "unknown"

    def can(self, *roles: str) -> bool:
        """True if this principal satisfies any of `roles` (see ROLE_GRANTS)."""
        grants = ROLE_GRANTS.get(self.role, frozenset())
        return any(role in grants for role in roles)


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def authenticate(token: str) -> Principal | None:
    """The principal of an API token, or None if unknown or revoked (needs an app context)."""
    if not token or len(token) > 512:
        return None
    record = get_store().find_token(token)
    if record is None:
        return None
    return Principal(
        token_id=record.id,
        name=record.name or f"token:{record.id}",
        role=record.role,
        label_scope=record.label_scope,
    )


def current_principal() -> Principal | None:
    """The caller of this request (g.principal from a hook, else the bearer token), cached in g."""
    principal = g.get("principal")
    if isinstance(principal, Principal):
        return principal
    if g.get("_ct_auth_done"):
        return None
    g._ct_auth_done = True
    token = bearer_token()
    principal = authenticate(token) if token else None
    if principal is not None:
        g.principal = principal
    return principal


def require_role(*roles: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Route decorator: 401 without a valid principal, 403 if its role grants none of `roles`."""
    unknown = [r for r in roles if r not in ROLE_GRANTS]
    if unknown or not roles:
        raise ValueError(f"unknown roles {unknown}")

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            principal = current_principal()
            if principal is None:
                raise Unauthorized("a valid bearer token is required (Authorization: Bearer <token>)")
            if not principal.can(*roles):
                raise Forbidden(
                    f"role {principal.role!r} may not do this (needs {' or '.join(roles)})",
                    details={"role": principal.role, "required": list(roles)},
                )
            return view(*args, **kwargs)

        wrapper.required_roles = roles  # type: ignore[attr-defined]  # read by the OpenAPI generator
        return wrapper

    return decorate


def roles_of(view: Any) -> tuple[str, ...] | None:
    """The roles a view requires (None: no role check, e.g. agent endpoints)."""
    roles = getattr(view, "required_roles", None)
    return tuple(roles) if roles is not None else None
