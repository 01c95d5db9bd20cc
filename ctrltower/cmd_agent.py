"""`ctrltower agent`: run the agent that supervises one collector. Needs only the base dependencies."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import click

from ctrltower import exit_codes
from ctrltower.params import option, parse_duration, parse_labels, parse_listen


@click.command("agent")
@click.option("--server", required=True, envvar="CTRLTOWER_SERVER", help="Control plane base URL.")
@click.option(
    "--enroll-token", required=True, envvar="CTRLTOWER_ENROLL_TOKEN", help="Enroll token (or env var)."
)
@click.option(
    "--collector",
    "collector",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The otelcol binary to run.",
)
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path), help="Config path.")
@click.option("--state-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--labels",
    default="",
    envvar="CTRLTOWER_LABELS",
    metavar="labels",
    callback=option(parse_labels),
    help="k=v,k2=v2",
)
@click.option(
    "--metrics-listen",
    default=None,
    metavar="HOST:PORT",
    callback=option(parse_listen),
    help="Serve /metrics here.",
)
@click.option("--metrics-url", default=None, help="The /metrics URL the server scrapes (default: derived).")
@click.option(
    "--poll-interval",
    default=None,
    metavar="duration",
    callback=option(parse_duration),
    help="e.g. 15s; default: the server's.",
)
@click.option("--telemetry-port", default=None, type=click.IntRange(1, 65535), help="Collector metrics port.")
@click.option(
    "--health-timeout",
    default="15s",
    metavar="duration",
    callback=option(parse_duration),
    show_default=True,
)
@click.option(
    "--trust-key",
    "trust_keys",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Run only configs signed by this public key (repeat for a rotation). Without: not verified.",
)
@click.option("--hostname", default=None, help="Reported hostname (default: this host's).")
@click.option(
    "--collector-env",
    "collector_env",
    multiple=True,
    metavar="NAME|PREFIX*|NAME=VALUE",
    help="Pass this variable to the collector (repeatable); it gets only an allow-list otherwise.",
)
@click.option(
    "--protocol",
    type=click.Choice(["http", "opamp"]),
    default="http",
    show_default=True,
    envvar="CTRLTOWER_PROTOCOL",
    help="http: the agent API; opamp: OpAMP over HTTP (POST /v1/opamp, docs/opamp.md).",
)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def agent(
    server: str,
    enroll_token: str,
    collector: Path,
    config_path: Path,
    state_dir: Path,
    labels: dict[str, str],
    metrics_listen: tuple[str, int] | None,
    metrics_url: str | None,
    poll_interval: float | None,
    telemetry_port: int | None,
    health_timeout: float,
    trust_keys: tuple[Path, ...],
    hostname: str | None,
    collector_env: tuple[str, ...],
    protocol: str,
    verbose: bool,
) -> None:
    """Run the agent: pull configs, run and supervise the collector, report status.

    Exits 0 on SIGTERM/SIGINT or a `shutdown` command (the collector is stopped first), 2 on bad
    options. It never exits because the server is away.
    """
    from prometheus_client import CollectorRegistry
    from pydantic import ValidationError

    from agent.environment import parse_collector_env
    from agent.runner import Agent
    from agent.settings import AgentSettings
    from ctrltower.keyfiles import load_trust_keys
    from schemas.errors import CtrlTowerError
    from schemas.signing import KeyFileError

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "httpcore"):  # one line per poll is noise; the agent logs what matters
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    try:
        passed = parse_collector_env(collector_env)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--collector-env") from exc
    try:
        settings = AgentSettings(
            server=server,
            enroll_token=enroll_token,
            collector=collector.resolve(),
            config_path=config_path.absolute(),
            state_dir=state_dir.absolute(),
            labels=labels,
            metrics_host=metrics_listen[0] if metrics_listen else "127.0.0.1",
            metrics_port=metrics_listen[1] if metrics_listen else None,
            metrics_url=metrics_url,
            poll_interval_s=poll_interval,
            telemetry_port=telemetry_port,
            health_timeout_s=health_timeout,
            hostname=hostname,
            collector_env=passed,
        )
    except ValidationError as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        keys = load_trust_keys(trust_keys)
    except KeyFileError as exc:
        raise click.BadParameter(str(exc), param_hint="--trust-key") from exc
    if keys and protocol == "opamp":
        # OpAMP's remote config carries no ctrltower statement: refuse rather than pretend to verify.
        raise click.BadParameter("works with --protocol http only", param_hint="--trust-key")
    try:
        if protocol == "opamp":
            from agent.opamp_agent import OpampAgent

            runner: Agent = OpampAgent(settings, CollectorRegistry())
        else:
            runner = Agent(settings, CollectorRegistry(), trust_keys=keys)
    except OSError as exc:
        click.echo(f"ctrltower agent: {exc}", err=True)
        sys.exit(exit_codes.USAGE)
    try:
        runner.registration()  # bad labels or hostname: say so now, not on every retry
    except ValidationError as exc:
        runner.close()
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise click.UsageError(f"invalid labels or hostname: {problems}") from exc
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        runner.run(stop)
    except CtrlTowerError as exc:  # e.g. the --metrics-listen port is taken
        click.echo(f"ctrltower agent: {exc}", err=True)
        sys.exit(exit_codes.USAGE)
    sys.exit(exit_codes.OK)
