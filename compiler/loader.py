"""YAML loading that keeps source positions, and turns every way a file can be broken into diagnostics.

PyYAML's C parser builds the node tree (fast); this module walks it into plain Python values while
recording where each value (and each mapping key) starts, keyed by its path inside the document, so a
pydantic error at ('nodes', 2, 'type') or a template error in a config value maps back to file:line:col.
Alias bombs, deep nesting, huge files, non-UTF-8 and binary junk all end as one diagnostic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import yaml

from schemas.diagnostics import Diagnostic, Location

try:  # the C parser when libyaml is present (it is in the wheels we install)
    from yaml import CSafeDumper as _Dumper
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - pure-Python fallback
    from yaml import SafeDumper as _Dumper  # type: ignore[assignment]
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]


class _Loader12(_Loader):
    """Plain scalars resolved as the collector (Go, YAML 1.2 core schema) reads them, not as YAML 1.1.

    PyYAML follows YAML 1.1, where `on`, `yes`, `off`, `no` are booleans, `12:30` is the integer 750 and
    `2024-01-01` a date; the collector reads all of these as strings. Rendering a 1.1 reading would
    change what the reviewer saw, so only true/false, null, decimal/0o/0x integers and floats resolve.
    """


_Loader12.yaml_implicit_resolvers = {
    first: [
        (tag, rx)
        for tag, rx in resolvers
        if tag.rsplit(":", 1)[-1] not in ("bool", "int", "float", "timestamp")
    ]
    for first, resolvers in _Loader.yaml_implicit_resolvers.items()
}
_Loader12.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader12.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)
_Loader12.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)

Path = tuple[str | int, ...]
Pos = tuple[int, int]

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_VALUES = 1_000_000  # values after alias expansion: beyond this it is an alias bomb, not a config
MAX_EXPANDED_CHARS = 2 * MAX_FILE_BYTES  # text after alias expansion (shared blocks, not amplification)
MAX_DEPTH = 200

_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
_KNOWN_TAGS = frozenset(
    f"tag:yaml.org,2002:{t}"
    for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp", "binary", "merge")
)


@dataclass
class Positions:
    """Where each value (and each mapping key) of one document starts: 1-based line and column."""

    values: dict[Path, Pos] = field(default_factory=dict)
    keys: dict[Path, Pos] = field(default_factory=dict)

    def value(self, path: Path) -> Pos:
        """The position of the value at path, or of its nearest recorded ancestor."""
        for i in range(len(path), -1, -1):
            pos = self.values.get(path[:i])
            if pos is not None:
                return pos
        return (1, 1)

    def key(self, path: Path) -> Pos:
        """The position of the key naming path (falls back to the value, then to ancestors)."""
        pos = self.keys.get(path)
        return pos if pos is not None else self.value(path)


@dataclass
class LoadedDoc:
    data: Any
    positions: Positions


class Located(Protocol):
    """Anything read from one file with positions: a loaded group or pipeline, a `Source`."""

    @property
    def file(self) -> str: ...

    @property
    def positions(self) -> Positions: ...


@dataclass(frozen=True)
class Source:
    """A file and its positions (empty when the file did not parse: every path then points at 1:1)."""

    file: str
    positions: Positions = field(default_factory=Positions)


def dotted(path: Path) -> str | None:
    """('nodes', 'tail', 'config') -> 'nodes.tail.config' (None for the document itself)."""
    return ".".join(str(x) for x in path) or None


def diagnostic(
    source: Located,
    path: Path,
    code: str,
    message: str,
    *,
    severity: Literal["error", "warning"] = "error",
    hint: str | None = None,
    at_key: bool = False,
    key_path: str | None = None,
    pipeline: str | None = None,
    node: str | None = None,
    group: str | None = None,
    pos: Pos | None = None,
) -> Diagnostic:
    """The one way the compiler builds a diagnostic: at `path` inside `source` (its value, or its key
    with at_key), file:line:col from the positions; key_path defaults to the dotted path. `pos`
    overrides the position for the few problems found before there is a path (a duplicate key)."""
    if pos is None:
        pos = source.positions.key(path) if at_key else source.positions.value(path)
    line, column = pos
    return Diagnostic(
        code=code,
        severity=severity,
        message=message,
        hint=hint,
        location=Location(
            file=source.file,
            line=line,
            column=column,
            pipeline=pipeline,
            node=node,
            key_path=key_path if key_path is not None else dotted(path),
        ),
        group=group,
    )


class LoadError(Exception):
    """One problem that stops loading a file; carried out as a diagnostic."""

    def __init__(self, code: str, message: str, line: int = 0, column: int = 0, hint: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.line = line
        self.column = column
        self.hint = hint

    @classmethod
    def at(cls, node: yaml.Node, code: str, message: str, hint: str | None = None) -> LoadError:
        """The problem at a YAML node: its start mark, 1-based, is the location."""
        mark = node.start_mark
        return cls(code, message, mark.line + 1, mark.column + 1, hint=hint)

    def diagnostic(self, file: str) -> Diagnostic:
        return diagnostic(
            Source(file), (), self.code, self.message, hint=self.hint, pos=(self.line, self.column)
        )


class _Builder:
    """Turns a composed node tree into Python values, recording positions (the hot path: keep it lean)."""

    def __init__(self, merge_keys: bool) -> None:
        self.positions = Positions()
        self.values = self.positions.values
        self.keys = self.positions.keys
        self.scalars = yaml.constructor.SafeConstructor()
        self.constructors = yaml.constructor.SafeConstructor.yaml_constructors
        self.duplicates: list[tuple[str, Pos]] = []
        self.merge_keys = merge_keys

    def _scalar(self, node: yaml.Node) -> Any:
        fn = self.constructors.get(node.tag) if node.tag in _KNOWN_TAGS else None
        if fn is None:
            raise _bad_tag(node)
        return fn(self.scalars, node)

    def build(self, node: yaml.Node, path: Path, depth: int) -> Any:
        mark = node.start_mark
        self.values[path] = (mark.line + 1, mark.column + 1)
        cls = node.__class__
        if cls is yaml.ScalarNode:
            return node.value if node.tag == _STR_TAG else self._scalar(node)
        if node.tag not in _KNOWN_TAGS:
            raise _bad_tag(node)
        if depth > MAX_DEPTH:
            raise LoadError.at(node, "CT107", f"document is nested more than {MAX_DEPTH} levels deep")
        if cls is yaml.SequenceNode:
            return [self.build(child, (*path, i), depth + 1) for i, child in enumerate(node.value)]
        if (
            self.merge_keys
            and isinstance(node, yaml.MappingNode)
            and any(k.tag == _MERGE_TAG for k, _ in node.value)
        ):
            self.scalars.flatten_mapping(node)
        result: dict[Any, Any] = {}
        keys = self.keys
        for key_node, value_node in node.value:
            km = key_node.start_mark
            if key_node.__class__ is not yaml.ScalarNode:
                raise LoadError("CT101", "mapping keys must be plain scalars", km.line + 1, km.column + 1)
            key = key_node.value if key_node.tag == _STR_TAG else self._scalar(key_node)
            if key.__class__ not in (str, int, float, bool) and key is not None:
                key = str(key)
            key_pos = (km.line + 1, km.column + 1)
            if key in result:
                self.duplicates.append((str(key), key_pos))
            child_path = (*path, key)
            keys[child_path] = key_pos
            result[key] = self.build(value_node, child_path, depth + 1)
        return result


def _bad_tag(node: yaml.Node) -> LoadError:
    return LoadError.at(
        node,
        "CT101",
        f"unsupported YAML tag {node.tag!r}",
        hint="repo files use plain YAML: no language-specific or custom tags",
    )


def _check_size(root: yaml.Node) -> None:
    """Reject alias bombs before expanding them: count values, and characters of text, after
    expansion, memoized per node. Characters matter as much as values: a 2 MiB string aliased a
    million times is few values, but a terabyte once the rendered config is written out."""
    sizes: dict[int, tuple[int, int]] = {}

    def size(node: yaml.Node, depth: int) -> tuple[int, int]:
        known = sizes.get(id(node))
        if known is not None:
            return known
        if depth > MAX_DEPTH:
            raise LoadError.at(
                node,
                "CT107",
                f"document is nested more than {MAX_DEPTH} levels deep",
            )
        values, chars = 1, 0
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
            chars = len(node.value) if isinstance(node.value, str) else 0
        for child in children:
            v, c = size(child, depth + 1)
            values += v
            chars += c
        if values > MAX_VALUES:
            raise LoadError.at(
                node,
                "CT107",
                f"document expands to more than {MAX_VALUES:,} values (alias bomb?)",
            )
        if chars > MAX_EXPANDED_CHARS:
            raise LoadError.at(
                node,
                "CT107",
                f"document expands to more than {MAX_EXPANDED_CHARS:,} characters of text (alias bomb?)",
            )
        sizes[id(node)] = (values, chars)
        return values, chars

    size(root, 0)


def decode(raw: bytes | str) -> str:
    """Bytes to text: UTF-8 only (a BOM is tolerated); anything else is CT100."""
    if isinstance(raw, str):
        text = raw
    else:
        if len(raw) > MAX_FILE_BYTES:
            raise LoadError("CT102", f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise LoadError("CT100", f"file is not valid UTF-8 (byte offset {exc.start})", line, 0) from None
    if len(text) > MAX_FILE_BYTES:
        raise LoadError("CT102", f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    if "\x00" in text:
        raise LoadError(
            "CT100", "file contains NUL bytes (binary file?)", text[: text.index("\x00")].count("\n") + 1
        )
    return text.removeprefix("\ufeff")


def load_yaml(raw: bytes | str) -> tuple[LoadedDoc | None, list[tuple[str, Pos]]]:
    """Parse one single-document YAML file. Returns (None, []) for an empty file.

    Raises LoadError for anything that prevents loading; the second item lists duplicate keys
    (key, position), which the caller reports without stopping.
    """
    text = decode(raw)
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader12))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
        problem = exc.problem or exc.context or "invalid YAML"
        raise LoadError("CT101", f"YAML syntax error: {problem}", line, col) from None
    except yaml.YAMLError as exc:
        raise LoadError(
            "CT101", f"YAML error: {str(exc).splitlines()[0] if str(exc) else 'invalid'}"
        ) from None
    except RecursionError:
        raise LoadError("CT107", "document is nested too deeply to parse") from None
    if not nodes:
        return None, []
    if len(nodes) > 1:
        second = nodes[1]
        raise LoadError(
            "CT108",
            "a repo file holds exactly one YAML document",
            second.start_mark.line + 1,
            second.start_mark.column + 1,
            hint="split the documents into separate files",
        )
    builder = _Builder(merge_keys="<<" in text)
    try:
        if "&" in text:  # aliases need anchors: without any, the size is bounded by the file's
            _check_size(nodes[0])
        data = builder.build(nodes[0], (), 0)
    except RecursionError:
        raise LoadError("CT107", "document is nested too deeply") from None
    except yaml.YAMLError as exc:
        raise LoadError("CT101", f"YAML error: {str(exc).splitlines()[0]}") from None
    return LoadedDoc(data=data, positions=builder.positions), builder.duplicates


class _NoAliasDumper(_Dumper):
    """Shared values (a processor config used in two places) are written out, never as &anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


# Strings that YAML 1.2 (the collector) would read as numbers but YAML 1.1 would not (0o17, 1e3) must be
# quoted too: the dumper resolves with both rule sets, and quotes a string either would misread.
for _tag, _rx, _first in (
    ("tag:yaml.org,2002:int", r"^0o[0-7]+$", ["0"]),
    (
        "tag:yaml.org,2002:float",
        r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$",
        list("-+0123456789."),
    ),
):
    _NoAliasDumper.add_implicit_resolver(_tag, re.compile(_rx), _first)


def dump_yaml(data: Any) -> str:
    """Deterministic block-style YAML: key order as given (callers sort), no aliases, no line folding."""

    return yaml.dump(
        data,
        Dumper=_NoAliasDumper,
        default_flow_style=False,
        sort_keys=False,
        allow_unicode=True,
        width=1 << 30,
        indent=2,
    )
