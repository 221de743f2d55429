"""A safe arithmetic evaluator: a whitelist of AST nodes, every costly step bounded before it runs.

No `eval`, no `sympify` (which executes code). There is no attribute, subscript, string, lambda or
comprehension node, so there is no path to dunders. Work is bounded before it is done: the input
length, the number of nodes, the nesting depth, the size of every integer (exponents and products
are estimated first), factorial/comb/perm arguments and `round` digits. Each refusal takes well
under a millisecond and says what is accepted.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Final

from agent.errors import ToolExecutionError

__all__ = ["ACCEPTED", "Number", "evaluate", "format_value"]

Number = int | float | bool

MAX_CHARS: Final = 2000
MAX_NODES: Final = 1000
MAX_DEPTH: Final = 250  # a left-associated chain `1+1+...` is as deep as it is long
MAX_PARENS: Final = 100
MAX_BITS: Final = 100_000  # about 30,100 decimal digits
MAX_FACTORIAL: Final = 5000
MAX_COMB_N: Final = 20_000
MAX_ROUND_DIGITS: Final = 1000
_DIGITS_PER_CHUNK: Final = 4000  # under CPython's 4300-digit int<->str limit

_FUNCTIONS: Final = (
    *("sqrt", "exp", "log", "log10", "sin", "cos", "tan", "asin", "acos", "atan", "floor"),
    *("ceil", "factorial", "gcd", "lcm", "comb", "perm", "abs", "round", "min", "max"),
)
_CONSTANTS: Final[dict[str, float]] = {
    "pi": math.pi,
    "e": math.e,
    "tau": math.tau,
    "inf": math.inf,
    "nan": math.nan,
}

ACCEPTED: Final = (
    "numbers (exact integers of any size up to ~30,000 digits, and floats), "
    "+ - * / // % ** (or ^), comparisons (== != < <= > >=), and/or/not, parentheses, "
    f"the constants {', '.join(_CONSTANTS)} and the functions {', '.join(_FUNCTIONS)}"
)

# Unicode and calculator spellings models and users write; `^` is exponentiation here, not xor.
_SPELLINGS: Final = str.maketrans({"^": "**", "×": "*", "·": "*", "÷": "/", "−": "-"})


_TOO_LARGE: Final = (
    "; integers are kept exactly up to about 30,000 digits. Estimate the size with logarithms "
    "instead, e.g. 99999 * log10(9)"
)


def _fail(problem: str) -> ToolExecutionError:
    return ToolExecutionError(problem)


def _unsupported(problem: str) -> ToolExecutionError:
    return ToolExecutionError(f"{problem}. The calculator accepts {ACCEPTED}.")


def _check_int(value: Number) -> Number:
    if isinstance(value, int) and value.bit_length() > MAX_BITS:
        raise _fail("the result is too large (over ~30,000 digits)" + _TOO_LARGE)
    return value


def _pow(base: Number, exp: Number) -> Number:
    if isinstance(base, int) and isinstance(exp, int) and exp >= 0:
        # Estimate before computing: 9**9**9**9 is refused here, not after minutes of work.
        if abs(base) > 1 and exp * (abs(base).bit_length() - 1) > MAX_BITS:
            raise _fail(f"the result of a power is too large (exponent {_short(exp)})" + _TOO_LARGE)
        return _check_int(base**exp)
    if isinstance(base, int) and base.bit_length() > 1024:
        raise _fail("the base is too large for a fractional or negative power")
    if base == 0 and exp < 0:  # math.pow says "math domain error", which misleads
        raise _fail("division by zero (zero to a negative power)")
    try:
        # math.pow raises OverflowError instead of building a huge float or a complex number.
        return math.pow(base, exp)
    except OverflowError as exc:
        raise _fail("the result of a power overflows a float") from exc
    except ValueError as exc:
        raise _fail(
            "a power is undefined here (negative base with a fractional exponent?)"
        ) from exc


def _mul(a: Number, b: Number) -> Number:
    if isinstance(a, int) and isinstance(b, int) and a.bit_length() + b.bit_length() > MAX_BITS:
        raise _fail("the result of a multiplication is too large" + _TOO_LARGE)
    return a * b


def _short(n: int) -> str:
    return str(n) if n.bit_length() < 64 else f"with {n.bit_length()} bits"


_BINOPS: Final[dict[type[ast.operator], Callable[[Number, Number], Number]]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: _mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: _pow,
}
_COMPARE: Final[dict[type[ast.cmpop], Callable[[Number, Number], bool]]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


def _int_arg(name: str, value: Number, *, low: int, high: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or not low <= value <= high:
        raise _fail(f"{name}() takes integers from {low} to {high}")
    return value


def _factorial(n: Number) -> int:
    return math.factorial(_int_arg("factorial", n, low=0, high=MAX_FACTORIAL))


def _log2_perm(n: int, k: int) -> float:
    return (math.lgamma(n + 1) - math.lgamma(n - k + 1)) / math.log(2)


def _comb(n: Number, k: Number) -> int:
    n_, k_ = (_int_arg("comb", v, low=0, high=MAX_COMB_N) for v in (n, k))
    if k_ <= n_ and _log2_perm(n_, k_) - math.lgamma(k_ + 1) / math.log(2) > MAX_BITS:
        raise _fail("the result of comb() is too large" + _TOO_LARGE)
    return math.comb(n_, k_)


def _perm(n: Number, k: Number) -> int:
    n_, k_ = (_int_arg("perm", v, low=0, high=MAX_COMB_N) for v in (n, k))
    if k_ <= n_ and _log2_perm(n_, k_) > MAX_BITS:
        raise _fail("the result of perm() is too large" + _TOO_LARGE)
    return math.perm(n_, k_)


def _ints(name: str, args: tuple[Number, ...]) -> list[int]:
    if not all(isinstance(a, int) for a in args):
        raise _fail(f"{name}() takes integers")
    return [int(a) for a in args]


def _lcm(*args: Number) -> int:
    values = _ints("lcm", args)
    if sum(v.bit_length() for v in values) > MAX_BITS:
        raise _fail("the result of lcm() is too large" + _TOO_LARGE)
    return math.lcm(*values)


def _round(x: Number, ndigits: Number | None = None) -> Number:
    if ndigits is None:
        return round(x)
    # round(int, -10**9) would compute 10**(10**9): bound the digits first.
    return round(x, _int_arg("round", ndigits, low=-MAX_ROUND_DIGITS, high=MAX_ROUND_DIGITS))


def _extreme(pick: Callable[..., Number]) -> Callable[..., Number]:
    def call(*args: Number) -> Number:
        if not args:
            raise _fail("min() and max() need at least one number")
        return pick(args)

    return call


_CALLS: Final[dict[str, tuple[Callable[..., Number], int, int]]] = {
    # name: (function, fewest arguments, most arguments)
    "sqrt": (math.sqrt, 1, 1),
    "exp": (math.exp, 1, 1),
    "log": (math.log, 1, 2),
    "log10": (math.log10, 1, 1),
    "sin": (math.sin, 1, 1),
    "cos": (math.cos, 1, 1),
    "tan": (math.tan, 1, 1),
    "asin": (math.asin, 1, 1),
    "acos": (math.acos, 1, 1),
    "atan": (math.atan, 1, 1),
    "floor": (math.floor, 1, 1),
    "ceil": (math.ceil, 1, 1),
    "factorial": (_factorial, 1, 1),
    "gcd": (lambda *a: math.gcd(*_ints("gcd", a)), 1, 50),
    "lcm": (_lcm, 1, 50),
    "comb": (_comb, 2, 2),
    "perm": (_perm, 2, 2),
    "abs": (abs, 1, 1),
    "round": (_round, 1, 2),
    "min": (_extreme(min), 1, 50),
    "max": (_extreme(max), 1, 50),
}


def _check_shape(text: str) -> ast.expr:
    if len(text) > MAX_CHARS:
        raise _fail(f"the expression is {len(text)} characters long; the limit is {MAX_CHARS}")
    depth = deepest = 0
    for char in text:
        depth += (char in "([{") - (char in ")]}")
        deepest = max(deepest, depth)
    if deepest > MAX_PARENS:
        raise _fail(f"the expression nests {deepest} parentheses deep; the limit is {MAX_PARENS}")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        raise _unsupported(f"cannot parse {text.strip()[:80]!r}") from exc
    count = 0
    stack: list[tuple[ast.AST, int]] = [(tree, 1)]
    while stack:  # iterative, so a deep tree cannot exhaust the Python stack while we measure it
        node, level = stack.pop()
        count += 1
        if count > MAX_NODES or level > MAX_DEPTH:
            raise _fail("the expression is too long or nested too deeply")
        stack.extend((child, level + 1) for child in ast.iter_child_nodes(node))
    return tree


def _eval(node: ast.AST) -> Number:
    match node:
        case ast.Constant(value=bool() | int() | float() as value):
            return _check_int(value)
        case ast.Constant(value=str() | bytes()):
            raise _unsupported("text (strings) cannot be evaluated")
        case ast.Constant(value=complex()):
            raise _unsupported("complex numbers are not supported")
        case ast.Name(id=name) if name in _CONSTANTS:
            return _CONSTANTS[name]
        case ast.Name(id=name):
            raise _unsupported(
                f"unknown name {name!r}: this is a calculator, it cannot look facts up or solve "
                "equations; write the arithmetic out with numbers"
            )
        case ast.UnaryOp(op=ast.USub(), operand=operand):
            return -_eval(operand)
        case ast.UnaryOp(op=ast.UAdd(), operand=operand):
            return +_eval(operand)
        case ast.UnaryOp(op=ast.Not(), operand=operand):
            return not _eval(operand)
        case ast.BinOp(left=left, op=op, right=right) if type(op) in _BINOPS:
            return _check_int(_BINOPS[type(op)](_eval(left), _eval(right)))
        case ast.BoolOp(op=op, values=values):
            results = (_eval(v) for v in values)
            return all(results) if isinstance(op, ast.And) else any(results)
        case ast.Compare(left=left, ops=ops, comparators=comparators):
            operands = [_eval(left), *(_eval(c) for c in comparators)]
            pairs = zip(ops, operands, operands[1:], strict=False)
            return all(_COMPARE[type(op)](a, b) for op, a, b in pairs)
        case ast.Call(func=ast.Name(id=name), args=args, keywords=[]) if name in _CALLS:
            function, fewest, most = _CALLS[name]
            if not fewest <= len(args) <= most or any(isinstance(a, ast.Starred) for a in args):
                raise _fail(f"{name}() takes {fewest} to {most} arguments, got {len(args)}")
            return _check_int(function(*(_eval(a) for a in args)))
        case ast.Call(func=ast.Name(id=name)):
            raise _unsupported(f"unknown function or bad call {name}(...)")
    raise _unsupported(f"{type(node).__name__} expressions are not supported")


def evaluate(expression: str) -> Number:
    """Evaluate an arithmetic expression exactly where possible.

    Integers stay exact (`2**100`, `factorial(25)`); `/` and the math functions give floats.
    `^` means `**`. Every input that would take more than milliseconds is refused up front.

    Args:
        expression: e.g. `"sqrt(2) * pi"`, `"2^64 - 1"`, `"comb(52, 5)"`, `"3 > 2"`.

    Returns:
        The value: an int, a float or a bool.

    Raises:
        ToolExecutionError: the expression is invalid, unsupported or too costly; the message says
            why and what is accepted.
    """
    tree = _check_shape(expression.translate(_SPELLINGS))
    try:
        return _eval(tree)
    except ToolExecutionError:
        raise
    except ZeroDivisionError as exc:
        raise _fail("division by zero") from exc
    except OverflowError as exc:
        raise _fail(f"a number is out of range for a float ({exc})") from exc
    except (ValueError, TypeError) as exc:
        raise _fail(f"invalid argument ({exc})") from exc
    except RecursionError as exc:
        raise _fail("the expression is nested too deeply") from exc


def format_value(value: Number) -> str:
    """Show a result the way a model should copy it: all digits of an int, 15 digits of a float."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return _int_to_str(value)
    # 15 significant digits so that 0.1+0.2 reads 0.3 and the model does not copy float noise.
    return format(value, ".15g")


def _int_to_str(n: int) -> str:
    """Decimal digits of any size without touching the process-wide int/str digit limit."""
    if n < 0:
        return "-" + _int_to_str(-n)
    chunk = 10**_DIGITS_PER_CHUNK
    parts: list[str] = []
    while n >= chunk:
        n, low = divmod(n, chunk)
        parts.append(str(low).zfill(_DIGITS_PER_CHUNK))
    parts.append(str(n))
    return "".join(reversed(parts))
