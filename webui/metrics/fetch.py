"""The scraper's HTTP client: one GET of an agent's /metrics page on asyncio streams.

Purpose-built because the scraper's budget is ~1 ms of CPU per scrape: a plain HTTP/1.1 GET with
`Connection: close`, a whole-request deadline, and a size cap, so a target that hangs, trickles,
sends 10 MB or drops the connection costs one bounded task and never stalls the others.
Only `http://` URLs (agents serve plain HTTP on their metrics port).
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

from schemas.errors import RetryLater


class FetchError(RetryLater):
    """The scrape failed (unreachable, timeout, bad HTTP, too large); the next interval retries."""


class Target:
    """A parsed metrics URL, kept between rounds so the URL is parsed once."""

    __slots__ = ("host", "port", "request", "url")

    def __init__(self, url: str) -> None:
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
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: ctrltower-scraper\r\n"
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
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise FetchError(f"{type(exc).__name__}: {exc}") from exc


async def _get(target: Target, max_bytes: int) -> bytes:
    reader, writer = await asyncio.open_connection(target.host, target.port, limit=65536)
    try:
        writer.write(target.request)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = lines[0].split(" ", 2)
        if len(status) < 2 or not status[0].startswith("HTTP/1."):
            raise FetchError(f"not an HTTP answer: {lines[0][:60]!r}")
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
                raise FetchError(f"unsupported content-encoding {value.strip()!r}")
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
