"""schemas/signing.py: keys on disk, the wire form, and every reason a statement is refused."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from ctrltower import exit_codes
from ctrltower.cli import cli
from ctrltower.keyfiles import generate_keys, load_public_key, load_signer, load_trust_keys
from schemas.signing import (
    KeyFileError,
    Signer,
    Untrusted,
    canonical,
    peek_config,
    verify_collector,
    verify_config,
)

DATA = b"receivers: {}\n"
NOW = 1_800_000_000


def _signer(tmp_path: Path, name: str = "k") -> tuple[Signer, Path]:
    priv, pub = generate_keys(tmp_path / name)
    return load_signer(priv), pub


def _sign(signer: Signer, **over: object) -> str:
    fields: dict[str, object] = dict(
        group="edge",
        selector={"tier": "edge"},
        commit="a" * 40,
        seq=3,
        sha256=hashlib.sha256(DATA).hexdigest(),
        now=NOW,
        valid_for_s=3600,
    )
    fields.update(over)
    return signer.sign_config(**fields)  # type: ignore[arg-type]


def test_generate_writes_private_key_0600_and_refuses_to_overwrite(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["keys", "generate", "--out", str(tmp_path / "keys")])
    assert result.exit_code == 0, result.output
    priv, pub = tmp_path / "keys" / "signing.key", tmp_path / "keys" / "signing.pub"
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in priv.read_bytes() and b"PUBLIC KEY" in pub.read_bytes()
    before = priv.read_bytes()
    again = CliRunner().invoke(cli, ["keys", "generate", "--out", str(tmp_path / "keys")])
    assert again.exit_code == exit_codes.USAGE and "refusing to overwrite" in again.output
    assert priv.read_bytes() == before


def test_bad_key_files_are_clear_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key")
    with pytest.raises(KeyFileError, match="not a PEM public key"):
        load_public_key(junk)
    with pytest.raises(KeyFileError, match="not an unencrypted PEM private key"):
        load_signer(junk)
    with pytest.raises(KeyFileError, match="cannot read"):
        load_public_key(tmp_path / "missing.pub")
    _, pub = generate_keys(tmp_path / "k")
    with pytest.raises(KeyFileError, match="private key"):
        load_signer(pub)  # the public half given where the private one belongs


def test_round_trip_and_the_documented_wire_form(tmp_path: Path) -> None:
    signer, pub = _signer(tmp_path)
    keys = load_trust_keys([pub])
    token = _sign(signer)
    st = verify_config(token, keys, data=DATA, labels={"tier": "edge", "zone": "a"}, now=NOW + 10)
    assert (st.group, st.seq, st.key_id) == ("edge", 3, signer.key_id)
    # What docs/architecture.md promises another implementation: base64url(payload).base64url(sig),
    # payload = canonical JSON, signature = ed25519 over the payload bytes.
    payload_b64, sig_b64 = token.split(".")
    payload = base64.urlsafe_b64decode(payload_b64 + "=" * (-len(payload_b64) % 4))
    assert payload == canonical(json.loads(payload))
    sig = base64.urlsafe_b64decode(sig_b64 + "=" * (-len(sig_b64) % 4))
    load_public_key(pub).verify(sig, payload)  # raises if not
    assert peek_config(token) == st


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("missing", "no signed statement"),
        ("garbage", "malformed statement"),
        ("other_bytes", "are not the signed ones"),
        ("other_group", "selector does not match"),
        ("expired", "expired"),
        ("future", "issued in the future"),
        ("unknown_key", "not a trusted key"),
        ("bad_signature", "bad signature"),
        ("collector_statement", "not a config statement"),
    ],
)
def test_refusals(tmp_path: Path, case: str, reason: str) -> None:
    signer, pub = _signer(tmp_path)
    keys = load_trust_keys([pub])
    token: str | None = _sign(signer)
    data, now = DATA, NOW + 10
    if case == "missing":
        token = None
    elif case == "garbage":
        token = "not-a-statement"
    elif case == "other_bytes":
        data = DATA + b"# injected\n"
    elif case == "other_group":
        token = _sign(signer, group="core", selector={"tier": "core"})
    elif case == "expired":
        now = NOW + 3601
    elif case == "future":
        token = _sign(signer, now=NOW + 10_000)
    elif case == "unknown_key":
        other, _ = _signer(tmp_path, "other")
        token = _sign(other)
    elif case == "bad_signature":
        assert token is not None
        payload_b64, sig_b64 = token.split(".")
        fields = json.loads(base64.urlsafe_b64decode(payload_b64 + "=" * (-len(payload_b64) % 4)))
        fields["seq"] = 99  # same key id, edited payload: the signature no longer covers it
        forged = base64.urlsafe_b64encode(canonical(fields)).rstrip(b"=").decode()
        token = f"{forged}.{sig_b64}"
    elif case == "collector_statement":
        token = signer.sign_collector(version="1", sha256="0" * 64, size=1, now=NOW)
    with pytest.raises(Untrusted, match=reason):
        verify_config(token, keys, data=data, labels={"tier": "edge"}, now=now)


def test_rotation_trusts_either_key(tmp_path: Path) -> None:
    old, old_pub = _signer(tmp_path, "old")
    new, new_pub = _signer(tmp_path, "new")
    keys = load_trust_keys([old_pub, new_pub])
    for signer in (old, new):
        verify_config(_sign(signer), keys, data=DATA, labels={"tier": "edge"}, now=NOW)
    with pytest.raises(Untrusted, match="not a trusted key"):
        verify_config(_sign(old), load_trust_keys([new_pub]), data=DATA, labels={"tier": "edge"}, now=NOW)


def test_collector_statement(tmp_path: Path) -> None:
    signer, pub = _signer(tmp_path)
    keys = load_trust_keys([pub])
    token = signer.sign_collector(version="0.135.0", sha256="ab" * 32, size=10, now=NOW)
    assert verify_collector(token, keys, version="0.135.0", data_sha256="ab" * 32).size == 10
    with pytest.raises(Untrusted, match="not the signed one"):
        verify_collector(token, keys, version="0.135.0", data_sha256="cd" * 32)
    with pytest.raises(Untrusted, match="signed for collector version"):
        verify_collector(token, keys, version="0.136.0", data_sha256="ab" * 32)
    with pytest.raises(Untrusted, match="not a collector statement"):
        verify_collector(_sign(signer), keys, version="0.135.0", data_sha256="ab" * 32)
