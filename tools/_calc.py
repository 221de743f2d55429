"""A safe arithmetic evaluator: a whitelist of AST nodes, and one work budget for the whole input.

No `eval`, no `sympify` (which executes code). There is no attribute, subscript, string, lambda or
comprehension node, so there is no path to dunders.

Work is bounded before it is done. The length is checked first, then the nesting, the number of
nodes and the size of every integer (powers and products are estimated before they run). Then a
cost model prices each big-integer step from its operands' sizes before running it (products,
divisions, powers, gcd, lcm, factorial, comb, perm, round, and writing the result in decimal) and
charges it to one budget for the whole expression, so 142 cheap-looking `comb()` calls add up.
The step that would cross the budget is refused, not run: an accepted expression takes about
30 ms at most on a current x86 core, and a refused one no more. A CPU-time check between steps is
the backstop should the model underestimate something.

The evaluation cannot be interrupted while a big-integer operation runs (CPython holds the GIL
through it), which is why the budget bounds the whole expression rather than relying on a
timeout; `tools.math` runs it in a worker thread so that the event loop waits at most for one
such operation.
"""

from __future__ import annotations

import ast
import math
import operator
import time
from collections.abc import Callable
from typing import Final

from agent.errors import ToolExecutionError

__all__ = ["ACCEPTED", "BUDGET_NS", "Number", "check_length", "evaluate", "format_value"]

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


# The cost model, in estimated nanoseconds on one current x86 core, fitted to CPython 3.11's
# algorithms on 30-bit digits (schoolbook products below 70 digits and Karatsuba above, schoolbook
# division, Lehmer's gcd, math.comb's three-way recursion) and rounded up: measured, it
# overestimates by up to 2.5x and underestimates by 10% at most. tests/tools/test_math.py
# checks that every costly step is charged and times the costliest accepted inputs.
BUDGET_NS: Final = 30_000_000
_BACKSTOP_CPU_S: Final = 0.25  # reached only if the model is wrong: 8x the budget
_STEP_NS: Final = 6000  # the evaluator's own work per node


def _digits(value: Number) -> int:
    """The size in CPython's 30-bit digits; a float or a small int is one."""
    return value.bit_length() // 30 + 1 if isinstance(value, int) else 1


def _linear_ns(*values: Number) -> float:
    """Additions, comparisons, signs and int-to-float conversions read each digit once."""
    return float(sum(_digits(v) for v in values))


def _mul_ns(n: int, m: int) -> float:
    n, m = min(n, m), max(n, m)
    if n <= 70:
        return 1.6 * n * m
    return 10 * (m / n) * math.pow(n, 1.585)  # m/n balanced Karatsuba products


def _div_ns(n: int, m: int) -> float:
    """An n-digit integer divided by an m-digit one (quotient and remainder)."""
    return 2 * m * max(n - m + 1, 0) + 5 * n


