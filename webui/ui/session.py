"""Session-cookie login for the web UI, on top of the API's bearer tokens.

- Log in by pasting a token; `webui.auth.authenticate` checks it. The signed Flask session cookie
  (HttpOnly, SameSite=Lax, Secure when served over HTTPS) then holds the token's id, name and role
  and a CSRF secret, never the token itself.
- Every request re-checks that the token is still live (one indexed SQLite read), so revoking a token
  in the Tokens page or with `ctrltower token revoke` logs its sessions out at once.
- The principal goes into `flask.g.principal`, where `webui.auth.require_role` and
  `current_principal()` find it, so the UI's forms and the API share one role model.
- Every POST carries `csrf_token` (a per-session random value, compared in constant time); the login
  form too (login CSRF). Logout is a POST: it deletes the server-side session (the `ui_sessions` row the
  cookie's `sid` names), so any copy of the cookie stops working at once, and clears the cookie.
- The cookie is `Secure` when the request came over HTTPS (`request.is_secure`; behind a TLS proxy only
  with --behind-proxy, which makes X-Forwarded-Proto count).
"""

from __future__ import annotations

import hmac
import secrets
import time
from datetime import timedelta
from typing import Any

from flask import Flask, abort, g, has_request_context, request, session
from flask.sessions import SecureCookieSessionInterface

from webui.auth import Principal
from webui.context import get_store

# Roles that may use the UI: anything that grants "viewer" (viewer, operator, admin, reconciler).
UI_ROLE = "viewer"
SESSION_MAX_AGE_S = 12 * 3600


def operators_only(who: Principal, action: str, what: str) -> None:
    """A 403 page unless `who` may operate: the guard of the UI's operator actions (commands to
    collectors, rollout actions), one wording for all."""
    if not who.can("operator"):
        abort(403, description=f"role {who.role!r} may not {action} {what} (operators only)")


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie, marked `Secure` whenever this request came over HTTPS: directly, or through
    a TLS proxy when the server runs with --behind-proxy (ProxyFix then sets the scheme from
    X-Forwarded-Proto; without it that header is ignored)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(has_request_context() and request.is_secure) or super().get_cookie_secure(app)


def configure_cookies(app: Flask) -> None:
    """Cookie flags for the session; called once when the blueprint is registered."""
    app.config["SESSION_COOKIE_NAME"] = "ctrltower_session"
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(seconds=SESSION_MAX_AGE_S)
    app.session_interface = _SessionInterface()


def csrf_token() -> str:
    """This session's CSRF secret (created on first use, also before login)."""
    token = session.get("csrf")
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def csrf_ok() -> bool:
    expected = session.get("csrf")
    sent = request.form.get("csrf_token", "")
    return isinstance(expected, str) and bool(sent) and hmac.compare_digest(expected, sent)


def log_in(principal: Principal) -> None:
    """Start a fresh session (a new CSRF secret too: no fixation) for this principal."""
    session.clear()
    session.permanent = True
    session["tid"] = principal.token_id
    session["name"] = principal.name
    session["role"] = principal.role
    session["iat"] = time.time()
    session["csrf"] = secrets.token_urlsafe(32)
    if principal.token_id is not None:
        # the server-side half: logout deletes it, and a cookie without a live one is no session
        session["sid"] = get_store().create_session(principal.token_id, SESSION_MAX_AGE_S)


def log_out() -> None:
    sid = session.get("sid")
    if isinstance(sid, str):
        get_store().end_session(sid)
    session.clear()


def load_principal() -> Principal | None:
    """The logged-in principal, if the session names a token that is still live with the same role."""
    tid: Any = session.get("tid")
    role: Any = session.get("role")
    iat: Any = session.get("iat")
    sid: Any = session.get("sid")
    if not isinstance(tid, int) or not isinstance(role, str) or not isinstance(iat, int | float):
        return None
    if not isinstance(sid, str) or get_store().session_token_id(sid) != tid:
        session.clear()  # logged out (elsewhere, with a copy of this cookie) or expired
        return None
    if time.time() - iat > SESSION_MAX_AGE_S:
        session.clear()
        return None
    live = {t.id: t for t in get_store().list_tokens(include_revoked=False)}
    token = live.get(tid)
    if token is None or token.role != role:
        session.clear()
        return None
    principal = Principal(token_id=tid, name=str(session.get("name") or ""), role=role)
    if not principal.can(UI_ROLE):
        return None
    g.principal = principal
    return principal
