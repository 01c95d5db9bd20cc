"""Option values every command shares: durations, label sets, listen addresses (one parser each).

Each parser raises click.BadParameter (a usage error: exit 2, no traceback); `option` turns one into a
click option callback that names the option in the message. Needs only the base install.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from schemas.common import parse_duration as _seconds

T = TypeVar("T")


def parse_duration(text: str) -> float:
    """'500ms', '15s', '5m', '1h', '7d' or plain seconds -> seconds; must be positive."""
    seconds = _seconds(text)
    if seconds is None or seconds <= 0:
        raise click.BadParameter(f"{text!r} is not a duration (a positive one, e.g. 500ms, 30s, 5m, 1h)")
    return seconds


def parse_labels(text: str) -> dict[str, str]:
    """'k=v,k2=v2' -> {'k': 'v', 'k2': 'v2'}; '' -> {}."""
    labels: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"label {part!r} is not KEY=VALUE")
        labels[key.strip()] = value.strip()
    return labels


def parse_listen(text: str) -> tuple[str, int]:
    """'HOST:PORT', '[::1]:PORT' or ':PORT' (127.0.0.1) -> (host, port); port 0 picks a free one."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise click.BadParameter(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def option(parse: Callable[[str], T]) -> Callable[[click.Context, click.Parameter, str | None], T | None]:
    """A click option callback: runs `parse` on the value and names the option in its error."""

    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> T | None:
        if value is None:
            return None
        try:
            return parse(value)
        except click.BadParameter as exc:
            exc.ctx, exc.param = ctx, param
            raise

    return callback


def signing_key_option(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--signing-key PATH (or CTRLTOWER_SIGNING_KEY): the ed25519 private key a command signs with;
    `ctrltower.keyfiles.signer_for_option` loads it (imported only when the command runs)."""
    return click.option(
        "--signing-key",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        envvar="CTRLTOWER_SIGNING_KEY",
        help=help,
    )
