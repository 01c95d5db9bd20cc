"""The collector's environment: an explicit allow-list, never the agent's whole environment.

A rendered config can read any variable of the collector's environment (`${env:X}`) and ship it with
the telemetry, so the collector gets only:
- `BASE_ALLOW`: what a process needs to run, resolve names and reach a backend (PATH, HOME, locale,
  time zone, temp dir, CA bundles, proxies, Go runtime tuning);
- what the operator names with `--collector-env NAME` (taken from the agent's environment, `PREFIX*`
  for every variable starting with PREFIX) or `--collector-env NAME=VALUE` (set here);
- `CTRLTOWER_TELEMETRY_PORT`, which the agent sets to the port it reads the collector's metrics from.

The agent's own variables (`CTRLTOWER_*`: the enroll token, the server, labels) are never passed, not
even when named: naming one is a usage error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

TELEMETRY_PORT_VAR = "CTRLTOWER_TELEMETRY_PORT"
BASE_ALLOW: tuple[str, ...] = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "HOSTNAME",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TZ",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "GOMAXPROCS",
    "GOMEMLIMIT",
    "GOGC",
)
OWN_PREFIX = "CTRLTOWER_"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\*?$")


def parse_collector_env(items: Iterable[str]) -> tuple[str, ...]:
    """Check `--collector-env` values (NAME, PREFIX* or NAME=VALUE); ValueError for bad or own names."""
    out: list[str] = []
    for item in items:
        name, sep, _value = item.partition("=")
        if not _NAME.match(name) or (sep and name.endswith("*")):
            raise ValueError(f"--collector-env {item!r}: expected NAME, PREFIX* or NAME=VALUE")
        covers_own = name.endswith("*") and OWN_PREFIX.startswith(name[:-1].upper())
        if name.upper().startswith(OWN_PREFIX) or covers_own:
            raise ValueError(
                f"--collector-env {item!r}: the agent's own CTRLTOWER_* variables (its enroll token "
                "among them) are never passed to the collector"
            )
        out.append(item)
    return tuple(out)


def _matches(name: str, pattern: str) -> bool:
    return name.startswith(pattern[:-1]) if pattern.endswith("*") else name == pattern


def collector_environment(
    environ: Mapping[str, str], named: Iterable[str], telemetry_port: int
) -> dict[str, str]:
    """The environment to start the collector with (`named`: values checked by parse_collector_env)."""
    patterns = list(BASE_ALLOW)
    explicit: dict[str, str] = {}
    for item in named:
        name, sep, value = item.partition("=")
        if sep:
            explicit[name] = value
        else:
            patterns.append(name)
    env = {
        k: v
        for k, v in environ.items()
        if not k.upper().startswith(OWN_PREFIX) and any(_matches(k, p) for p in patterns)
    }
    env.update(explicit)
    env[TELEMETRY_PORT_VAR] = str(telemetry_port)
    return env
