"""The Jinja sandbox templates run in, with deterministic limits on what one render may cost.

Templates come from pull requests, so a template must not be able to change what later templates see,
build gigabytes, or run for hours. `Sandbox` is Jinja's `ImmutableSandboxedEnvironment` (no
`vars.update()`, `list.append()`: one pipeline's template cannot change `vars` for the next) plus:

- size limits checked before the operation when the arguments alone can ask for a huge result
  (`'x'.ljust(N)`, `|center(N)`, `'%0Nd' % x`, `'{:>N}'.format(x)`, `|indent`, `|join`, `replace`,
  `|batch(N)`, `*`, `**`), and on every result after it (strings, lists, integers);
- a step budget shared by one group's whole render: every loop iteration, call, filter, attribute or
  item lookup, operator and output chunk costs steps, large results cost more;
- an output budget for the group: characters written by `{{ }}` and literal text anywhere, macros and
  `{% set %}` blocks included, so a loop cannot build a value larger than the limit out of sight.

Loops, `~` concatenation and output have no hook in Jinja's sandbox; `Sandbox._generate` rewrites
the parsed template so they call the environment (`environment.ct_iter(...)` etc.: attributes of
the environment, which a template cannot rebind). Every limit is counted, never timed, so a render is
deterministic: the same repo fails at the same place on every machine. Over a limit is a
`BudgetExceeded` (CT405), refused operations of the sandbox proper stay `SecurityError` (CT403).
"""

from __future__ import annotations

import re
import string
import types
from collections.abc import Callable, Iterable, Iterator
from functools import wraps
from typing import Any

from jinja2 import nodes, pass_context
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

MAX_STRING = 100_000  # characters in any string a template builds, and in one rendered value
MAX_SEQUENCE = 100_000  # items in any list, tuple or dict a template builds (`*` included)
MAX_INT_BITS = 10_000  # bits of an integer result (about 3,000 digits): big-int arithmetic is slow
MAX_EXPONENT = 1_000
MAX_STEPS = 500_000  # per group render: iterations, calls, lookups, operators, output chunks
MAX_OUTPUT = 2_000_000  # characters of template output per group render
MAX_TOTAL_STEPS = 5_000_000  # per compile, all groups together (a large legitimate repo needs ~1%)
MAX_TOTAL_OUTPUT = 20_000_000
_STEP_CHARS = 100  # a result or output of N characters costs N // 100 steps more


class BudgetExceeded(Exception):
    """A template went over one of the limits above: reported as CT405 at the value's location."""


class Budget:
    """What a render has spent: one per group, each also charging the compile's total (`parent`),
    so a template that stays just under the group budget in every group is still stopped."""

    def __init__(self, max_steps: int, max_output: int, what: str, parent: Budget | None = None) -> None:
        self.max_steps = max_steps
        self.max_output = max_output
        self.what = what
        self.parent = parent
        self.steps = 0
        self.output = 0
        self._exhausted = False

    @property
    def exhausted(self) -> bool:
        return self._exhausted or (self.parent is not None and self.parent.exhausted)

    def charge(self, steps: int) -> None:
        self.steps += steps
        if self.parent is not None:
            self.parent.charge(steps)
        if self.steps > self.max_steps:
            self._exhausted = True
            raise BudgetExceeded(f"{self.what} take more than {self.max_steps:,} steps")

    def write(self, chars: int) -> None:
        self.output += chars
        if self.parent is not None:
            self.parent.write(chars)
        if self.output > self.max_output:
            self._exhausted = True
            raise BudgetExceeded(f"{self.what} write more than {self.max_output:,} characters")


def deep_size(value: Any, limit: int = MAX_STRING) -> int:
    """What writing `value` out would cost: characters of strings plus one per item, nested items
    counted every time they appear (a list of 100,000 references to one long string is as big as its
    text). Stops counting once past `limit`, so the cost of asking is bounded too."""
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str | bytes):
            total += len(item)
        elif isinstance(item, dict):
            total += 1 + 2 * len(item)
            if total <= limit:
                stack.extend(item.keys())
                stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += 1 + len(item)
            if total <= limit:
                stack.extend(item)
        else:
            total += 1
        if total > limit:
            return total
    return total


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str) else deep_size(value)


