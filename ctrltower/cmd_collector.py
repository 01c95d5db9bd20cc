"""`ctrltower collector publish`: upload a collector build (admin token), signed with the same key the
reconciler uses, so agents with --trust-key accept it. Base dependencies only (httpx, cryptography)."""

from __future__ import annotations

import hashlib
import re
import sys
import time
from pathlib import Path

import click

from ctrltower import exit_codes
from ctrltower.params import signing_key_option


@click.group()
def collector() -> None:
    """Collector builds that groups can ask for (`collector: {version: V}` in the group file)."""


@collector.command("publish")
@click.option(
    "--version", "version", required=True, help="The version label groups name, e.g. 0.135.0-acme.1."
)
@click.option(
    "--file",
    "file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The binary.",
)
@click.option("--server", required=True, help="Control plane URL, e.g. http://ctrltower:8080")
@click.option(
    "--token", envvar="CTRLTOWER_TOKEN", show_envvar=True, help="An admin token (prefer the env var)."
)
@signing_key_option("Sign the build's sha256 (agents with --trust-key refuse unsigned builds).")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Upload timeout in seconds.")
def publish(
    version: str, file: Path, server: str, token: str | None, signing_key: Path | None, timeout: float
) -> None:
    """Upload BIN as collector VERSION. A version names one binary forever: other bytes are refused."""
    import httpx

    from ctrltower.keyfiles import signer_for_option
    from schemas.repo import COLLECTOR_VERSION_PATTERN
    from schemas.signing import STATEMENT_HEADER

    if not re.match(COLLECTOR_VERSION_PATTERN, version) or len(version) > 128:
        raise click.BadParameter(f"must match {COLLECTOR_VERSION_PATTERN}", param_hint="--version")
    if not token:
        raise click.UsageError("an admin token is needed: pass --token or set CTRLTOWER_TOKEN")
    data = file.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"}
    signer = signer_for_option(signing_key)
    if signer is not None:
        headers[STATEMENT_HEADER] = signer.sign_collector(
            version=version, sha256=digest, size=len(data), now=int(time.time())
        )
    else:
        click.echo("ctrltower: warning: unsigned build: agents with --trust-key will refuse it", err=True)
    url = f"{server.rstrip('/')}/api/v1/collectors/{version}"
    try:
        response = httpx.put(url, content=data, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        click.echo(f"ctrltower: cannot reach the server: {exc}", err=True)
        sys.exit(exit_codes.SERVER_ERROR)
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
            text = f"{error['code']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            text = response.text[:200]
        click.echo(f"ctrltower: HTTP {response.status_code} {text}", err=True)
        sys.exit(exit_codes.CONFLICT if response.status_code == 409 else exit_codes.SERVER_ERROR)
    build = response.json()
    state = "published" if response.status_code == 201 else "already published"
    signed = "signed" if build["signed"] else "unsigned"
    click.echo(
        f"{state}: collector {build['version']} sha256 {build['sha256']} ({build['size']} bytes, {signed})"
    )
