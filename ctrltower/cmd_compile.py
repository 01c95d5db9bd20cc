"""`ctrltower validate | render | import | schema`: the compiler's commands.

The I/O (files; the collector subprocess through agent.supervisor.check_config) lives here, never in compiler/

Exit codes (ctrltower/exit_codes.py): 0 ok (warnings allowed), 1 the repo (or the import) has errors,
2 usage errors, 70 a bug.
"""

from __future__ import annotations

import re
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import click

from agent.supervisor import CollectorNotRunnable, check_config
from compiler.api import compile_repo
from compiler.files import symlink_diagnostic
from compiler.importer import SCHEMA_DIR, import_collector_configs
from compiler.jsonschema import json_schemas
from compiler.loader import Located, Source, diagnostic
from compiler.repo import LoadedRepo, is_repo_file
from compiler.report import FORMATS, format_diagnostics, format_github
from ctrltower import exit_codes
from ctrltower.repo_dir import scan_repo_dir
from fsio.atomic import atomic_write
from schemas.diagnostics import Diagnostic, has_errors, sort_diagnostics

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
COLLECTOR_TIMEOUT_S = 60


def write_atomic(path: Path, text: str) -> None:
    """Write via a temp file and rename (fsio.atomic, 0600), so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text.encode("utf-8"))


def _emit(diags: list[Diagnostic], fmt: str, files: Mapping[str, bytes], prefix: str = "") -> None:
    text = format_github(diags, prefix) if fmt == "github" else format_diagnostics(diags, fmt, files)
    if text:
        click.echo(text, nl=False)


def _group_source(repo: LoadedRepo, group: str) -> Located:
    """Where a group's collector problems point: its `name:` line in its group file."""
    return repo.groups.get(group) or Source(f"groups/{group}.yaml")


def collector_check(binary: Path, configs: Mapping[str, str], repo: LoadedRepo) -> list[Diagnostic]:
    """Run `<binary> validate --config F` on each rendered config; failures become CT501/CT502."""
    diags: list[Diagnostic] = []
    with tempfile.TemporaryDirectory(prefix="ctrltower-validate-") as tmp:
        for group in sorted(configs):
            path = Path(tmp) / f"{group}.yaml"
            path.write_text(configs[group], encoding="utf-8")
            try:
                error = check_config(binary, path, None, COLLECTOR_TIMEOUT_S)
            except CollectorNotRunnable as exc:
                diags.append(
                    diagnostic(_group_source(repo, group), ("name",), "CT502", f"{exc}", group=group)
                )
                continue
            if error is not None:
                reason = " ".join(ln.strip() for ln in error.splitlines() if ln.strip())
                diags.append(
                    diagnostic(
                        _group_source(repo, group),
                        ("name",),
                        "CT501",
                        f"the collector rejects group '{group}': {reason[:2000]}",
                        hint="render the group and run the collector's validate on it to see every detail",
                        group=group,
                    )
                )
    return diags


repo_option = click.option(
    "--repo",
    "repo_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The config repo's root directory.",
)
out_option = click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output directory.",
)


@click.command()
@repo_option
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
@click.option(
    "--collector",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Also run this collector binary's `validate` on each rendered config.",
)
@click.option("--path-prefix", default="", help="Prefix for paths in github annotations (repo in a subdir).")
def validate(repo_dir: Path, fmt: str, collector: Path | None, path_prefix: str) -> None:
    """Check a config repo and report every problem (exit 0: no errors, 1: errors, 2: usage)."""
    files, refused = scan_repo_dir(repo_dir)
    result = compile_repo(files)
    diags = sort_diagnostics(refused + list(result.diagnostics))
    if collector is not None and result.ok and not refused and result.repo is not None:
        diags = sort_diagnostics(diags + collector_check(collector, result.configs, result.repo))
    _emit(diags, fmt, files, path_prefix)
    sys.exit(exit_codes.FINDINGS if has_errors(diags) else exit_codes.OK)


