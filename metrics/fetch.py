"""The scraper's HTTP client: one GET of an agent's /metrics page on asyncio streams.

Purpose-built because the scraper's budget is ~1 ms of CPU per scrape: a plain HTTP/1.1 GET with
`Connection: close`, a whole-request deadline, and a size cap, so a target that hangs, trickles,
sends 10 MB or drops the connection costs one bounded task and never stalls the others.
Only `http://` URLs (agents serve plain HTTP on their metrics port).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import socket
from urllib.parse import urlsplit

from schemas.errors import RetryLater


class FetchError(RetryLater):
    """The scrape failed (unreachable, timeout, bad HTTP, too large); the next interval retries."""


DNS_TTL_S = 300.0


class Target:
    """A parsed metrics URL, kept between rounds so the URL is parsed once (and a host name is
    resolved once per DNS_TTL_S, not on every scrape through the thread pool)."""

    __slots__ = ("_addrs", "_resolved_at", "host", "port", "request", "url")

    def __init__(self, url: str, user_agent: str = "ctrltower-scraper") -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise FetchError(f"unsupported metrics URL {url!r}: only http://host:port/path is scraped")
        try:
            port = parts.port or 80
        except ValueError as exc:
            raise FetchError(f"bad port in metrics URL {url!r}") from exc
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        host_header = parts.netloc.rpartition("@")[2]
        self.url = url
        self.host = parts.hostname
        self.port = port
        self._addrs: list[str] = []
        self._resolved_at = 0.0
        try:
            ipaddress.ip_address(self.host)
            self._addrs, self._resolved_at = [self.host], math.inf  # a literal address: nothing to resolve
        except ValueError:
            pass
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: {user_agent}\r\n"
            "Accept: text/plain\r\nConnection: close\r\n\r\n"
        ).encode("latin-1")


async def fetch(target: Target, *, timeout_s: float, max_bytes: int) -> bytes:
    """The body of a 200 answer, or FetchError."""
    try:
        async with asyncio.timeout(timeout_s):
            return await _get(target, max_bytes)
    except TimeoutError as exc:
        raise FetchError(f"timed out after {timeout_s:g}s") from exc
    except asyncio.IncompleteReadError as exc:
        raise FetchError("connection closed before the whole answer arrived") from exc
    except asyncio.LimitOverrunError as exc:
        raise FetchError("answer headers too large") from exc
    except (ValueError, UnicodeDecodeError) as exc:  # their text quotes what the target sent
        raise FetchError("malformed HTTP answer") from exc
    except OSError as exc:  # the local socket's error (refused, unreachable), nothing the target wrote
        raise FetchError(f"{type(exc).__name__}: {exc.strerror or exc}") from exc


async def _connect(target: Target) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to the first address that answers (e.g. localhost: ::1, then 127.0.0.1); the one
    that answered is tried first next time."""
    loop = asyncio.get_running_loop()
    now = loop.time()
    if not target._addrs or now - target._resolved_at > DNS_TTL_S:
        infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        target._addrs = list(dict.fromkeys(str(info[4][0]) for info in infos))
        target._resolved_at = now
        if not target._addrs:
            raise FetchError(f"cannot resolve {target.host!r}")
    error: OSError | None = None
    for addr in list(target._addrs):
        try:
            conn = await asyncio.open_connection(addr, target.port, limit=65536)
        except OSError as exc:
            error = exc
            continue
        if addr != target._addrs[0]:
            target._addrs.remove(addr)
            target._addrs.insert(0, addr)
        return conn
    assert error is not None
    raise error


async def _get(target: Target, max_bytes: int) -> bytes:
    reader, writer = await _connect(target)
    try:
        writer.write(target.request)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = lines[0].split(" ", 2)
        # Error texts never quote what the target sent: scrape health is shown to every viewer, and
        # a target that is not an agent must not become a way to read other services (issue 10).
        if (
            len(status) < 2
            or not status[0].startswith("HTTP/1.")
            or not (len(status[1]) == 3 and status[1].isdigit())
        ):
            raise FetchError("not an HTTP answer")
        if status[1] != "200":
            raise FetchError(f"HTTP {status[1]}")
        length: int | None = None
        chunked = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif name == "content-encoding" and value.strip().lower() not in ("", "identity"):
                raise FetchError("unsupported content-encoding")
        if chunked:
            return await _read_chunked(reader, max_bytes)
        if length is not None:
            if length > max_bytes:
                raise FetchError(f"page of {length} bytes exceeds the {max_bytes}-byte limit")
            return await reader.readexactly(length)
        body = await reader.read(max_bytes + 1)
        while body and len(body) <= max_bytes:
            more = await reader.read(max_bytes + 1 - len(body))
            if not more:
                break
            body += more
        if len(body) > max_bytes:
            raise FetchError(f"page exceeds the {max_bytes}-byte limit")
        return body
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _read_chunked(reader: asyncio.StreamReader, max_bytes: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            return b"".join(parts)
        total += size
        if total > max_bytes:
            raise FetchError(f"page exceeds the {max_bytes}-byte limit")
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
