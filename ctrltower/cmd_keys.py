"""`ctrltower keys generate`: the ed25519 key pair the reconciler signs with and agents trust.

Needs only the base dependencies (cryptography), so it runs on any host, the agent's too.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ctrltower import exit_codes


@click.group()
def keys() -> None:
    """Signing keys: the reconciler signs each group's config, agents verify (--trust-key)."""


@keys.command("generate")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for signing.key (private, 0600) and signing.pub.",
)
def generate(out: Path) -> None:
    """Write a new key pair; never overwrites an existing one."""
    from ctrltower.keyfiles import generate_keys, load_public_key
    from schemas.signing import key_id

    try:
        private, public = generate_keys(out)
    except FileExistsError as exc:
        click.echo(f"ctrltower keys generate: {exc}", err=True)
        sys.exit(exit_codes.USAGE)
    except OSError as exc:
        click.echo(f"ctrltower keys generate: cannot write to {out}: {exc.strerror or exc}", err=True)
        sys.exit(exit_codes.USAGE)
    click.echo(f"private key: {private} (mode 0600; give it to the reconciler: --signing-key)")
    click.echo(f"public key:  {public} (give it to every agent: --trust-key)")
    click.echo(f"key id:      {key_id(load_public_key(public))}")
