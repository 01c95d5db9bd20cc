"""OpAMP (Open Agent Management Protocol) messages and the conventions ctrltower uses with them.

The messages are `schemas.opamp.v1.opamp_pb2` (generated from the vendored opamp-spec protos, see
`proto/SOURCE.md`); both the server's `/v1/opamp` endpoint and `ctrltower agent --protocol opamp` use them,
so the conventions both sides must agree on live here, next to them:

- the remote config is one file under the key `""` (a single-file agent, as the spec suggests),
  content type `text/yaml`, and its `config_hash` is the raw sha256 of the YAML bytes: the hex of it is
  exactly the `X-Ctrltower-Config-Hash` / ETag of the HTTP agent API;
- `instance_uid` (16 bytes) is the agent record's `instance_id` in UUID text form;
- the agent's own token travels as an `Authorization: Bearer ...` header in
  `ConnectionSettingsOffers.opamp.headers`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator

from schemas.opamp.v1 import anyvalue_pb2, opamp_pb2

SPEC_SOURCE = "open-telemetry/opamp-spec@f56c7ae"
OPAMP_PATH = "/v1/opamp"
CONTENT_TYPE = "application/x-protobuf"
CONFIG_KEY = ""
CONFIG_CONTENT_TYPE = "text/yaml"

AgentCap = opamp_pb2.AgentCapabilities
# Capability bits by the short names the API and UI show (the spec's names without the prefix).
AGENT_CAPABILITIES: dict[str, int] = {
    name.removeprefix("AgentCapabilities_"): int(value)
    for name, value in opamp_pb2.AgentCapabilities.items()
    if value
}


def capability_names(bits: int) -> list[str]:
    """The named capabilities set in `bits`, in the spec's order."""
    return [name for name, bit in AGENT_CAPABILITIES.items() if bits & bit]


def has(bits: int, capability: int) -> bool:
    return bool(bits & capability)


def instance_id_of(uid: bytes) -> str:
    """The agent record's instance_id for an OpAMP instance_uid (ValueError unless 16 bytes)."""
    if len(uid) != 16:
        raise ValueError(f"instance_uid must be 16 bytes, got {len(uid)}")
    return str(uuid.UUID(bytes=uid))


def uid_of(instance_id: str) -> bytes:
    return uuid.UUID(instance_id).bytes


def hash_bytes(config_hash_hex: str) -> bytes:
    """The OpAMP config_hash for ctrltower's hex config hash (the same sha256)."""
    return bytes.fromhex(config_hash_hex)


def scalar(value: anyvalue_pb2.AnyValue) -> str | None:
    """A scalar AnyValue as text (None for arrays, maps, bytes and unset values)."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        return repr(value.double_value)
    return None


def attributes(kvs: Iterable[anyvalue_pb2.KeyValue]) -> Iterator[tuple[str, str]]:
    """(key, text) of every scalar attribute; later duplicates win when made into a dict."""
    for kv in kvs:
        text = scalar(kv.value)
        if text is not None:
            yield kv.key, text


def key_value(key: str, value: str) -> anyvalue_pb2.KeyValue:
    return anyvalue_pb2.KeyValue(key=key, value=anyvalue_pb2.AnyValue(string_value=value))


__all__ = ["anyvalue_pb2", "opamp_pb2"]
