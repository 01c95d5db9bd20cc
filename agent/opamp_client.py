"""The agent's OpAMP client: one AgentToServer posted to `/v1/opamp`, one ServerToAgent back (HTTP).

Errors map onto the HTTP client's (agent/client.py): network failures, 5xx, 429 and garbled answers are
`ServerUnavailable` (retry later, after the server's retry_info if it sent one); a 4xx is
`ServerRefused` carrying the server's OpAMP error message.
"""

from __future__ import annotations

import httpx
from google.protobuf.message import DecodeError

from agent.client import ServerRefused, ServerUnavailable, parse_retry_after
from schemas.opamp import CONTENT_TYPE, OPAMP_PATH, opamp_pb2


def opamp_url(server: str) -> str:
    """The OpAMP endpoint of a server base URL (a URL already ending in /v1/opamp is kept)."""
    base = server.rstrip("/")
    return base if base.endswith(OPAMP_PATH) else base + OPAMP_PATH


class OpampClient:
    def __init__(self, server: str, timeout: float, transport: httpx.BaseTransport | None = None) -> None:
        self.url = opamp_url(server)
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)), transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def send(self, message: opamp_pb2.AgentToServer, token: str) -> opamp_pb2.ServerToAgent:
        try:
            response = self._http.post(
                self.url,
                content=message.SerializeToString(),
                headers={"Content-Type": CONTENT_TYPE, "Authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as exc:
            raise ServerUnavailable(f"cannot reach server: {type(exc).__name__}: {exc}") from exc
        answer = opamp_pb2.ServerToAgent()
        try:
            answer.ParseFromString(response.content)
        except DecodeError:
            answer = opamp_pb2.ServerToAgent()  # not OpAMP (a proxy's page): judged by the status below
        err = answer.error_response if answer.HasField("error_response") else None
        message_text = err.error_message if err is not None and err.error_message else response.reason_phrase
        status = response.status_code
        if (
            status == 429
            or status >= 500
            or (err is not None and err.type == opamp_pb2.ServerErrorResponseType_Unavailable)
        ):
            retry = parse_retry_after(response.headers.get("Retry-After"))
            if err is not None and err.HasField("retry_info"):
                retry = err.retry_info.retry_after_nanoseconds / 1e9
            raise ServerUnavailable(f"server answered {status}: {message_text}", retry)
        if status != 200 or err is not None:
            code = "unauthorized" if status == 401 else "opamp_error"
            raise ServerRefused(status, code, message_text or f"HTTP {status}")
        if response.headers.get("Content-Type", "").split(";")[0].strip() != CONTENT_TYPE:
            raise ServerUnavailable(f"unexpected answer from server: {response.headers.get('Content-Type')}")
        return answer