@click.command()
@repo_option
@out_option
@click.option("--group", "groups", multiple=True, help="Render only this group (repeatable).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
def render(repo_dir: Path, out_dir: Path, groups: tuple[str, ...], fmt: str) -> None:
    """Write OUT/<group>.yaml for every group; nothing is written when the repo has errors."""
    files, refused = scan_repo_dir(repo_dir)
    result = compile_repo(files, only_groups=groups or None)
    ok = result.ok and not has_errors(refused)
    unknown = sorted(set(groups) - set(result.configs)) if ok else []
    if unknown:
        raise click.BadParameter(f"no such group: {', '.join(unknown)}", param_hint="--group")
    if not ok:
        diags = sort_diagnostics(refused + list(result.diagnostics))
        click.echo(format_diagnostics(diags, fmt, files), nl=False, err=fmt == "text")
        sys.exit(exit_codes.FINDINGS)
    if result.diagnostics:
        click.echo(format_diagnostics(result.diagnostics, "text", files), nl=False, err=True)
    for group, config in sorted(result.configs.items()):
        write_atomic(out_dir / f"{group}.yaml", config)
        click.echo(f"wrote {out_dir / f'{group}.yaml'}")
    sys.exit(exit_codes.OK)


def _check_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and (not NAME_RE.match(value) or len(value) > 63):
        raise click.BadParameter("must match [a-z0-9][a-z0-9-]* (at most 63 characters)")
    return value


def _source_names(paths: tuple[Path, ...]) -> list[str]:
    """How diagnostics name the collector files: the file name, or the path as given when two
    files share a name (base/config.yaml and prod/config.yaml)."""
    names = [p.name for p in paths]
    return names if len(set(names)) == len(names) else [str(p) for p in paths]


@click.command(name="import")
@click.argument(
    "collector_configs",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option(
    "--repo",
    "repo_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The config repo to write into (created if missing).",
)
@click.option("--group", required=True, callback=_check_name, help="The agent group to import into.")
@click.option("--pipeline", callback=_check_name, help="Pipeline name (default: the group name).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
def import_(
    collector_configs: tuple[Path, ...], repo_dir: Path, group: str, pipeline: str | None, fmt: str
) -> None:
    """Turn an existing collector config into pipeline and group files (exit 1 if it cannot).

    Several files are merged in the order given, as `otelcol --config A --config B` merges them.
    """
    existing, refused = scan_repo_dir(repo_dir) if repo_dir.is_dir() else ({}, [])
    if (repo_dir / SCHEMA_DIR).is_symlink():  # import writes there
        refused.append(symlink_diagnostic(SCHEMA_DIR))
    if refused:  # never read through, or write through, a link out of the repo
        _emit(sort_diagnostics(refused), fmt, {})
        sys.exit(exit_codes.FINDINGS)
    if repo_dir.is_dir():
        existing.update(
            {
                p.relative_to(repo_dir).as_posix(): b""
                for p in (repo_dir / ".schema").glob("*.json")
                if p.is_file()
            }
        )
    sources = {
        name: path.read_bytes()
        for name, path in zip(_source_names(collector_configs), collector_configs, strict=True)
    }
    result = import_collector_configs(
        list(sources.items()), group=group, pipeline=pipeline, existing=existing
    )
    if not result.ok:
        _emit(sort_diagnostics(result.diagnostics), fmt, sources)
        sys.exit(exit_codes.FINDINGS)
    merged = {k: v for k, v in existing.items() if is_repo_file(k)}
    merged.update({k: v.encode("utf-8") for k, v in result.files.items()})
    check = compile_repo(merged)
    for path, text in sorted(result.files.items()):
        write_atomic(repo_dir / path, text)
        if fmt == "text":
            click.echo(f"wrote {repo_dir / path}")
    diags = sort_diagnostics(result.diagnostics + check.diagnostics)
    _emit(diags, fmt, {**sources, **merged})
    sys.exit(exit_codes.FINDINGS if has_errors(diags) else exit_codes.OK)


@click.command()
@out_option
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if the files in OUT are missing or stale.")
def schema(out_dir: Path, check: bool) -> None:
    """Export the JSON Schema of the repo file kinds (AgentGroup, Pipeline, Settings)."""
    stale = []
    for filename, text in sorted(json_schemas().items()):
        path = out_dir / filename
        if check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
            continue
        write_atomic(path, text)
        click.echo(f"wrote {path}")
    if stale:
        click.echo(
            f"stale JSON Schema (run `ctrltower schema --out {out_dir}`): {', '.join(stale)}", err=True
        )
        sys.exit(exit_codes.FINDINGS)
    sys.exit(exit_codes.OK)
