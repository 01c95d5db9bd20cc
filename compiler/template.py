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

from compiler.sandbox import MAX_STRING, BudgetExceeded, Sandbox, check_result

Path = tuple[str | int, ...]
_SINGLE = re.compile(r"\{\{-?(?P<expr>(?:(?!\{\{|\}\}|\{%).)+?)-?\}\}", re.S)


def is_template(value: str) -> bool:
    return "{{" in value or "{%" in value


@dataclass(frozen=True)
class TemplateProblem:
    code: str  # CT401 syntax, CT402 undefined, CT403 sandbox, CT404 other, CT405 over budget
    message: str
    path: Path


class Templater:
    """One per compile run: caches compiled templates (the same string in many groups compiles once)."""

    def __init__(self) -> None:
        self.env = Sandbox(
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            cache_size=0,
        )
        self._compiled: dict[str, Any] = {}

    def start_budget(self) -> None:
        """A fresh step and output budget (compiler/sandbox.py): called once per group's render."""
        self.env.start()

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
            if self.env.budget.exhausted:
                return value  # the group already failed with CT405: one diagnostic, not thousands
            tpl = self._compile(value, path)
            if isinstance(tpl, TemplateProblem):
                problems.append(tpl)
                return value
            try:
                if isinstance(tpl, jinja2.Template):
                    return _joined(tpl.generate(context))
                result = check_result(tpl(**context))
                if isinstance(result, bool | int | float):
                    return result
                return _joined([str(result)])
            except BudgetExceeded as exc:
                problems.append(TemplateProblem("CT405", f"template over its budget: {exc}", path))
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


def _joined(chunks: Any) -> str:
    """The rendered value, refused as soon as it passes MAX_STRING characters (never built whole)."""
    out: list[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_STRING:
            raise BudgetExceeded(f"a rendered value of more than {MAX_STRING:,} characters")
        out.append(chunk)
    return "".join(out)


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
