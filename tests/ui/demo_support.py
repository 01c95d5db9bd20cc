"""Helpers for tests that drive a running UI over real HTTP: session login with CSRF, process names."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def ui_login(base_url: str, token: str) -> httpx.Client:
    """An httpx client holding a UI session cookie (logged in through the real login form)."""
    client = httpx.Client(base_url=base_url, timeout=10.0)
    page = client.get("/login")
    match = CSRF.search(page.text)
    assert match, page.text[:500]
    response = client.post("/login", data={"token": token, "csrf_token": match.group(1), "next": "/"})
    assert response.status_code == 302, response.text[:500]
    return client


def process_names(pids: set[int]) -> dict[int, str]:
    out = {}
    for pid in pids:
        try:
            out[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
        except OSError:
            continue
    return out


def getpgid_or_none(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None
