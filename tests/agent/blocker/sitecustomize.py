"""Put on PYTHONPATH, this makes the server's dependencies unimportable (as on an agent-only host)."""

import sys
from importlib.abc import MetaPathFinder

BLOCKED = {"flask", "duckdb", "networkx", "git", "jinja2", "granian", "numpy", "werkzeug"}


class _Blocker(MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):  # type: ignore[no-untyped-def]
        if fullname.split(".")[0] in BLOCKED:
            message = f"No module named {fullname!r} (blocked: agent-only host)"
            raise ModuleNotFoundError(message, name=fullname)
        return None


sys.meta_path.insert(0, _Blocker())
