"""The agent's only HTTP client: the server's agent API and the collector's internal metrics page."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from schemas.api import (
    HEADER_COLLECTOR_SHA256,
    HEADER_CONFIG_HASH,
    HEADER_GROUP,
    HEADER_REVISION,
    AgentRegistration,
    RegistrationResponse,
    StatusReport,
    StatusResponse,
)
from schemas.common import config_hash
from schemas.errors import CtrlTowerError, Permanent, RetryLater
from schemas.signing import STATEMENT_HEADER

AGENT_API = "/api/agent/v1"
DOWNLOAD_TIMEOUT_S = 300.0  # a collector build is tens of MB; the loop waits (supervision too)
M = TypeVar("M", bound=BaseModel)


class ServerUnavailable(RetryLater):
    """Network failure, 5xx, 429 or a garbled answer: try again later (after retry_after if given)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServerRefused(Permanent):
    """A 4xx with the server's error code (unauthorized, not_found, no_group, no_revision, ...)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code


@dataclass(frozen=True)
class FetchedConfig:
    data: bytes
    hash: str
    revision: str | None
    group: str | None
    announced: str | None = None  # the hash the server's headers name (None: no header)
    statement: str | None = None  # X-Ctrltower-Statement, verified by the runner if it trusts keys

    @property
    def hash_mismatch(self) -> bool:
        return self.announced is not None and self.announced != self.hash


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _error_of(response: httpx.Response) -> CtrlTowerError:
    status = response.status_code
    code, message = "http_error", response.reason_phrase or f"HTTP {status}"
    try:
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            code = str(body["error"].get("code", code))
            message = str(body["error"].get("message", message))
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        pass
    if status == 429 or status >= 500:
        return ServerUnavailable(
            f"server answered {status} {code}: {message}",
            parse_retry_after(response.headers.get("Retry-After")),
        )
    return ServerRefused(status, code, message)


def _parse(model: type[M], response: httpx.Response) -> M:
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise ServerUnavailable(f"unexpected answer from server: {exc.errors()[:1]}") from exc


class AgentClient:
    """Talks to one server. The transport is injectable (tests and the default use real HTTP)."""

    def __init__(self, base_url: str, timeout: float, transport: httpx.BaseTransport | None = None) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, url: str, **kwargs: object) -> httpx.Response:
        try:
            return self._http.request(method, url, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            raise ServerUnavailable(f"cannot reach server: {type(exc).__name__}: {exc}") from exc

    def register(self, enroll_token: str, registration: AgentRegistration) -> RegistrationResponse:
        response = self._request(
            "POST",
            f"{AGENT_API}/agents",
            content=registration.model_dump_json(),
            headers={"Authorization": f"Bearer {enroll_token}", "Content-Type": "application/json"},
        )
        if response.status_code not in (200, 201):
            raise _error_of(response)
        return _parse(RegistrationResponse, response)

    def fetch_config(self, agent_id: str, token: str, etag: str | None) -> FetchedConfig | None:
        """The desired config, or None when it is unchanged (304 to our If-None-Match)."""
        headers = {"Authorization": f"Bearer {token}"}
        if etag:
            headers["If-None-Match"] = f'"{etag}"'
        response = self._request("GET", f"{AGENT_API}/agents/{agent_id}/config", headers=headers)
        if response.status_code == 304:
            return None
        if response.status_code != 200:
            raise _error_of(response)
        data = response.content
        announced = response.headers.get(HEADER_CONFIG_HASH) or response.headers.get("ETag", "").strip('W/"')
        # The runner refuses a body that does not match its announced hash (what was reviewed must be
        # what runs): as a retry without --trust-key, as Untrusted with it.
        return FetchedConfig(
            data=data,
            hash=config_hash(data),
            revision=response.headers.get(HEADER_REVISION) or None,
            group=response.headers.get(HEADER_GROUP) or None,
            announced=announced or None,
            statement=response.headers.get(STATEMENT_HEADER) or None,
        )

    def fetch_collector(self, agent_id: str, token: str, version: str) -> tuple[bytes, str, str | None]:
        """A collector build: (bytes, the sha256 the server announces, its signed statement or None)."""
        response = self._request(
            "GET",
            f"{AGENT_API}/agents/{agent_id}/collectors/{version}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(DOWNLOAD_TIMEOUT_S, connect=3.0),
        )
        if response.status_code != 200:
            raise _error_of(response)
        return (
            response.content,
            response.headers.get(HEADER_COLLECTOR_SHA256, ""),
            response.headers.get(STATEMENT_HEADER) or None,
        )

    def post_status(self, agent_id: str, token: str, report: StatusReport) -> StatusResponse:
        response = self._request(
            "POST",
            f"{AGENT_API}/agents/{agent_id}/status",
            content=report.model_dump_json(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        if response.status_code != 200:
            raise _error_of(response)
        return _parse(StatusResponse, response)


class MetricsScraper:
    """Reads the collector's internal metrics page (Prometheus text) on loopback."""

    def __init__(self, url: str, timeout: float, transport: httpx.BaseTransport | None = None) -> None:
        self.url = url
        self._http = httpx.Client(timeout=timeout, transport=transport)

    def scrape(self, timeout: float | None = None) -> str | None:
        """The page, or None if the collector does not answer 200 in time."""
        try:
            response = self._http.get(
                self.url, timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT
            )
        except httpx.HTTPError:
            return None
        return response.text if response.status_code == 200 else None

    def close(self) -> None:
        self._http.close()
