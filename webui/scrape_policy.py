"""Where the server may scrape an agent: never where the agent merely says (issue 10, scraper SSRF).

An agent announces its `/metrics` URL at registration. Taken as sent, any enroll-token holder could make
the metrics process GET any host and port every interval (the server's own loopback, a cloud metadata
address, an internal admin page). So the URL the server stores is rebuilt from:
- scheme `http` and path `/metrics` (the agent's metrics endpoint; anything else is refused);
- the host: the announced one only if the operator allow-lists it (`--scrape-allow HOST|CIDR`); otherwise
  the address the registration's own connection came from (`REMOTE_ADDR`, or X-Forwarded-For's last hop
  with `--behind-proxy`);
- the announced port (the agent's own listener on that host).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

METRICS_PATH = "/metrics"


class ScrapeUrlRefused(ValueError):
    """The announced URL is not `http://HOST:PORT/metrics`."""


@dataclass(frozen=True)
class ScrapeAllow:
    """The operator's allow-list: host names (exact, case-insensitive) and IP networks."""

    names: frozenset[str]
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    @classmethod
    def parse(cls, entries: Sequence[str]) -> ScrapeAllow:
        names: set[str] = set()
        networks = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                names.add(entry.strip().lower().rstrip("."))
        return cls(frozenset(names), tuple(networks))

    def allows(self, host: str) -> bool:
        try:
            addr = _plain(ipaddress.ip_address(host))
        except ValueError:
            return host.lower().rstrip(".") in self.names
        return any(addr.version == n.version and addr in n for n in self.networks)


def _plain(
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An IPv4-mapped IPv6 address (::ffff:10.0.0.1, a dual-stack listener's view) as plain IPv4."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def scrape_url(announced: str | None, peer: str | None, allow: ScrapeAllow) -> str | None:
    """The URL to scrape for an agent that announced `announced` over a connection from `peer`.

    None: nothing to scrape (no URL announced, or no peer address to pin it to). Raises ScrapeUrlRefused
    for a URL that is not `http://HOST:PORT/metrics`.
    """
    if not announced:
        return None
    try:
        parts = urlsplit(announced)
        port = parts.port
    except ValueError as exc:
        raise ScrapeUrlRefused(f"metrics_url {announced[:200]!r} is not a URL: {exc}") from None
    if parts.scheme != "http" or not parts.hostname or parts.username or parts.password:
        raise ScrapeUrlRefused("metrics_url must be http://HOST:PORT/metrics (no credentials)")
    if parts.path != METRICS_PATH or parts.query or parts.fragment:
        raise ScrapeUrlRefused(
            f"metrics_url must end in {METRICS_PATH} (no query): only that path is scraped"
        )
    host = parts.hostname
    if not allow.allows(host):
        if not peer:
            return None
        try:
            host = str(_plain(ipaddress.ip_address(peer)))
        except ValueError:
            return None
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port or 80}{METRICS_PATH}"
