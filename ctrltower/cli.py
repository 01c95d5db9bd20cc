"""Top-level click group. Each part registers its commands in its own `ctrltower/cmd_*.py` module,
named in COMMANDS and imported only when that command runs."""

from __future__ import annotations

import importlib
import sys

import click

from ctrltower import __version__, exit_codes

# command name -> ("module:attribute" of a click.Command, one-line help). Loaded lazily; the help
# line is here so `ctrltower --help` imports nothing.
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("ctrltower.cmd_compile:validate", "Check a config repo and report every problem."),
    "render": ("ctrltower.cmd_compile:render", "Write each group's rendered collector config."),
    "import": ("ctrltower.cmd_compile:import_", "Turn an existing collector config into repo files."),
    "schema": ("ctrltower.cmd_compile:schema", "Export the JSON Schema of the repo file kinds."),
    "plan": ("ctrltower.cmd_reconcile:plan", "Show what a change does to each group (for PR CI)."),
    "reconcile": ("ctrltower.cmd_reconcile:reconcile", "Publish the repo's commit to the server."),
    "status": ("ctrltower.cmd_reconcile:status", "Last reconcile and agents by sync status."),
    "rollout": (
        "ctrltower.cmd_rollout:rollout",
        "Progressive rollouts: status, promote, pause, resume, abort.",
    ),
    "server": ("ctrltower.cmd_server:server", "Run the control plane server."),
    "token": ("ctrltower.cmd_server:token", "Create, list or revoke API tokens."),
    "agent": ("ctrltower.cmd_agent:agent", "Run the agent that supervises a collector."),
    "collector": ("ctrltower.cmd_collector:collector", "Publish collector builds that groups can ask for."),
    "keys": ("ctrltower.cmd_keys:keys", "Generate the key pair that signs configs and collectors."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, attr = entry[0].split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise click.ClickException(
                f"'{cmd_name}' needs a package this install lacks ({exc.name}); "
                "install ctrltower[full] for the server, compiler and reconciler"
            ) from exc
        command = getattr(module, attr)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ctrltower")
def cli() -> None:
    """ctrltower: a GitOps control plane for OpenTelemetry Collector fleets."""


def main() -> None:
    try:
        cli.main(standalone_mode=True)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # a bug: one line, not a traceback, and a distinct code
        click.echo(f"ctrltower: internal error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(exit_codes.INTERNAL)
