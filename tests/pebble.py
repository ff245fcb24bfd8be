"""A tiny renderer for the Pebble expressions our Kestra flows use, to check them offline.

Supports: literals ('text', numbers, true/false), dotted names (inputs.x, vars.x, trigger.date,
execution.startDate), `a ?? b`, `a == b`, `cond ? a : b`, parentheses, the filters `dateAdd(n, 'UNIT')`,
`date('java pattern')` and `join('separator')`, and the functions `render(x)` and `secret('NAME')` (rendered
as `<secret:NAME>` and recorded). Anything else raises, so a flow that uses a construct this does not know
fails its test instead of passing unchecked. Like Pebble, a ternary evaluates only the branch it picks.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Dict, List

_TOKEN = re.compile(r"\s*(?:(\d+)|'([^']*)'|(\?\?|==|[()?:,|\-])|([A-Za-z_][\w.]*))")
_UNDEFINED = object()


class PebbleError(ValueError):
    pass


def _tokens(expr: str) -> List[tuple]:
    pos, out = 0, []
    while pos < len(expr):
        if expr[pos:].strip() == "":
            break
        m = _TOKEN.match(expr, pos)
        if not m:
            raise PebbleError(f"cannot parse {expr[pos:]!r} in {{{{ {expr} }}}}")
        num, text, op, name = m.groups()
        out.append(
            ("num", int(num)) if num else ("str", text) if text is not None else ("op", op) if op else ("name", name)
        )
        pos = m.end()
    return out


class _Parser:
    def __init__(self, expr: str, context: Dict[str, Any], secrets: List[str]) -> None:
        self.toks, self.i, self.ctx, self.secrets, self.expr = _tokens(expr), 0, context, secrets, expr

    def peek(self, value: Any = None) -> bool:
        return self.i < len(self.toks) and (value is None or self.toks[self.i][1] == value)

    def take(self, value: Any = None) -> tuple:
        if not self.peek(value):
            raise PebbleError(f"expected {value!r} in {{{{ {self.expr} }}}}")
        self.i += 1
        return self.toks[self.i - 1]

    def parse(self) -> Any:
        value = self.ternary(True)
        if self.i != len(self.toks):
            raise PebbleError(f"unexpected {self.toks[self.i][1]!r} in {{{{ {self.expr} }}}}")
        return value

    # each level takes `live`: False while parsing a branch a ternary did not pick (parsed, not evaluated)
    def ternary(self, live: bool) -> Any:
        cond = self.coalesce(live)
        if not self.peek("?"):
            return cond
        self.take("?")
        yes = self.ternary(live and bool(cond))
        self.take(":")
        no = self.ternary(live and not bool(cond))
        return yes if cond else no

    def coalesce(self, live: bool) -> Any:
        left = self.equality(live)
        while self.peek("??"):
            self.take("??")
            right = self.equality(live)
            left = right if left is _UNDEFINED or left is None else left
        return left

    def equality(self, live: bool) -> Any:
        left = self.filtered(live)
        if self.peek("=="):
            self.take("==")
            left = left == self.filtered(live)
        return left

    def filtered(self, live: bool) -> Any:
        value = self.atom(live)
        while self.peek("|"):
            self.take("|")
            name = self.take()[1]
            args = self.args(live)
            value = self.apply(name, value, args) if live else None
        return value

    def args(self, live: bool) -> List[Any]:
        self.take("(")
        out = []
        while not self.peek(")"):
            if self.peek("-"):
                self.take("-")
                out.append(-self.take()[1])
            else:
                out.append(self.ternary(live))
            if self.peek(","):
                self.take(",")
        self.take(")")
        return out

    def atom(self, live: bool) -> Any:
        kind, value = self.take()
        if kind in ("num", "str"):
            return value
        if value == "(":
            inner = self.ternary(live)
            self.take(")")
            return inner
        if kind != "name":
            raise PebbleError(f"unexpected {value!r} in {{{{ {self.expr} }}}}")
        if value in ("true", "false"):
            return value == "true"
        if self.peek("("):
            args = self.args(live)
            if not live:
                return None
            if value == "secret":
                self.secrets.append(args[0])
                return f"<secret:{args[0]}>"
            if value == "render":
                return render(str(args[0]), self.ctx, self.secrets)
            raise PebbleError(f"unknown function {value}()")
        current: Any = self.ctx
        for part in value.split("."):
            if not isinstance(current, dict) or part not in current:
                return _UNDEFINED
            current = current[part]
        return current

    @staticmethod
    def apply(name: str, value: Any, args: List[Any]) -> Any:
        if name == "dateAdd":
            amount, unit = args
            if unit != "MONTHS":
                raise PebbleError(f"dateAdd unit {unit} not supported here")
            month0 = value.year * 12 + value.month - 1 + amount
            return value.replace(year=month0 // 12, month=month0 % 12 + 1, day=1)
        if name == "date":
            pattern = args[0]
            for java, py in (("yyyy", "%Y"), ("MM", "%m"), ("dd", "%d")):
                pattern = pattern.replace(java, py)
            return value.strftime(pattern)
        if name == "join":  # a MULTISELECT input is a list
            if not isinstance(value, list):
                raise PebbleError(f"join of {value!r}, not a list")
            return str(args[0]).join(str(v) for v in value)
        raise PebbleError(f"unknown filter {name}")


def render(template: str, context: Dict[str, Any], secrets: List[str] | None = None) -> str:
    """Render every `{{ … }}` in a string; raises PebbleError on unknown constructs or undefined results."""
    secrets = [] if secrets is None else secrets

    def one(m: re.Match) -> str:
        value = _Parser(m.group(1), context, secrets).parse()
        if value is _UNDEFINED:
            raise PebbleError(f"undefined value in {m.group(0)}")
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, dt.datetime):
            return value.isoformat()
        return str(value)

    return re.sub(r"\{\{(.*?)\}\}", one, template)
