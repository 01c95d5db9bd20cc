"""The `ctrltower` command line: one entry point that lazily loads each part's commands.

Commands import their part only when run, so `ctrltower agent` works on a host where Flask,
DuckDB, networkx and GitPython are not installed.
"""

__version__ = "0.1.0"