def check_result(value: Any) -> Any:
    """Refuse a value over the size limits (after it was built from values within them)."""
    if isinstance(value, str | bytes):
        if len(value) > MAX_STRING:
            raise BudgetExceeded(f"a string of more than {MAX_STRING:,} characters")
    elif isinstance(value, list | tuple | dict | set | frozenset):
        if deep_size(value) > MAX_STRING:
            raise BudgetExceeded(f"a list or mapping larger than {MAX_STRING:,} characters and items")
    elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise BudgetExceeded(f"an integer of more than {MAX_INT_BITS:,} bits")
    return value


def _need(size: int, what: str) -> None:
    if size > MAX_STRING:
        raise BudgetExceeded(f"{what} would build more than {MAX_STRING:,} characters")


def _width(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


# printf-style conversion: flags, width, precision (a mapping key is skipped)
_PERCENT = re.compile(r"%(?:\([^)]*\))?([-#0 +]*)(\*|\d+)?(?:\.(\*|\d+))?")


def check_percent_format(fmt: str) -> None:
    """`'%0999999999d' % x`: refuse widths and precisions over the limit, and `*` (taken from args)."""
    for match in _PERCENT.finditer(fmt):
        for part in match.group(2, 3):
            if part == "*":
                raise BudgetExceeded("'*' widths in % formats are not allowed in templates")
            if part is not None and int(part) > MAX_STRING:
                raise BudgetExceeded(f"a % format width over {MAX_STRING:,}")


def check_brace_format(fmt: str) -> None:
    """`'{:>999999999}'.format(x)`: refuse nested fields in a spec and numbers over the limit."""
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # str.format raises the same error itself (CT404)
    for _text, _field, spec, _conv in parsed:
        if not spec:
            continue
        if "{" in spec:
            raise BudgetExceeded("nested fields in a format spec are not allowed in templates")
        if any(int(n) > MAX_STRING for n in re.findall(r"\d+", spec)):
            raise BudgetExceeded(f"a format width or precision over {MAX_STRING:,}")


class _Counted:
    """An iterator paying one step per item, refusing more than MAX_SEQUENCE items from one source."""

    def __init__(self, items: Iterable[Any], budget: Budget) -> None:
        self._items = iter(items)
        self._budget = budget
        self._count = 0

    def __iter__(self) -> _Counted:
        return self

    def __next__(self) -> Any:
        item = next(self._items)
        self._count += 1
        if self._count > MAX_SEQUENCE:
            raise BudgetExceeded(f"more than {MAX_SEQUENCE:,} items from one sequence")
        self._budget.charge(1)
        return item


def _check_str_method(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Before calling a str (or bytes: `'x'.encode()`) method whose arguments alone could ask for
    a huge result."""
    name = getattr(method, "__name__", "")
    text = getattr(method, "__self__", None)
    if not isinstance(text, str | bytes):
        wrapped = getattr(method, "__wrapped__", None)  # the sandbox's str.format wrapper
        text = getattr(wrapped, "__self__", None)
        if not isinstance(text, str | bytes):
            return
    if name in ("ljust", "rjust", "center", "zfill"):
        _need(_width(args[0] if args else kwargs.get("width")), f"{type(text).__name__}.{name}")
    elif name == "expandtabs":
        tab = _width(args[0] if args else kwargs.get("tabsize", 8))
        _need(len(text) * max(tab, 1), "expandtabs")
    elif name == "replace" and len(args) >= 2 and _same_kind(text, args[0], args[1]):
        _need(_replace_bound(text, args[0], args[1]), "replace")
    elif name == "join" and args:
        _need(_join_bound(args[0], len(text)), "join")
    elif name == "translate" and args:
        _need(len(text) * max(1, _longest_value(args[0])), "translate")
    elif name in ("format", "format_map") and isinstance(text, str):
        check_brace_format(text)


def _same_kind(text: str | bytes, old: Any, new: Any) -> bool:
    kind = str if isinstance(text, str) else bytes
    return isinstance(old, kind) and isinstance(new, kind)


def _longest_value(table: Any) -> int:
    """The longest replacement in a str.translate table (a dict) or bytes table (256 bytes)."""
    if isinstance(table, dict):
        if len(table) > MAX_SEQUENCE:
            raise BudgetExceeded(f"a translate table of more than {MAX_SEQUENCE:,} entries")
        return max((len(v) for v in table.values() if isinstance(v, str | bytes)), default=1)
    return 1


def _replace_bound(text: str | bytes, old: Any, new: Any) -> int:
    hits = len(text) + 1 if not old else text.count(old)
    return len(text) + hits * len(new)


def _join_bound(items: Any, sep: int) -> int:
    if not isinstance(items, list | tuple | str | dict | set | frozenset | range):
        return 0  # an iterator: the result is checked after
    if len(items) > MAX_SEQUENCE:
        raise BudgetExceeded(f"joining more than {MAX_SEQUENCE:,} items")
    return sum(len(x) if isinstance(x, str) else 12 for x in items) + sep * len(items)


_Precheck = Callable[[str, tuple[Any, ...], dict[str, Any]], None]


def _filter_precheck(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Filters whose arguments alone could ask for a huge result (args[0] is the filtered value)."""
    value = args[0] if args else None
    text = value if isinstance(value, str) else ""
    rest = args[1:]

    def arg(i: int, key: str, default: Any = None) -> Any:
        return rest[i] if len(rest) > i else kwargs.get(key, default)

    if name == "center":
        _need(_width(arg(0, "width", 80)), "|center")
    elif name == "indent":
        width = arg(0, "width", 4)
        per_line = len(width) if isinstance(width, str) else _width(width)
        _need(len(text) + (text.count("\n") + 1) * per_line, "|indent")
    elif name == "format" and isinstance(value, str):
        check_percent_format(value)
    elif name == "join":
        _need(_join_bound(value, len(str(arg(0, "d", "")))), "|join")
    elif name == "replace" and isinstance(arg(0, "old"), str) and isinstance(arg(1, "new"), str):
        _need(_replace_bound(text, arg(0, "old"), arg(1, "new")), "|replace")
    elif name == "wordwrap":
        width = max(_width(arg(0, "width", 79)), 1)
        wrap = arg(2, "wrapstring", None)
        _need(len(text) + (len(text) // width + 1) * (len(wrap) if isinstance(wrap, str) else 1), "|wordwrap")
    elif name in ("batch", "slice"):
        count = _width(arg(0, "linecount" if name == "batch" else "slices"))
        if count > MAX_SEQUENCE:
            raise BudgetExceeded(f"|{name}({count}) is over {MAX_SEQUENCE:,}")


class _Rewrite(NodeTransformer):
    """Route loops, `~` and output through the environment, where the budget is kept."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _env_call("ct_iter", node.iter)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _env_call("ct_check", node)

    def visit_Compare(self, node: nodes.Compare) -> nodes.Node:
        self.generic_visit(node)
        node.expr = _env_call("ct_operand", node.expr)
        for operand in node.ops:
            operand.expr = _env_call("ct_operand", operand.expr)
        return node

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        node.nodes = [_env_call("ct_out", child) for child in node.nodes]
        return node


_HOOKS = ("ct_iter", "ct_check", "ct_operand", "ct_out")


def _env_call(hook: str, arg: nodes.Node) -> nodes.Filter:
    """`arg|ctrltower_<hook>`: a filter compiles to a direct call (no sandbox round trip per output
    chunk), and the hooks take the context, so Jinja's optimizer never runs them at compile time."""
    node = nodes.Filter(arg, f"ctrltower_{hook}", [], [], None, None)
    node.set_lineno(arg.lineno or 1)
    return node


class Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox plus the budget (see the module docstring). One per Templater; the
    budget is replaced by `start` at the beginning of every group's render."""

    intercepted_binops = frozenset(["+", "-", "*", "/", "//", "%", "**"])

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.total = Budget(MAX_TOTAL_STEPS, MAX_TOTAL_OUTPUT, "the repo's templates, all groups together,")
        self.budget = self.start()
        self.globals.pop("lipsum", None)  # lipsum(n=10**9) writes paragraphs; no use in a config
        self.filters.pop("random", None)  # a render must be deterministic: reviewed == deployed
        self.filters = {name: self._guard(name, fn, _filter_precheck) for name, fn in self.filters.items()}
        tests: dict[str, Any] = dict(self.tests)  # typeshed calls them "function"
        self.tests = {name: self._guard(name, fn, None) for name, fn in tests.items()}
        for hook in _HOOKS:  # a template may name them too: they only count, never skip a check
            method = getattr(self, hook)
            self.filters[f"ctrltower_{hook}"] = pass_context(lambda _ctx, value, _m=method: _m(value))

    def start(self) -> Budget:
        self.budget = Budget(MAX_STEPS, MAX_OUTPUT, "the group's templates", parent=self.total)
        return self.budget

    def _guard(self, name: str, fn: Callable[..., Any], precheck: _Precheck | None) -> Callable[..., Any]:
        """A filter or test that pays for its input, is checked before if its arguments could ask
        for a huge result, and pays for and checks its result."""
        skip = 1 if getattr(fn, "jinja_pass_arg", None) is not None else 0

        @wraps(fn)  # keeps jinja's pass_context/pass_environment marker
        def guarded(*args: Any, **kwargs: Any) -> Any:
            self._pay_for(args[skip:], kwargs)
            if precheck is not None:
                precheck(name, args[skip:], kwargs)
            return self._result(fn(*args, **kwargs))

        return guarded

    def _pay_for(self, args: Iterable[Any], kwargs: dict[str, Any]) -> None:
        """Work proportional to the inputs' size (a scan of a long string, a sort of a long list)."""
        size = sum(deep_size(a) for a in args) + sum(deep_size(v) for v in kwargs.values())
        self.budget.charge(1 + size // _STEP_CHARS)

    def _result(self, value: Any) -> Any:
        """Pay for a result by its size and check it; an iterator is counted item by item."""
        if isinstance(value, types.GeneratorType | map | filter | zip):
            return _Counted(value, self.budget)
        if isinstance(value, str | bytes | list | tuple | dict | set | frozenset):
            self.budget.charge(1 + min(deep_size(value), MAX_STRING + 1) // _STEP_CHARS)
        return check_result(value)

    # --- what templates can do, each paid for ----------------------------------------------------

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        self.budget.charge(1)
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | bytes | list | tuple)
                    and isinstance(n, int)
                    and len(seq) * n > MAX_SEQUENCE
                ):
                    raise SecurityError(f"the result of * would exceed {MAX_SEQUENCE:,} items")
            both_int = isinstance(left, int) and isinstance(right, int)
            if both_int and left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise BudgetExceeded(f"an integer of more than {MAX_INT_BITS:,} bits")
        if operator == "**" and isinstance(right, int | float):
            if abs(right) > MAX_EXPONENT:
                raise SecurityError(f"exponents above {MAX_EXPONENT} are refused")
            if isinstance(left, int) and isinstance(right, int) and left.bit_length() * right > MAX_INT_BITS:
                raise BudgetExceeded(f"an integer of more than {MAX_INT_BITS:,} bits")
        if operator == "%" and isinstance(left, str | bytes):
            check_percent_format(left if isinstance(left, str) else left.decode("latin-1"))
        return self._result(super().call_binop(context, operator, left, right))

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        self._pay_for((getattr(obj, "__self__", None), *args), kwargs)  # a method pays for its receiver
        _check_str_method(obj, args, kwargs)
        return self._result(super().call(context, obj, *args, **kwargs))

    def getattr(self, obj: Any, attribute: str) -> Any:
        self.budget.charge(1)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        self.budget.charge(1)
        if isinstance(argument, slice):  # a slice copies
            return self._result(super().getitem(obj, argument))
        return super().getitem(obj, argument)

    # --- called by the rewritten template (see _Rewrite) ------------------------------------------

    def ct_iter(self, iterable: Any) -> Iterator[Any]:
        return _Counted(iterable, self.budget)

    def ct_operand(self, value: Any) -> Any:
        """An operand of a comparison (`in`, `==`, `<`): comparing costs its size."""
        self.budget.charge(1 + deep_size(value) // _STEP_CHARS)
        return value

    def ct_check(self, value: Any) -> Any:
        """The result of `~`."""
        self.budget.charge(1 + _size(value) // _STEP_CHARS)
        return check_result(value)

    def ct_out(self, value: Any) -> Any:
        size = _size(value)
        if size > MAX_STRING:
            raise BudgetExceeded(f"one output of more than {MAX_STRING:,} characters")
        self.budget.write(size)
        return value

    def _generate(
        self, source: nodes.Template, name: str | None, filename: str | None, defer_init: bool = False
    ) -> str:
        tree = _Rewrite().visit(source)
        return super()._generate(tree, name, filename, defer_init=defer_init)
