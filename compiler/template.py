"""Jinja2 templating of config string values, in a sandbox, with undefined variables as errors.

Only strings containing `{{` or `{%` are templates; everything else, `${env:X}` included, passes
through untouched. A value that is exactly one `{{ expression }}` keeps the expression's type when it
is a number or a boolean (`limit_mib: "{{ vars.mib }}"` renders as an integer, as the collector needs).
A template sees `vars` (the group's vars), `group` (name, selector, priority) and `pipeline` (the
pipeline's name).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

Path = tuple[str | int, ...]
_SINGLE = re.compile(r"\{\{-?(?P<expr>(?:(?!\{\{|\}\}|\{%).)+?)-?\}\}", re.S)


def is_template(value: str) -> bool:
    return "{{" in value or "{%" in value


@dataclass(frozen=True)
class TemplateProblem:
    code: str  # CT401 syntax, CT402 undefined, CT403 sandbox, CT404 other
    message: str
    path: Path


MAX_SEQUENCE = 100_000  # a template may not build strings or lists longer than this with * (memory DoS)
MAX_EXPONENT = 1_000


class _Sandbox(SandboxedEnvironment):
    """The sandbox, plus limits on the operators that turn a short template into gigabytes or hours."""

    intercepted_binops = frozenset(["*", "**"])

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(n, int) and len(seq) * n > MAX_SEQUENCE:
                    raise SecurityError(f"the result of * would exceed {MAX_SEQUENCE:,} items")
        if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"exponents above {MAX_EXPONENT} are refused")
        return super().call_binop(context, operator, left, right)


class Templater:
    """One per compile run: caches compiled templates (the same string in many groups compiles once)."""

    def __init__(self) -> None:
        self.env = _Sandbox(
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            cache_size=0,
        )
        self._compiled: dict[str, Any] = {}

    def _compile(self, source: str, path: Path) -> Any:
        """A Template, a compiled expression (single `{{ expr }}` values), or the syntax problem."""
        hit = self._compiled.get(source)
        if hit is None:
            try:
                single = _SINGLE.fullmatch(source)
                if single is not None:
                    hit = self.env.compile_expression(single.group("expr"), undefined_to_none=False)
                else:
                    hit = self.env.from_string(source)
            except TemplateSyntaxError as exc:
                hit = TemplateProblem("CT401", f"template syntax error: {exc.message}", ())
            self._compiled[source] = hit
        if isinstance(hit, TemplateProblem):
            return TemplateProblem(hit.code, hit.message, path)
        return hit

    def render_value(
        self, value: Any, context: dict[str, Any], path: Path, problems: list[TemplateProblem]
    ) -> Any:
        """value with every template string rendered; problems are appended, never raised."""
        if isinstance(value, str):
            if not is_template(value):
                return value
            tpl = self._compile(value, path)
            if isinstance(tpl, TemplateProblem):
                problems.append(tpl)
                return value
            try:
                if isinstance(tpl, jinja2.Template):
                    return tpl.render(context)
                result = tpl(**context)
                if isinstance(result, bool | int | float):
                    return result
                return str(result)
            except UndefinedError as exc:
                problems.append(TemplateProblem("CT402", f"undefined template variable: {exc.message}", path))
            except SecurityError as exc:
                problems.append(TemplateProblem("CT403", f"template refused by the sandbox: {exc}", path))
            except TemplateSyntaxError as exc:
                problems.append(TemplateProblem("CT401", f"template syntax error: {exc.message}", path))
            except Exception as exc:  # any runtime error inside a user template is the user's to fix
                problems.append(
                    TemplateProblem("CT404", f"template error: {type(exc).__name__}: {exc}", path)
                )
            return value
        if isinstance(value, dict):
            return {k: self.render_value(v, context, (*path, k), problems) for k, v in value.items()}
        if isinstance(value, list):
            return [self.render_value(v, context, (*path, i), problems) for i, v in enumerate(value)]
        return value


def has_templates(value: Any) -> bool:
    if isinstance(value, str):
        return is_template(value)
    if isinstance(value, dict):
        return any(has_templates(v) for v in value.values())
    if isinstance(value, list):
        return any(has_templates(v) for v in value)
    return False


def escape_literal(value: str) -> str:
    """Make text that looks like a template come back verbatim when rendered (used by import)."""
    if not is_template(value):
        return value
    if "{% endraw %}" not in value and "{%endraw%}" not in value:
        return "{% raw %}" + value + "{% endraw %}"
    # A raw block cannot hold its own end tag: fall back to a string-literal expression.
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return "{{ '" + escaped + "' }}"
