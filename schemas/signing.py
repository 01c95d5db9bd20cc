"""Signed statements: what the reconciler (or an admin) vouches for, and how an agent checks it.

A statement is a small JSON object signed with ed25519. Its wire form (the `X-Ctrltower-Statement`
header of a config answer, the `statement` of a published collector build) is

    base64url(payload) "." base64url(signature)        (RFC 4648 section 5, no padding)

where `payload` is the exact JSON bytes that were signed (the signer writes them canonically: sorted
keys, no whitespace, ASCII) and `signature` is the 64-byte ed25519 signature of those bytes. A verifier
never re-serialises: it checks the signature over the payload bytes it received, then parses them.
docs/architecture.md ("Signed statements") is the contract for other implementations.

Pure: no files (the CLI reads and writes key files: ctrltower/keyfiles.py), the clock passed in.
Needs only `cryptography` (a base dependency: the agent verifies).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import Field, ValidationError

from schemas.common import FrozenModel
from schemas.errors import Permanent

STATEMENT_HEADER = "X-Ctrltower-Statement"
CONFIG_TYPE = "ctrltower.config/v1"
COLLECTOR_TYPE = "ctrltower.collector/v1"
MAX_STATEMENT_CHARS = 8192  # a statement is a few hundred bytes; refuse to parse anything large
CLOCK_SKEW_S = 300  # an issued_at this far in the future is accepted (hosts' clocks differ)

_SHA256 = r"^[0-9a-f]{64}$"


class ConfigStatement(FrozenModel):
    """What the reconciler signs for one group of one published commit."""

    type: Literal["ctrltower.config/v1"]
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    group: str = Field(max_length=63)
    selector: dict[str, str] = Field(description="the group's selector: the agent's labels must match it")
    commit: str = Field(pattern=r"^[0-9a-f]{7,64}$")
    seq: int = Field(ge=0, description="the commit's first-parent depth in the config repo")
    sha256: str = Field(pattern=_SHA256, description="sha256 hex of the exact rendered config bytes")
    issued_at: int = Field(description="unix seconds")
    expires_at: int = Field(description="unix seconds; refused after this")


class CollectorStatement(FrozenModel):
    """What an admin (or the reconciler's key) signs for one collector build."""

    type: Literal["ctrltower.collector/v1"]
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    version: str = Field(min_length=1, max_length=128)
    sha256: str = Field(pattern=_SHA256)
    size: int = Field(ge=0)
    issued_at: int


class Untrusted(Permanent):
    """A statement that must not be acted on: missing, malformed, unknown key, bad signature,
    expired, or about other bytes, another group or another commit. `reason` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeyFileError(Permanent):
    """A key file that cannot be read or is not an ed25519 key of the expected kind."""


# --- keys -------------------------------------------------------------------------------------------------


def key_id(public: Ed25519PublicKey) -> str:
    """First 16 hex digits of the sha256 of the raw 32-byte public key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_pem() -> tuple[bytes, bytes]:
    """A new key pair as (private PKCS#8 PEM, public SubjectPublicKeyInfo PEM). Writing them (the
    private one 0600) is the caller's job: this module does no I/O."""
    private = Ed25519PrivateKey.generate()
    priv_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pub_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return priv_pem, pub_pem


def private_key_from_pem(data: bytes, where: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{where} is not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{where} is not an ed25519 private key")
    return key


def public_key_from_pem(data: bytes, where: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{where} is not a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{where} is not an ed25519 public key")
    return key


def trust_set(keys: Iterable[Ed25519PublicKey]) -> dict[str, Ed25519PublicKey]:
    """key id -> public key, from the --trust-key files (several during a rotation)."""
    return {key_id(k): k for k in keys}


# --- wire form ----------------------------------------------------------------------------------------------


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    if any(c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" for c in text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def canonical(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


@dataclass(frozen=True)
class Signer:
    """The reconciler's (or an admin's) private key."""

    private: Ed25519PrivateKey

    @classmethod
    def from_pem(cls, data: bytes, where: str) -> Signer:
        return cls(private_key_from_pem(data, where))

    @property
    def key_id(self) -> str:
        return key_id(self.private.public_key())

    def sign(self, fields: Mapping[str, Any]) -> str:
        payload = canonical({**fields, "key_id": self.key_id})
        return f"{_b64e(payload)}.{_b64e(self.private.sign(payload))}"

    def sign_config(
        self,
        *,
        group: str,
        selector: Mapping[str, str],
        commit: str,
        seq: int,
        sha256: str,
        now: int,
        valid_for_s: int,
    ) -> str:
        return self.sign(
            {
                "type": CONFIG_TYPE,
                "group": group,
                "selector": dict(selector),
                "commit": commit,
                "seq": seq,
                "sha256": sha256,
                "issued_at": now,
                "expires_at": now + valid_for_s,
            }
        )

    def sign_collector(self, *, version: str, sha256: str, size: int, now: int) -> str:
        return self.sign(
            {"type": COLLECTOR_TYPE, "version": version, "sha256": sha256, "size": size, "issued_at": now}
        )


def _split(token: str | None) -> tuple[bytes, bytes, dict[str, Any]]:
    if not token:
        raise Untrusted("no signed statement was served with it")
    if len(token) > MAX_STATEMENT_CHARS:
        raise Untrusted("statement too large")
    payload_b64, dot, sig_b64 = token.strip().partition(".")
    try:
        if not dot:
            raise ValueError("no '.'")
        payload, signature = _b64d(payload_b64), _b64d(sig_b64)
        fields = json.loads(payload)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise Untrusted(f"malformed statement: {exc}") from exc
    if not isinstance(fields, dict):
        raise Untrusted("malformed statement: not a JSON object")
    return payload, signature, fields


def peek_config(token: str) -> ConfigStatement:
    """Parse a config statement WITHOUT checking its signature (the server's sanity check at publish:
    it holds no keys). Raises Untrusted if it is not a well-formed config statement."""
    _, _, fields = _split(token)
    try:
        return ConfigStatement.model_validate(fields)
    except ValidationError as exc:
        raise Untrusted(f"malformed config statement: {_first_error(exc)}") from exc


def peek_collector(token: str) -> CollectorStatement:
    """Parse a collector statement WITHOUT checking its signature (the server's check at publish)."""
    _, _, fields = _split(token)
    try:
        return CollectorStatement.model_validate(fields)
    except ValidationError as exc:
        raise Untrusted(f"malformed collector statement: {_first_error(exc)}") from exc


def _verified(token: str | None, keys: Mapping[str, Ed25519PublicKey]) -> dict[str, Any]:
    payload, signature, fields = _split(token)
    kid = fields.get("key_id")
    key = keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise Untrusted(f"signed by key {kid!r}, which is not a trusted key")
    try:
        key.verify(signature, payload)
    except InvalidSignature as exc:
        raise Untrusted(f"bad signature (key {kid})") from exc
    return fields


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    return f"{'.'.join(map(str, err['loc']))}: {err['msg']}"


def verify_config(
    token: str | None,
    keys: Mapping[str, Ed25519PublicKey],
    *,
    data: bytes,
    labels: Mapping[str, str],
    now: float,
) -> ConfigStatement:
    """The statement, if it is signed by a trusted key, covers exactly `data`, is for a group whose
    selector this agent's labels match, and is within its validity; else raise Untrusted(reason)."""
    fields = _verified(token, keys)
    try:
        st = ConfigStatement.model_validate(fields)
    except ValidationError as exc:
        raise Untrusted(f"not a config statement: {_first_error(exc)}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if st.sha256 != digest:
        raise Untrusted(f"config bytes (sha256 {digest[:12]}) are not the signed ones ({st.sha256[:12]})")
    if any(labels.get(k) != v for k, v in st.selector.items()):
        raise Untrusted(f"signed for group {st.group!r}, whose selector does not match this agent's labels")
    if now > st.expires_at:
        raise Untrusted(f"statement for {st.commit[:12]} expired at {st.expires_at} (now {int(now)})")
    if st.issued_at > now + CLOCK_SKEW_S:
        raise Untrusted(f"statement issued in the future ({st.issued_at}, now {int(now)})")
    return st


def verify_collector(
    token: str | None, keys: Mapping[str, Ed25519PublicKey], *, version: str, data_sha256: str
) -> CollectorStatement:
    """The build's statement, if a trusted key signed this version with this sha256."""
    fields = _verified(token, keys)
    try:
        st = CollectorStatement.model_validate(fields)
    except ValidationError as exc:
        raise Untrusted(f"not a collector statement: {_first_error(exc)}") from exc
    if st.version != version:
        raise Untrusted(f"signed for collector version {st.version!r}, not {version!r}")
    if st.sha256 != data_sha256:
        raise Untrusted(f"collector binary (sha256 {data_sha256[:12]}) is not the signed one")
    return st
