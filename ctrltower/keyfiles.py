"""Key files for schemas/signing.py (which does no I/O): writing a new pair, reading a signing key
(reconciler, `collector publish`) and trust keys (agent). Base dependencies only."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from schemas.signing import KeyFileError, Signer, generate_pem, public_key_from_pem, trust_set

PRIVATE_KEY_NAME = "signing.key"
PUBLIC_KEY_NAME = "signing.pub"


def generate_keys(out: Path) -> tuple[Path, Path]:
    """Write a new pair to OUT/signing.key (mode 0600) and OUT/signing.pub.

    Refuses to overwrite either file (FileExistsError): replacing a key by accident would lock every
    agent out.
    """
    priv_pem, pub_pem = generate_pem()
    out.mkdir(parents=True, exist_ok=True)
    priv_path, pub_path = out / PRIVATE_KEY_NAME, out / PUBLIC_KEY_NAME
    for path in (priv_path, pub_path):
        if path.exists():
            raise FileExistsError(f"{path} exists: refusing to overwrite a key")
    _write_new(priv_path, priv_pem, 0o600)
    _write_new(pub_path, pub_pem, 0o644)
    return priv_path, pub_path


def _write_new(path: Path, data: bytes, mode: int) -> None:
    # O_EXCL with the final mode: the private key is never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask must not change what we promise
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def load_signer(path: Path) -> Signer:
    return Signer.from_pem(_read(path, "signing key"), str(path))


def signer_for_option(path: Path | None) -> Signer | None:
    """The Signer of --signing-key (None without it); a bad key file is a usage error naming the option."""
    if path is None:
        return None
    try:
        return load_signer(path)
    except KeyFileError as exc:
        raise click.BadParameter(str(exc), param_hint="--signing-key") from exc


def load_public_key(path: Path) -> Ed25519PublicKey:
    return public_key_from_pem(_read(path, "trust key"), str(path))


def load_trust_keys(paths: Iterable[Path]) -> dict[str, Ed25519PublicKey]:
    return trust_set(load_public_key(p) for p in paths)