def _pow_ns(base: int, exp: int) -> float:
    if abs(base) <= 1:
        return 10.0 * exp.bit_length()  # 1**(2**99999) still walks the exponent's bits
    if abs(base).bit_count() == 1:  # squaring 2**k is cheap: Karatsuba skips its zero digits
        return 120.0 * (exp * abs(base).bit_length() // 30 + 1)
    base_bits = bits = abs(base).bit_length()
    cost = 0.0
    for bit in bin(exp)[3:]:  # left to right, as CPython does for exponents of this size
        cost += 0.6 * _mul_ns(bits // 30 + 1, bits // 30 + 1)  # a square costs 0.6 products
        bits *= 2
        if bit == "1":
            cost += _mul_ns(bits // 30 + 1, base_bits // 30 + 1)
            bits += base_bits
    return cost


def _gcd_ns(sizes: list[int]) -> float:
    # math.gcd folds left; Lehmer's algorithm is quadratic; the running gcd only shrinks.
    cost, g = 0.0, sizes[0]
    for d in sizes[1:]:
        cost += 1.5 * g * d + 100 * (g + d)
        g = min(g, d)
    return cost


def _lcm_ns(sizes: list[int]) -> float:
    # lcm(a, b) = a // gcd(a, b) * b, folded left; the running lcm only grows.
    cost, size = 0.0, sizes[0]
    for d in sizes[1:]:
        cost += _gcd_ns([size, d]) + 2 * min(size, d) * size + 5 * size + _mul_ns(size, d)
        size += d
    return cost


def _format_ns(value: int) -> float:
    """Writing an integer in decimal: chunked divisions, quadratic in its size."""
    n = _digits(value)
    return float(n * n + 50 * n)


def _ms(ns: float) -> str:
    return f"{ns / 1e6:.0f} ms" if ns >= 1e6 else f"{ns / 1e6:.2g} ms"


class _Meter:
    """The work an expression has done so far; a step that would cross the budget is refused."""

    def __init__(self) -> None:
        self.spent = 0.0
        self._cpu_start = time.thread_time()  # CPU time, so a loaded machine cannot trip it

    def charge(self, ns: float, step: str) -> None:
        self.spent += ns
        if self.spent > BUDGET_NS:
            raise _fail(
                f"the expression needs too much computation: at least {_ms(self.spent)} of "
                f"big-integer work where the limit is {_ms(BUDGET_NS)} per calculation ({step} "
                "alone takes about "
                f"{_ms(ns)}). Split it into smaller calculations, or estimate with logarithms "
                "instead, e.g. 99999 * log10(9)"
            )

    def step(self) -> None:
        self.charge(_STEP_NS, "one more step")
        if time.thread_time() - self._cpu_start > _BACKSTOP_CPU_S:
            raise _fail(
                f"the expression took over {_BACKSTOP_CPU_S:g} s of computation and was stopped; "
                "split it into smaller calculations"
            )


def _check_int(value: Number) -> Number:
    if isinstance(value, int) and value.bit_length() > MAX_BITS:
        raise _fail("the result is too large (over ~30,000 digits)" + _TOO_LARGE)
    return value


def _pow(base: Number, exp: Number, meter: _Meter) -> Number:
    if isinstance(base, int) and isinstance(exp, int) and exp >= 0:
        # Estimate before computing: 9**9**9**9 is refused here, not after minutes of work.
        if abs(base) > 1 and exp * (abs(base).bit_length() - 1) > MAX_BITS:
            raise _fail(f"the result of a power is too large (exponent {_short(exp)})" + _TOO_LARGE)
        meter.charge(_pow_ns(base, exp), "a power")
        return _check_int(base**exp)
    meter.charge(_linear_ns(base, exp), "a power")
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


def _mul(a: Number, b: Number, meter: _Meter) -> Number:
    if isinstance(a, int) and isinstance(b, int):
        if a.bit_length() + b.bit_length() > MAX_BITS:
            raise _fail("the result of a multiplication is too large" + _TOO_LARGE)
        meter.charge(_mul_ns(_digits(a), _digits(b)), "a multiplication")
    return a * b


_Binop = Callable[[Number, Number, _Meter], Number]


def _linear(function: Callable[[Number, Number], Number], step: str) -> _Binop:
    def call(a: Number, b: Number, meter: _Meter) -> Number:
        meter.charge(_linear_ns(a, b), step)
        return function(a, b)

    return call


def _division(function: Callable[[Number, Number], Number], step: str) -> _Binop:
    def call(a: Number, b: Number, meter: _Meter) -> Number:
        meter.charge(_div_ns(_digits(a), _digits(b)), step)
        return function(a, b)

    return call


def _short(n: int) -> str:
    return str(n) if n.bit_length() < 64 else f"with {n.bit_length()} bits"


_BINOPS: Final[dict[type[ast.operator], _Binop]] = {
    ast.Add: _linear(operator.add, "an addition"),
    ast.Sub: _linear(operator.sub, "a subtraction"),
    ast.Mult: _mul,
    ast.Div: _linear(operator.truediv, "a division"),  # int / int is correctly rounded in O(n)
    ast.FloorDiv: _division(operator.floordiv, "a floor division"),
    ast.Mod: _division(operator.mod, "a remainder"),
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


def _factorial(meter: _Meter, n: Number) -> int:
    n_ = _int_arg("factorial", n, low=0, high=MAX_FACTORIAL)
    meter.charge(2 * math.pow(n_, 1.585), "factorial()")
    return math.factorial(n_)


def _log2_perm(n: int, k: int) -> float:
    return (math.lgamma(n + 1) - math.lgamma(n - k + 1)) / math.log(2)


def _comb(meter: _Meter, n: Number, k: Number) -> int:
    n_, k_ = (_int_arg("comb", v, low=0, high=MAX_COMB_N) for v in (n, k))
    if k_ <= n_:
        if _log2_perm(n_, k_) - math.lgamma(k_ + 1) / math.log(2) > MAX_BITS:
            raise _fail("the result of comb() is too large" + _TOO_LARGE)
        # math.comb recurses three ways on k (C(n,k) = C(n,j) * C(n-j,k-j) // C(k,j)).
        k_small = min(k_, n_ - k_)
        meter.charge(7 * math.pow(k_small, 1.585) + 100 * k_small, "comb()")
    return math.comb(n_, k_)


def _perm(meter: _Meter, n: Number, k: Number) -> int:
    n_, k_ = (_int_arg("perm", v, low=0, high=MAX_COMB_N) for v in (n, k))
    if k_ <= n_:
        bits = _log2_perm(n_, k_)
        if bits > MAX_BITS:
            raise _fail("the result of perm() is too large" + _TOO_LARGE)
        meter.charge(10 * math.pow(bits / 30 + 1, 1.585) + 50 * k_, "perm()")  # a product tree
    return math.perm(n_, k_)


def _ints(name: str, args: tuple[Number, ...]) -> list[int]:
    if not all(isinstance(a, int) for a in args):
        raise _fail(f"{name}() takes integers")
    return [int(a) for a in args]


def _gcd(meter: _Meter, *args: Number) -> int:
    values = _ints("gcd", args)
    meter.charge(_gcd_ns([_digits(v) for v in values]), "gcd()")
    return math.gcd(*values)


def _lcm(meter: _Meter, *args: Number) -> int:
    values = _ints("lcm", args)
    if sum(v.bit_length() for v in values) > MAX_BITS:
        raise _fail("the result of lcm() is too large" + _TOO_LARGE)
    meter.charge(_lcm_ns([_digits(v) for v in values]), "lcm()")
    return math.lcm(*values)


def _round(meter: _Meter, x: Number, ndigits: Number | None = None) -> Number:
    if ndigits is None:
        return round(x)
    # round(int, -10**9) would compute 10**(10**9): bound the digits first.
    places = _int_arg("round", ndigits, low=-MAX_ROUND_DIGITS, high=MAX_ROUND_DIGITS)
    if isinstance(x, int) and places < 0:  # a division by 10**-places
        meter.charge(_pow_ns(10, -places) + _div_ns(_digits(x), -places // 9 + 1), "round()")
    return round(x, places)


def _extreme(pick: Callable[..., Number]) -> Callable[..., Number]:
    def call(meter: _Meter, *args: Number) -> Number:
        if not args:
            raise _fail("min() and max() need at least one number")
        return pick(args)

    return call


def _plain(function: Callable[..., Number]) -> Callable[..., Number]:
    """A function whose work is linear in its arguments, which the evaluator charges anyway."""
    return lambda meter, *args: function(*args)


_CALLS: Final[dict[str, tuple[Callable[..., Number], int, int]]] = {
    # name: (function taking the meter first, fewest arguments, most arguments)
    "sqrt": (_plain(math.sqrt), 1, 1),
    "exp": (_plain(math.exp), 1, 1),
    "log": (_plain(math.log), 1, 2),
    "log10": (_plain(math.log10), 1, 1),
    "sin": (_plain(math.sin), 1, 1),
    "cos": (_plain(math.cos), 1, 1),
    "tan": (_plain(math.tan), 1, 1),
    "asin": (_plain(math.asin), 1, 1),
    "acos": (_plain(math.acos), 1, 1),
    "atan": (_plain(math.atan), 1, 1),
    "floor": (_plain(math.floor), 1, 1),
    "ceil": (_plain(math.ceil), 1, 1),
    "factorial": (_factorial, 1, 1),
    "gcd": (_gcd, 1, 50),
    "lcm": (_lcm, 1, 50),
    "comb": (_comb, 2, 2),
    "perm": (_perm, 2, 2),
    "abs": (_plain(abs), 1, 1),
    "round": (_round, 1, 2),
    "min": (_extreme(min), 1, 50),
    "max": (_extreme(max), 1, 50),
}


def check_length(text: str) -> None:
    """Refuse an expression over `MAX_CHARS` characters; the first check, before any other work."""
    if len(text) > MAX_CHARS:
        raise _fail(f"the expression is {len(text)} characters long; the limit is {MAX_CHARS}")


def _check_shape(text: str) -> ast.expr:
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


def _eval(node: ast.AST, meter: _Meter) -> Number:
    meter.step()
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
        case ast.UnaryOp(op=op, operand=operand) if isinstance(op, ast.USub | ast.UAdd | ast.Not):
            value = _eval(operand, meter)
            meter.charge(_linear_ns(value), "a sign")
            if isinstance(op, ast.Not):
                return not value
            return -value if isinstance(op, ast.USub) else +value
        case ast.BinOp(left=left, op=op, right=right) if type(op) in _BINOPS:
            a, b = _eval(left, meter), _eval(right, meter)
            return _check_int(_BINOPS[type(op)](a, b, meter))
        case ast.BoolOp(op=op, values=values):
            results = (_eval(v, meter) for v in values)
            return all(results) if isinstance(op, ast.And) else any(results)
        case ast.Compare(left=left, ops=ops, comparators=comparators):
            operands = [_eval(left, meter), *(_eval(c, meter) for c in comparators)]
            meter.charge(_linear_ns(*operands), "a comparison")
            pairs = zip(ops, operands, operands[1:], strict=False)
            return all(_COMPARE[type(op)](a, b) for op, a, b in pairs)
        case ast.Call(func=ast.Name(id=name), args=args, keywords=[]) if name in _CALLS:
            function, fewest, most = _CALLS[name]
            if not fewest <= len(args) <= most or any(isinstance(a, ast.Starred) for a in args):
                raise _fail(f"{name}() takes {fewest} to {most} arguments, got {len(args)}")
            numbers = [_eval(a, meter) for a in args]
            meter.charge(_linear_ns(*numbers), f"{name}()")
            return _check_int(function(meter, *numbers))
        case ast.Call(func=ast.Name(id=name)):
            raise _unsupported(f"unknown function or bad call {name}(...)")
    raise _unsupported(f"{type(node).__name__} expressions are not supported")


def evaluate(expression: str) -> Number:
    """Evaluate an arithmetic expression exactly where possible.

    Integers stay exact (`2**100`, `factorial(25)`); `/` and the math functions give floats.
    `^` means `**`. An input that would take more than about 30 ms, writing out the result
    included, is refused before the costly step runs.

    Args:
        expression: e.g. `"sqrt(2) * pi"`, `"2^64 - 1"`, `"comb(52, 5)"`, `"3 > 2"`.

    Returns:
        The value: an int, a float or a bool.

    Raises:
        ToolExecutionError: the expression is invalid, unsupported or too costly; the message says
            why and what is accepted.
    """
    check_length(expression)
    tree = _check_shape(expression.translate(_SPELLINGS))
    meter = _Meter()
    try:
        value = _eval(tree, meter)
        if isinstance(value, int):  # the caller will show it: format_value's work counts too
            meter.charge(_format_ns(value), "writing the result in decimal")
        return value
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
