"""Name what a diagnostic is about by what the user wrote: node ids, edge endpoints, group names.

A path inside a repo file such as ('nodes', 3, 'config', 'include', 0) is how pydantic and the
positions index values, but "nodes[3]" makes the user count. `where()` turns the list items that
have an identity into it: node 'tail', edge tail->batch, group 'edge', component 'acme' (receiver),
and gives the key path in the same words (`nodes[tail].config.include[0]`). file:line:col still
come from the path itself (see compiler.loader.diagnostic).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from compiler.loader import Path

# Top-level lists whose items have an identity, and how to say one: (kind word, key path form).
IDENTIFIED = ("nodes", "edges", "groups", "components")


@dataclass(frozen=True)
class Where:
    subject: str | None  # "node 'tail'", "edge tail->batch", ... (None: not inside such an item)
    node: str | None  # for Location.node: the node id, or 'from->to' for an edge
    rest: Path  # the path after the item
    key_path: str | None  # the whole path in the same words

    def field(self) -> str | None:
        """The rest of the path, dotted (`config.include[0]`), None when the item itself is meant."""
        return dotted(self.rest) or None

    def prefix(self) -> str:
        """`node 'tail': config: ` / `node 'tail': ` / `config: `: what a message starts with."""
        parts = [p for p in (self.subject, self.field()) if p]
        return "".join(f"{p}: " for p in parts)


def dotted(path: Path) -> str:
    """('config', 'include', 0) -> 'config.include[0]' (list items inside values keep their index)."""
    out = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _identity(doc: Mapping[str, Any], section: str, index: int) -> tuple[str, str, str | None] | None:
    """(subject, key form, Location.node) of item `index` of `section`, from the file's data."""
    items = doc.get(section)
    if not isinstance(items, Sequence) or isinstance(items, str) or not 0 <= index < len(items):
        return None
    item = items[index]
    if section == "groups":
        name = _text(item)
        return (f"group '{name}'", name, None) if name else None
    if not isinstance(item, Mapping):
        return None
    if section == "nodes":
        nid = _text(item.get("id"))
        return (f"node '{nid}'", nid, nid) if nid else None
    if section == "edges":
        a, b = _text(item.get("from")), _text(item.get("to"))
        if a is None or b is None:
            return None
        label = f"{a}->{b}"
        return (f"edge {label}", label, label)
    type_ = _text(item.get("type"))
    if type_ is None:
        return None
    cls = _text(item.get("class"))
    return (f"component '{type_}'" + (f" ({cls})" if cls else ""), type_, None)


def where(doc: Any, path: Path) -> Where:
    """Where `path` points inside the file whose data is `doc` (a pipeline, group or settings file)."""
    if (
        len(path) >= 2
        and path[0] in IDENTIFIED
        and isinstance(path[1], int)
        and not isinstance(path[1], bool)
        and isinstance(doc, Mapping)
    ):
        section, index, rest = str(path[0]), path[1], path[2:]
        ident = _identity(doc, section, index)
        if ident is None:  # no usable id: say which one in human counting, not as an index
            word = section[:-1]
            subject, key, node = f"{word} #{index + 1}", f"#{index + 1}", None
        else:
            subject, key, node = ident
        tail = dotted(rest)
        key_path = f"{section}[{key}]" + (("" if tail.startswith("[") else ".") + tail if tail else "")
        return Where(subject, node, rest, key_path)
    return Where(None, None, path, dotted(path) or None)


def model_doc(model: Any) -> dict[str, Any]:
    """The identities `where` needs from a validated Pipeline (or settings) model, without a full dump."""
    out: dict[str, Any] = {}
    if hasattr(model, "nodes"):
        out["nodes"] = [{"id": n.id} for n in model.nodes]
        out["edges"] = [{"from": e.from_, "to": e.to} for e in model.edges]
        out["groups"] = list(model.groups)
    if hasattr(model, "components"):
        out["components"] = [{"type": c.type, "class": c.class_} for c in model.components]
    return out
